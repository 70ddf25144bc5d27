package reports

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"math"
	"strings"
	"testing"
)

// TestRateQualityPlot: the SVG parses as XML and carries the title and
// every legend label; the PNG decodes at 6 x 4 inches; points a log axis
// cannot show, an empty plot and an unknown format are errors.
func TestRateQualityPlot(t *testing.T) {
	series := []Series{
		{Label: "squeeze", Line: true, Points: []Point{{2.5, 0.33}, {3, 0.21}, {3.7, 0.069}, {4.5, 0.03}}},
		{Label: "llama.cpp Q4_0", Points: []Point{{7.12, 0.081}}},
	}
	var svg bytes.Buffer
	if err := RateQualityPlot(&svg, "svg", "stories260K rate-quality", "mean KLD", series); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
	}
	for _, want := range []string{"stories260K rate-quality", "squeeze", "llama.cpp Q4_0", "bits per weight", "mean KLD"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	var pngb bytes.Buffer
	if err := RateQualityPlot(&pngb, "png", "t", "y", series); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&pngb)
	if err != nil {
		t.Fatal(err)
	}
	// gonum/plot renders PNG at 96 dpi
	if b := img.Bounds(); b.Dx() != 576 || b.Dy() != 384 {
		t.Errorf("PNG %v, want 576 x 384", b)
	}
	for _, bad := range [][]Series{
		{{Label: "zero", Points: []Point{{3, 0}}}},
		{{Label: "nan", Points: []Point{{math.NaN(), 0.1}}}},
		{{Label: "empty"}},
	} {
		if err := RateQualityPlot(io.Discard, "svg", "t", "y", bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if _, err := PlotFormat("curve.jpeg"); err == nil {
		t.Error("a .jpeg plot was accepted")
	}
	if f, err := PlotFormat("a/b/Curve.SVG"); err != nil || f != "svg" {
		t.Errorf("PlotFormat(Curve.SVG) = %q, %v", f, err)
	}
}
