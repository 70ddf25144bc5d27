package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	goruntime "runtime"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/eval"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/reports"
	"github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

type evalOptions struct {
	model      modelFlags
	Text       string
	Ctx        int
	Ref        string
	JSON       bool
	Threads    int
	MaxWindows int
	Adapter    string
	Kernels    kernelFlag
}

func newEvalCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &evalOptions{}
	c := &cobra.Command{
		Use:   "eval MODEL --text FILE [--ref MODEL]",
		Short: "Perplexity (llama.cpp's protocol) and, with --ref, KL divergence and top-1 agreement",
		Args:  cobra.MaximumNArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runEval(o, args, stdout, stderr) },
	}
	o.model.bind(c)
	o.Kernels.bind(c)
	f := c.Flags()
	f.StringVar(&o.Text, "text", "", "text file, evaluated as one token stream (required)")
	f.IntVar(&o.Ctx, "ctx", 256, "window length in tokens; the second half of each window is scored")
	f.StringVar(&o.Ref, "ref", "", "reference model for KL divergence and top-1 agreement")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.IntVar(&o.Threads, "threads", 0, "windows evaluated in parallel (0 = all CPUs)")
	f.IntVar(&o.MaxWindows, "max-windows", 0, "evaluate at most this many windows (0 = all)")
	f.StringVar(&o.Adapter, "adapter", "", "apply the bundle's adapter set of this name (none = the base alone)")
	return c
}

func runEval(o *evalOptions, args []string, stdout, stderr io.Writer) error {
	if o.Text == "" {
		return fmt.Errorf("--text FILE is required")
	}
	text, err := os.ReadFile(o.Text)
	if err != nil {
		return fmt.Errorf("--text: %w", err)
	}
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	defer restore()
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := needTokenizer(m); err != nil {
		return err
	}
	res, err := evaluateAdapter(m, o.Adapter, o.Ref, o.model.Tokenizer, text, eval.Options{Ctx: o.Ctx, Workers: o.Threads, MaxWindows: o.MaxWindows}, stderr)
	if err != nil {
		return err
	}
	if o.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	rows := [][]string{
		{"perplexity", fmt.Sprintf("%.4f ± %.4f", res.PPL, res.PPLStderr)},
		{"mean NLL (nats/token)", fmt.Sprintf("%.5f", res.NLL)},
		{"scored tokens", fmt.Sprintf("%d (%d windows of %d)", res.Tokens, res.Windows, res.Ctx)},
	}
	if res.Kernels != "" {
		rows = append(rows, []string{"palettized arithmetic", res.Kernels + " kernels (--kernels)"})
	}
	if res.KLDMean != nil {
		rows = append(rows,
			[]string{"mean KL(ref || model)", fmt.Sprintf("%.5f", *res.KLDMean)},
			[]string{"KL 99th percentile", fmt.Sprintf("%.5f", *res.KLDP99)},
			[]string{"same top token", fmt.Sprintf("%.2f%%", 100**res.Top1Agree)})
	}
	return reports.Table(stdout, []string{"metric", "value"}, rows, nil)
}

// evaluate runs the protocol on m (and a reference model file, if given).
func evaluate(m *ir.Model, refPath, tokPath string, text []byte, opt eval.Options, stderr io.Writer) (*eval.Result, error) {
	return evaluateAdapter(m, "", refPath, tokPath, text, opt, stderr)
}

// evaluateAdapter is evaluate with m's adapter set called adapter applied
// ("" or "none": the base alone).
func evaluateAdapter(m *ir.Model, adapter, refPath, tokPath string, text []byte, opt eval.Options, stderr io.Writer) (*eval.Result, error) {
	var ref *ir.Model
	if refPath != "" {
		var err error
		if ref, err = formats.Load(refPath, formats.LoadOptions{Tokenizer: tokPath}); err != nil {
			return nil, fmt.Errorf("--ref: %w", err)
		}
		defer ref.Close()
	}
	return evaluateRef(m, adapter, ref, text, opt, stderr)
}

// evaluateRef is evaluateAdapter against a reference model already loaded
// (nil: none), for a caller that has it open anyway (gate).
func evaluateRef(m *ir.Model, adapter string, refModel *ir.Model, text []byte, opt eval.Options, stderr io.Writer) (*eval.Result, error) {
	if opt.Workers <= 0 {
		opt.Workers = goruntime.NumCPU()
	}
	rt, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	if err := selectAdapter(m, rt, adapter); err != nil {
		return nil, err
	}
	var ref *runtime.Model
	if refModel != nil {
		if ref, err = runtime.New(refModel, runtime.Options{Threads: 1}); err != nil {
			return nil, fmt.Errorf("--ref: %w", err)
		}
	}
	toks := m.Tokenizer.Encode(string(text), true)
	update, finish := reports.Progress(stderr, max(1, len(toks)/max(opt.Ctx, 1)), "eval")
	opt.Progress = func(done, total int) { update(done) }
	res, err := eval.Evaluate(rt, ref, toks, m.Tokenizer.BOS, opt)
	finish()
	if res != nil && palettized(m) {
		res.Kernels = kernels.EffectiveMode().String()
	}
	return res, err
}

// palettized reports whether m has palettized weights (whose arithmetic
// --kernels selects), lutmix tensors included.
func palettized(m *ir.Model) bool {
	for _, t := range m.Tensors {
		if t.IsPalettized() {
			return true
		}
	}
	return false
}
