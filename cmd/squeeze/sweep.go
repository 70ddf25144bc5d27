package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/eval"
	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/reports"
	"github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

func init() { extraCommands = append(extraCommands, newSweepCmd) }

type sweepOptions struct {
	compile    compileOptions
	Targets    string
	Text       string
	Ctx        int
	MaxWindows int
	Kernels    kernelFlag
	Plot       string
	Anchors    string
}

func newSweepCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &sweepOptions{}
	c := &cobra.Command{
		Use:   "sweep MODEL --targets 2.5,3,3.5,3.7,4,4.5 --calib FILE --text FILE",
		Short: "The rate-quality curve: compile at several targets and evaluate each against the original",
		Args:  cobra.MaximumNArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runSweep(o, args, stdout, stderr) },
	}
	co := &o.compile
	co.model.bind(c)
	co.bindPlannerFlags(c)
	o.Kernels.bind(c)
	f := c.Flags()
	f.StringVar(&o.Targets, "targets", "2.5,3,3.5,3.7,4,4.5", "bits per palettized weight to compile at")
	f.StringVar(&o.Text, "text", "", "evaluation text (required)")
	f.IntVar(&o.Ctx, "ctx", 256, "evaluation window")
	f.IntVar(&o.MaxWindows, "max-windows", 0, "evaluate at most this many windows (0 = all)")
	f.BoolVar(&co.JSON, "json", false, "print JSON")
	f.StringVar(&o.Plot, "plot", "", "also draw mean KLD against bits per weight (log scale) to this .svg, .png or .pdf file")
	f.StringVar(&o.Anchors, "anchors", "", "with --plot, also draw other tools' points from this CSV (series,bpw,kld_mean[,note]; # comments), e.g. testdata/anchors/llama.cpp-stories260K.csv")
	return c
}

type sweepPoint struct {
	TargetBPW float64 `json:"target_bpw"`
	BPW       float64 `json:"bpw"`
	BPWTotal  float64 `json:"bpw_total"`
	Bytes     int64   `json:"bytes"`
	PPL       float64 `json:"ppl"`
	KLDMean   float64 `json:"kld_mean"`
	KLDP99    float64 `json:"kld_p99"`
	Top1Agree float64 `json:"top1_agree"`
	Damage    float64 `json:"predicted_damage"`
}

type sweepResult struct {
	Model   string       `json:"model"`
	Text    string       `json:"text"`
	RefPPL  float64      `json:"ref_ppl"`
	Points  []sweepPoint `json:"points"`
	Windows int          `json:"windows"`
	Kernels string       `json:"kernels"` // the palettized arithmetic of the evaluations
}

func runSweep(o *sweepOptions, args []string, stdout, stderr io.Writer) error {
	co := &o.compile
	if o.Text == "" {
		return fmt.Errorf("--text FILE is required")
	}
	// The arithmetic of the evaluations (calibration and palettization run
	// on the float original and do not depend on it).
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	defer restore()
	text, err := os.ReadFile(o.Text)
	if err != nil {
		return fmt.Errorf("--text: %w", err)
	}
	// the plot's inputs are checked before the (long) sweep
	var anchors []reports.Series
	var plotFormat string
	if o.Anchors != "" && o.Plot == "" {
		return fmt.Errorf("--anchors goes with --plot")
	}
	if o.Plot != "" {
		if plotFormat, err = reports.PlotFormat(o.Plot); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		if err := checkOutDir("--plot", o.Plot); err != nil {
			return err
		}
		if o.Anchors != "" {
			if anchors, err = readAnchors(o.Anchors); err != nil {
				return err
			}
		}
	}
	var targets []float64
	for _, s := range strings.Split(o.Targets, ",") {
		v, err := parseBPW(s)
		if err != nil {
			return fmt.Errorf("--targets: %w", err)
		}
		targets = append(targets, v)
	}
	bits, err := parseBits(co.Bits)
	if err != nil {
		return err
	}
	m, err := co.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := needTokenizer(m); err != nil {
		return err
	}
	p, groups, _, err := co.preparePlanner(m, func(string) {}, stderr)
	if err != nil {
		return err
	}
	if err := p.candidates(bits, groups, co.PerRowScale, co.EmbeddingBits, stderr); err != nil {
		return err
	}
	ref, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		return err
	}
	toks := m.Tokenizer.Encode(string(text), true)
	eo := eval.Options{Ctx: o.Ctx, Workers: p.threads, MaxWindows: o.MaxWindows}
	base, err := eval.Evaluate(ref, nil, toks, m.Tokenizer.BOS, eo)
	if err != nil {
		return err
	}
	res := sweepResult{Model: m.Source, Text: o.Text, RefPPL: base.PPL, Windows: base.Windows, Kernels: kernels.EffectiveMode().String()}
	tmp, err := os.MkdirTemp("", "squeeze-sweep-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, t := range targets {
		plan, err := p.allocate(t)
		if err != nil {
			return fmt.Errorf("target %.3g: %w", t, err)
		}
		pm, err := p.apply(plan, stderr)
		if err != nil {
			return err
		}
		info, err := bundle.Write(filepath.Join(tmp, strconv.Itoa(i)+".sqz"), pm, bundle.Extra{SqueezeVersion: version, Plan: plan})
		if err != nil {
			return err
		}
		rt, err := runtime.New(pm, runtime.Options{Threads: 1})
		if err != nil {
			return err
		}
		update, finish := reports.Progress(stderr, base.Windows, fmt.Sprintf("eval %.3g bpw", t))
		eo.Progress = func(d, _ int) { update(d) }
		r, err := eval.Evaluate(rt, ref, toks, m.Tokenizer.BOS, eo)
		finish()
		if err != nil {
			return err
		}
		res.Points = append(res.Points, sweepPoint{TargetBPW: t, BPW: plan.AchievedBPW, BPWTotal: 8 * float64(info.Bytes) / float64(m.NumParams()),
			Bytes: info.Bytes, PPL: r.PPL, KLDMean: *r.KLDMean, KLDP99: *r.KLDP99, Top1Agree: *r.Top1Agree, Damage: plan.PredictedDamage})
	}
	if o.Plot != "" {
		curve := reports.Series{Label: fmt.Sprintf("squeeze (%s kernels)", res.Kernels), Line: true}
		for _, pt := range res.Points {
			curve.Points = append(curve.Points, reports.Point{X: pt.BPW, Y: pt.KLDMean})
		}
		title := fmt.Sprintf("%s: mean KL divergence on %s (ctx %d)", filepath.Base(m.Source), filepath.Base(o.Text), o.Ctx)
		if err := fileio.WriteAtomic(o.Plot, func(f *os.File) error {
			return reports.RateQualityPlot(f, plotFormat, title, "mean KL(original || compressed)", append([]reports.Series{curve}, anchors...))
		}); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		fmt.Fprintf(stderr, "sweep: wrote %s\n", o.Plot)
	}
	if co.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	var rows [][]string
	for _, pt := range res.Points {
		rows = append(rows, []string{fmt.Sprintf("%.3g", pt.TargetBPW), fmt.Sprintf("%.3f", pt.BPW), fmt.Sprintf("%.3f", pt.BPWTotal),
			reports.Bytes(pt.Bytes), fmt.Sprintf("%.4f", pt.PPL), fmt.Sprintf("%.4f", pt.KLDMean), fmt.Sprintf("%.3f", pt.KLDP99),
			fmt.Sprintf("%.2f%%", 100*pt.Top1Agree)})
	}
	fmt.Fprintf(stdout, "%s on %s (%d windows of %d, %s kernels): original PPL %.4f\n", m.Source, o.Text, base.Windows, o.Ctx, res.Kernels, base.PPL)
	return reports.Table(stdout, []string{"target", "bpw", "bpw total", "bundle", "PPL", "mean KLD", "KLD p99", "same top"}, rows, nil)
}

// readAnchors reads other tools' rate-quality points: a CSV with the
// header series,bpw,kld_mean (a fourth column, e.g. the type, is allowed
// and ignored) and # comment lines; rows of one series become one set of
// markers, in file order.
func readAnchors(path string) ([]reports.Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--anchors: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comment = '#'
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("--anchors %s: %w", path, err)
	}
	if len(recs) == 0 || len(recs[0]) < 3 || recs[0][0] != "series" || recs[0][1] != "bpw" || recs[0][2] != "kld_mean" {
		return nil, fmt.Errorf("--anchors %s: expected a header line series,bpw,kld_mean", path)
	}
	var out []reports.Series
	index := map[string]int{}
	for i, rec := range recs[1:] {
		if len(rec) < 3 {
			return nil, fmt.Errorf("--anchors %s: data row %d has %d fields, expected at least 3", path, i+1, len(rec))
		}
		bpw, err1 := strconv.ParseFloat(strings.TrimSpace(rec[1]), 64)
		kld, err2 := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
		if err1 != nil || err2 != nil || !(bpw > 0) || !(kld > 0) {
			return nil, fmt.Errorf("--anchors %s: data row %d (%s): bpw %q and kld_mean %q must be positive numbers", path, i+1, rec[0], rec[1], rec[2])
		}
		j, ok := index[rec[0]]
		if !ok {
			j = len(out)
			index[rec[0]] = j
			out = append(out, reports.Series{Label: rec[0]})
		}
		out[j].Points = append(out[j].Points, reports.Point{X: bpw, Y: kld})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--anchors %s: no data rows", path)
	}
	return out, nil
}
