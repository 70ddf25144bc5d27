package reports

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Point is one (x, y) value of a plotted series.
type Point struct{ X, Y float64 }

// Series is one set of points: joined by a line when Line is set (a
// curve, e.g. squeeze's sweep), markers only otherwise (e.g. another
// tool's figures).
type Series struct {
	Label  string
	Points []Point
	Line   bool
}

// PlotFormat is the image format a file name asks for: svg, png or pdf.
func PlotFormat(path string) (string, error) {
	switch f := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), "."); f {
	case "svg", "png", "pdf":
		return f, nil
	default:
		return "", fmt.Errorf("%s: plot format %q, expected .svg, .png or .pdf", path, f)
	}
}

// RateQualityPlot draws series of (bits per weight, y) with y on a log
// scale (mean KL divergence spans decades across rates) and writes it to
// w in format (svg, png or pdf). Points with y <= 0 or non-finite values
// cannot go on a log axis and are an error, not silently dropped.
func RateQualityPlot(w io.Writer, format, title, ylabel string, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "bits per weight"
	p.Y.Label.Text = ylabel
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}}
	n := 0
	lo, hi := math.Inf(1), math.Inf(-1) // the points' extent, for the axes
	xlo, xhi := math.Inf(1), math.Inf(-1)
	for i, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			if !(pt.Y > 0) || math.IsInf(pt.Y, 0) || math.IsNaN(pt.X) || math.IsInf(pt.X, 0) {
				return fmt.Errorf("plot: series %q point %d (%v, %v) cannot go on a log axis", s.Label, j, pt.X, pt.Y)
			}
			xy[j] = plotter.XY{X: pt.X, Y: pt.Y}
			lo, hi = math.Min(lo, pt.Y), math.Max(hi, pt.Y)
			xlo, xhi = math.Min(xlo, pt.X), math.Max(xhi, pt.X)
		}
		c := palette[i%len(palette)]
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return fmt.Errorf("plot: series %q: %w", s.Label, err)
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = c, shapes[i%len(shapes)], vg.Points(3)
		p.Add(sc)
		if s.Line {
			l, err := plotter.NewLine(xy)
			if err != nil {
				return fmt.Errorf("plot: series %q: %w", s.Label, err)
			}
			l.LineStyle.Color, l.LineStyle.Width = c, vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(s.Label, l, sc)
		} else {
			p.Legend.Add(s.Label, sc)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("plot: no points")
	}
	// whole decades on the log axis (so each has a labelled tick) and a
	// margin on the rate axis, so no point sits on the frame
	p.Y.Min, p.Y.Max = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if p.Y.Max == p.Y.Min {
		p.Y.Max *= 10
	}
	pad := math.Max(0.25, 0.04*(xhi-xlo))
	p.X.Min, p.X.Max = xlo-pad, xhi+pad
	wt, err := p.WriterTo(6*vg.Inch, 4*vg.Inch, format)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	_, err = wt.WriteTo(w)
	return err
}
