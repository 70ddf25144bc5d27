package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/eval"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/reports"
)

func init() { extraCommands = append(extraCommands, newGateCmd) }

// Default gate thresholds: a starting point, meant to be set per model.
// On stories260K (whole dev.txt, ctx 256, int8 kernels) a plain compile
// at 3.7 bpw fails both (KLD 0.165, PPL ratio 1.168) and compile --qat
// --seed 1 passes both (0.0688, 1.067); the run takes ~20 s.
const (
	defaultGateMaxKLD      = 0.10
	defaultGateMaxPPLRatio = 1.10
)

type gateOptions struct {
	Original   string
	Compressed string
	Tokenizer  string
	Verify     bool
	Text       string
	Ctx        int
	MaxWindows int
	Threads    int
	Adapter    string
	Kernels    kernelFlag
	Thresholds eval.Thresholds
	JSON       bool
	JUnit      string
	Markdown   string
}

// gateFailed is the error of a gate that measured and failed (exit status
// 1); any other error of the command (bad input, a model that cannot be
// loaded) exits with status 2, so CI can tell the two apart.
type gateFailed struct{ checks []eval.Check }

func (g gateFailed) Error() string {
	var fails []string
	for _, c := range g.checks {
		if !c.Pass {
			fails = append(fails, c.String())
		}
	}
	return fmt.Sprintf("gate failed: %s", strings.Join(fails, "; "))
}

func (gateFailed) ExitCode() int { return 1 }

// exitError gives an error its own exit status (main reads ExitCode).
type exitError struct {
	err  error
	code int
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }

func newGateCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &gateOptions{}
	c := &cobra.Command{
		Use:   "gate --original MODEL --compressed MODEL --text FILE",
		Short: "CI gate: fail when the compressed model's accuracy against the original drops past the thresholds",
		Long: `gate evaluates the compressed model against the original on --text (llama.cpp's
perplexity protocol, as eval does: the same windows, the original's logits as the
reference) and checks the thresholds: mean KL divergence, its 99th percentile,
perplexity ratio and top-1 agreement (a threshold of 0 is not checked). It prints
each check, optionally as JSON and as a JUnit XML report, and exits 0 when every
check passes, 1 when one fails, 2 when it could not measure (bad input).

The compressed model runs as 'squeeze run' runs it: the base alone unless
--adapter names an adapter set, with the int8 kernels unless --kernels float.
The default thresholds (--max-kld 0.1, --max-ppl-ratio 1.1) are a starting
point; set your own for your model and text.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			err := runGate(o, stdout, stderr)
			var g gateFailed
			if err != nil && !errors.As(err, &g) {
				return exitError{err, 2}
			}
			return err
		},
	}
	o.Kernels.bind(c)
	f := c.Flags()
	f.StringVar(&o.Original, "original", "", "the uncompressed model (required)")
	f.StringVar(&o.Compressed, "compressed", "", "the compressed model, usually a .sqz bundle (required)")
	f.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer file for llama2.c checkpoints (default: the one beside the model, or the bundle's own)")
	f.BoolVar(&o.Verify, "verify", false, "check every section's SHA-256 of a .sqz bundle before using it")
	f.StringVar(&o.Text, "text", "", "text file to evaluate on, as one token stream (required)")
	f.IntVar(&o.Ctx, "ctx", 256, "window length in tokens; the second half of each window is scored")
	f.IntVar(&o.MaxWindows, "max-windows", 0, "evaluate at most this many windows (0 = all)")
	f.IntVar(&o.Threads, "threads", 0, "windows evaluated in parallel (0 = all CPUs)")
	f.StringVar(&o.Adapter, "adapter", "", "gate the compressed bundle with its adapter set of this name (default: the base alone)")
	f.Float64Var(&o.Thresholds.MaxKLD, "max-kld", defaultGateMaxKLD, "fail when the mean KL(original || compressed) per token is above this (0 = not checked)")
	f.Float64Var(&o.Thresholds.MaxKLDP99, "max-kld-p99", 0, "fail when the 99th percentile of the per-token KL is above this (0 = not checked)")
	f.Float64Var(&o.Thresholds.MaxPPLRatio, "max-ppl-ratio", defaultGateMaxPPLRatio, "fail when compressed perplexity / original perplexity is above this (0 = not checked)")
	f.Float64Var(&o.Thresholds.MinTop1, "min-top1", 0, "fail when the two models put the same token on top at fewer than this fraction of positions (0 = not checked)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.StringVar(&o.JUnit, "junit", "", "also write the checks as a JUnit XML report to this file")
	f.StringVar(&o.Markdown, "markdown", "", "also append the checks as a Markdown section to this file (e.g. $GITHUB_STEP_SUMMARY)")
	return c
}

// gateReport is gate's JSON.
type gateReport struct {
	Original   string       `json:"original"`
	Compressed string       `json:"compressed"`
	Adapter    string       `json:"adapter,omitempty"`
	Text       string       `json:"text"`
	Eval       *eval.Result `json:"eval"`
	Checks     []eval.Check `json:"checks"`
	Pass       bool         `json:"pass"`
	Seconds    float64      `json:"seconds"`
}

func runGate(o *gateOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	switch {
	case o.Original == "":
		return fmt.Errorf("--original MODEL is required")
	case o.Compressed == "":
		return fmt.Errorf("--compressed MODEL is required")
	case o.Text == "":
		return fmt.Errorf("--text FILE is required")
	}
	for _, v := range []struct {
		name string
		x    float64
	}{{"--max-kld", o.Thresholds.MaxKLD}, {"--max-kld-p99", o.Thresholds.MaxKLDP99}, {"--max-ppl-ratio", o.Thresholds.MaxPPLRatio}, {"--min-top1", o.Thresholds.MinTop1}} {
		if v.x < 0 {
			return fmt.Errorf("%s %g: expected >= 0 (0 = not checked)", v.name, v.x)
		}
	}
	// thresholds are checked before the (long) evaluation
	if err := o.Thresholds.Validate(); err != nil {
		return err
	}
	for _, out := range []struct{ flag, path string }{{"--junit", o.JUnit}, {"--markdown", o.Markdown}} {
		if out.path != "" {
			if err := checkOutDir(out.flag, out.path); err != nil {
				return err
			}
		}
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
	m, err := formats.Load(o.Compressed, formats.LoadOptions{Tokenizer: o.Tokenizer, VerifyBundle: o.Verify})
	if err != nil {
		return fmt.Errorf("--compressed: %w", err)
	}
	defer m.Close()
	if err := needTokenizer(m); err != nil {
		return fmt.Errorf("--compressed: %w", err)
	}
	// the pair must be a model and its compression: the shapes agree, and
	// a bundle's recorded source is named (a renamed file only warns); the
	// original, loaded once, is then the evaluation's reference
	orig, err := formats.Load(o.Original, formats.LoadOptions{Tokenizer: o.Tokenizer})
	if err != nil {
		return fmt.Errorf("--original: %w", err)
	}
	defer orig.Close()
	if err := sameShape(orig, m); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if from := m.Meta["compiled_from"]; from != "" && from != filepath.Base(strings.TrimSuffix(o.Original, "/")) {
		fmt.Fprintf(stderr, "gate: %s records it was compiled from %q; --original is %s\n", o.Compressed, from, o.Original)
	}
	if o.Adapter == "" && len(m.AdapterSets) > 0 {
		var names []string
		for _, s := range m.AdapterSets {
			names = append(names, s.Name)
		}
		fmt.Fprintf(stderr, "gate: %s holds adapter sets (%s); gating the base alone, as run runs it (--adapter NAME gates with one)\n",
			o.Compressed, strings.Join(names, ", "))
	}
	res, err := evaluateRef(m, o.Adapter, orig, text, eval.Options{Ctx: o.Ctx, Workers: o.Threads, MaxWindows: o.MaxWindows}, stderr)
	if err != nil {
		return err
	}
	checks, err := eval.Gate(res, o.Thresholds)
	if err != nil {
		return err
	}
	rep := gateReport{Original: o.Original, Compressed: o.Compressed, Adapter: o.Adapter, Text: o.Text, Eval: res, Checks: checks, Pass: true,
		Seconds: time.Since(start).Seconds()}
	for _, c := range checks {
		rep.Pass = rep.Pass && c.Pass
	}
	if o.JUnit != "" {
		cases := make([]reports.JUnitCase, len(checks))
		for i, c := range checks {
			cases[i] = reports.JUnitCase{Name: c.Metric, Class: "squeeze.gate." + junitClass(o.Compressed)}
			if !c.Pass {
				cases[i].Failure = c.String()
			}
		}
		if err := fileio.WriteAtomic(o.JUnit, func(f *os.File) error {
			return reports.JUnit(f, "squeeze gate "+o.Compressed, rep.Seconds, cases)
		}); err != nil {
			return fmt.Errorf("--junit: %w", err)
		}
	}
	if o.Markdown != "" {
		if err := appendGateMarkdown(o.Markdown, o, res, rep); err != nil {
			return fmt.Errorf("--markdown: %w", err)
		}
	}
	if o.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		if err := e.Encode(rep); err != nil {
			return err
		}
	} else {
		if err := reports.Table(stdout, gateHeader, gateRows(checks, "FAIL"), nil); err != nil {
			return err
		}
		how := fmt.Sprintf("%d windows of %d tokens of %s", res.Windows, res.Ctx, o.Text)
		if res.Kernels != "" {
			how += ", " + res.Kernels + " kernels"
		}
		fmt.Fprintf(stdout, "perplexity %.4f compressed, %.4f original; top-1 agreement %.2f%%; %s\n", res.PPL, *res.RefPPL, 100**res.Top1Agree, how)
	}
	if !rep.Pass {
		return gateFailed{checks}
	}
	if !o.JSON {
		fmt.Fprintf(stdout, "gate passed: %d checks\n", len(checks))
	}
	return nil
}

// gateHeader and gateRows are the checks as table rows (the terminal's and
// the Markdown summary's; fail marks a failed check).
var gateHeader = []string{"check", "value", "limit", "result"}

func gateRows(checks []eval.Check, fail string) [][]string {
	rows := make([][]string, len(checks))
	for i, c := range checks {
		verdict := "pass"
		if !c.Pass {
			verdict = fail
		}
		rows[i] = []string{c.Metric, fmt.Sprintf("%.5g", c.Value), fmt.Sprintf("%s %.5g", c.Op, c.Limit), verdict}
	}
	return rows
}

// junitClass turns a path into a dotted class name for JUnit viewers.
func junitClass(path string) string {
	return strings.NewReplacer("/", ".", `\`, ".", " ", "_").Replace(strings.TrimLeft(path, "./"))
}

// appendGateMarkdown appends the gate's verdict and checks as a Markdown
// section (appended, as a CI job summary file is written to by steps).
func appendGateMarkdown(path string, o *gateOptions, res *eval.Result, rep gateReport) error {
	var b strings.Builder
	verdict := "passed"
	if !rep.Pass {
		verdict = "**FAILED**"
	}
	with := ""
	if o.Adapter != "" {
		with = fmt.Sprintf(" with adapter set `%s`", o.Adapter)
	}
	fmt.Fprintf(&b, "### squeeze gate %s: `%s`%s against `%s`\n\n", verdict, o.Compressed, with, o.Original)
	if err := reports.MarkdownTable(&b, gateHeader, gateRows(rep.Checks, "**FAIL**")); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\nPerplexity %.4f compressed, %.4f original; top-1 agreement %.2f%%; %d windows of %d tokens of `%s`.\n\n",
		res.PPL, *res.RefPPL, 100**res.Top1Agree, res.Windows, res.Ctx, o.Text)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
