package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/talaria"
)

func init() { extraCommands = append(extraCommands, newProfileCmd) }

type profileOptions struct {
	model        modelFlags
	Device       string
	PlanFile     string
	BPW          float64
	PromptTokens int
	Context      int
	Sort         string
	By           string
	Top          int
	Phase        string
	WhatIf       string
	Calib        string
	JSON         bool
	Recalibrate  bool
	// Measured mode.
	Measure       bool
	MeasureSteps  int
	MeasureWarmup int
	Threads       int
	Kernels       kernelFlag
	promptSet     bool
}

func newProfileCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &profileOptions{}
	c := &cobra.Command{
		Use:   "profile MODEL|BUNDLE --device D [--plan FILE | --bpw X]",
		Short: "Per-op latency, energy and memory on a device profile (Talaria), with what-if simulation",
		Long: `profile predicts, for every op of the model, latency, energy and bytes on a device, for one
decode step at context --context and for a prefill of --prompt-tokens tokens, and the totals: time
to first token, ms per prompt token, decode tokens/s, energy per token, peak memory. The bit plan
comes from a bundle's own tensors, from --plan (a plan written by compile --write-plan), or from
--bpw (every palettizable weight at that rate). --what-if applies bit changes and shows the deltas.
Devices: ` + fmt.Sprint(talaria.BuiltinNames()) + `, host (this machine, calibrated by micro-benchmarks
and cached), or a JSON profile file (docs/TALARIA.md).

--measure (host only) also runs the model on this machine with every op timed: it prefills
--prompt-tokens tokens (default 128 in this mode), runs --measure-warmup untimed and
--measure-steps timed decode steps, and prints each op's measured time (median over the steps)
beside the prediction, with the median absolute error over ops of at least 50 µs. With
--synthetic, --bpw X measures a model palettized at X bits (random indices, LUT groups of 16
rows) and --plan a model encoded as the plan says.

--kernels (host only) chooses the palettized arithmetic the host profile is measured in and
--measure runs: int8 (the default, as run, bench and eval) or float.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.promptSet = c.Flags().Changed("prompt-tokens")
			return runProfile(o, args, stdout, stderr)
		},
	}
	o.model.bind(c)
	f := c.Flags()
	f.StringVar(&o.Device, "device", "host", "device profile: a built-in name, host, or a JSON file")
	f.StringVar(&o.PlanFile, "plan", "", "bit plan (JSON from compile --write-plan)")
	f.Float64Var(&o.BPW, "bpw", 0, "uniform bits per weight for every palettizable tensor (instead of --plan)")
	f.IntVar(&o.PromptTokens, "prompt-tokens", 1024, "prefill length N")
	f.IntVar(&o.Context, "context", 0, "decode context L (default N)")
	f.StringVar(&o.Sort, "sort", "latency", "sort rows by latency, energy or bytes")
	f.StringVar(&o.By, "by", "op", "group rows by op, layer or type")
	f.IntVar(&o.Top, "top", 0, "show only the first rows (0 = all; totals cover every op)")
	f.StringVar(&o.Phase, "phase", "decode", "per-op figures for the decode step or the whole prefill")
	f.StringVar(&o.WhatIf, "what-if", "", "bit changes to simulate, e.g. 'blk.*.ffn_*=2,blk.0.*=4'")
	f.StringVar(&o.Calib, "calib", "", "calibration text: what-if also shows predicted damage (real models only)")
	f.BoolVar(&o.JSON, "json", false, "print JSON (schema in docs/TALARIA.md)")
	f.BoolVar(&o.Recalibrate, "recalibrate", false, "re-measure the host profile instead of using the cache")
	f.BoolVar(&o.Measure, "measure", false, "run the model on this machine and show measured beside predicted per op (--device host only)")
	f.IntVar(&o.MeasureSteps, "measure-steps", 16, "decode steps timed by --measure (per-op medians)")
	f.IntVar(&o.MeasureWarmup, "measure-warmup", 2, "untimed decode steps before the timed ones (--measure)")
	f.IntVar(&o.Threads, "threads", 0, "runtime threads for --measure (default: the host profile's calibration threads)")
	o.Kernels.bind(c)
	return c
}

// planFromModel reads the encodings of a (palettized) model's tensors.
func planFromModel(m *ir.Model) talaria.Plan { return talaria.PlanFromModel(m) }

// planFromPalettize is how Talaria sees a palettize.Plan; a per-group
// entry (lutmix) keeps its parts.
func planFromPalettize(pp *palettize.Plan) talaria.Plan {
	p := talaria.Plan{Tensors: map[string]talaria.TensorEncoding{}}
	for _, e := range pp.Tensors {
		enc := talaria.TensorEncoding{Bits: e.Bits, GroupSize: e.GroupSize, PerRowScale: e.PerRowScale}
		for _, pt := range e.Parts {
			enc.Parts = append(enc.Parts, talaria.PartEncoding{Rows: pt.Rows,
				TensorEncoding: talaria.TensorEncoding{Bits: pt.Bits, GroupSize: pt.GroupSize, PerRowScale: pt.PerRowScale}})
		}
		p.Tensors[e.Name] = enc
	}
	return p
}

func runProfile(o *profileOptions, args []string, stdout, stderr io.Writer) error {
	if o.PlanFile != "" && o.BPW != 0 {
		return fmt.Errorf("give --plan or --bpw, not both")
	}
	if o.Measure {
		return runProfileMeasure(o, args, stdout, stderr)
	}
	var cfg ir.Config
	var label string
	var m *ir.Model
	if o.model.Synthetic != "" && len(args) == 0 {
		// The profiler needs only the shape: no weights are generated.
		c, err := ir.SyntheticConfig(o.model.Synthetic)
		if err != nil {
			return err
		}
		cfg, label = c, "synthetic:"+o.model.Synthetic
	} else {
		var err error
		if m, err = o.model.load(args); err != nil {
			return err
		}
		defer m.Close()
		cfg, label = m.Config, m.Source
	}
	plan := talaria.Plan{}
	switch {
	case o.BPW != 0:
		if !(o.BPW > 0 && o.BPW <= 32) {
			return fmt.Errorf("--bpw %v: expected a rate in (0, 32]", o.BPW)
		}
		plan = talaria.UniformBPW(o.BPW)
	case o.PlanFile != "":
		f, err := os.Open(o.PlanFile)
		if err != nil {
			return fmt.Errorf("--plan: %w", err)
		}
		pp, err := palettize.ReadPlan(f, o.PlanFile)
		f.Close()
		if err != nil {
			return err
		}
		if m != nil {
			if err := pp.Validate(m); err != nil {
				return fmt.Errorf("--plan %s: %w", o.PlanFile, err)
			}
		}
		plan = planFromPalettize(pp)
	case m != nil:
		plan = planFromModel(m)
	}
	// the host profile is measured in the arithmetic run uses (--kernels);
	// everything else here (what-if damage) stays on the library's float
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	dev, err := talaria.ResolveDevice(o.Device, talaria.HostOptions{Recalibrate: o.Recalibrate, Log: stderr})
	restore()
	if err != nil {
		return err
	}
	opts := talaria.Options{Config: cfg, Model: label, Device: dev, Plan: plan, PrefillTokens: o.PromptTokens,
		DecodeContext: o.Context, Phase: o.Phase}
	if o.WhatIf != "" {
		ovs, err := talaria.ParseWhatIf(o.WhatIf)
		if err != nil {
			return err
		}
		var dmg talaria.Damage
		if o.Calib != "" {
			if m == nil || m.Format == "bundle" {
				return fmt.Errorf("--calib needs the original model (damage is measured against its weights)")
			}
			if dmg, err = whatIfDamage(m, o.Calib, ovs, stderr); err != nil {
				return err
			}
		}
		res, err := talaria.WhatIf(opts, ovs, dmg)
		if err != nil {
			return err
		}
		if o.JSON {
			return talaria.WriteJSON(stdout, res)
		}
		return talaria.RenderWhatIf(stdout, res)
	}
	res, err := talaria.Profile(opts)
	if err != nil {
		return err
	}
	if o.JSON {
		return talaria.WriteJSON(stdout, res)
	}
	return talaria.RenderTable(stdout, res, talaria.TableOptions{SortBy: o.Sort, GroupBy: o.By, Top: o.Top})
}

// whatIfDamage computes the palettize damage of every palettizable tensor
// at the bit widths the overrides name (and 2, 4, 8), per-tensor LUTs of 16
// rows, with calibration importance.
func whatIfDamage(m *ir.Model, calib string, ovs []talaria.Override, stderr io.Writer) (talaria.Damage, error) {
	p, err := newPlanner(m, calib, 256, 0, stderr)
	if err != nil {
		return nil, err
	}
	bits := map[int]bool{2: true, 4: true, 8: true}
	for _, ov := range ovs {
		if ov.Bits > 0 && ov.Bits <= 8 {
			bits[ov.Bits] = true
		}
	}
	var bl []int
	for _, b := range ir.PaletteBits {
		if bits[b] {
			bl = append(bl, b)
		}
	}
	cands, err := palettize.Candidates(m, p.imp, palettize.CandidateOptions{Bits: bl, GroupSizes: []int{16}, Workers: p.threads})
	if err != nil {
		return nil, err
	}
	dmg := talaria.Damage{}
	for name, byBits := range palettize.DamageTable(cands, 16) {
		dmg[name] = map[int]float64{}
		for b, cell := range byBits {
			dmg[name][b] = cell.Damage
		}
	}
	return dmg, nil
}

// runProfileMeasure is `profile --measure`: run the model on this machine,
// every op timed, beside the host profile's predictions.
func runProfileMeasure(o *profileOptions, args []string, stdout, stderr io.Writer) error {
	if o.Device != "host" {
		return fmt.Errorf("--measure runs the model on this machine, so it needs --device host (got %q)", o.Device)
	}
	if o.WhatIf != "" {
		return fmt.Errorf("--measure and --what-if cannot be combined")
	}
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	defer restore()
	n := o.PromptTokens
	if !o.promptSet {
		n = 128
	}
	if o.Context != 0 {
		return fmt.Errorf("--measure decodes right after the prefill (contexts N+warmup+1 ..): set --prompt-tokens, not --context")
	}
	var m *ir.Model
	switch {
	case o.model.Synthetic != "" && len(args) == 0:
		m, err = measureSynthetic(o, stderr)
	case o.BPW != 0 || o.PlanFile != "":
		return fmt.Errorf("--measure runs a real model as stored: --bpw and --plan need --synthetic (compile the model to a bundle to measure it at other rates)")
	default:
		m, err = o.model.load(args)
	}
	if err != nil {
		return err
	}
	defer m.Close()
	dev, err := talaria.ResolveDevice("host", talaria.HostOptions{Recalibrate: o.Recalibrate, Log: stderr})
	if err != nil {
		return err
	}
	res, err := talaria.Measure(talaria.MeasureOptions{Model: m, Device: dev, PrefillTokens: n,
		Warmup: o.MeasureWarmup, Steps: o.MeasureSteps, Threads: o.Threads, Seed: o.model.Seed})
	if err != nil {
		return err
	}
	if o.JSON {
		return talaria.WriteJSON(stdout, res)
	}
	return talaria.RenderMeasure(stdout, res, o.Top)
}

// measureSynthetic builds the synthetic model --measure runs: float32
// weights, --bpw X palettized (ir.SyntheticPalettized, LUT groups of 16
// rows), or every tensor encoded as --plan says (talaria.EncodeForPlan).
func measureSynthetic(o *profileOptions, stderr io.Writer) (*ir.Model, error) {
	name := o.model.Synthetic
	switch {
	case o.BPW != 0:
		fmt.Fprintf(stderr, "measure: building synthetic %s palettized at %g bits per weight\n", name, o.BPW)
		return ir.SyntheticPalettized(name, o.BPW, 16, 1)
	case o.PlanFile != "":
		f, err := os.Open(o.PlanFile)
		if err != nil {
			return nil, fmt.Errorf("--plan: %w", err)
		}
		pp, err := palettize.ReadPlan(f, o.PlanFile)
		f.Close()
		if err != nil {
			return nil, err
		}
		m, err := ir.Synthetic(name, 1)
		if err != nil {
			return nil, err
		}
		if err := pp.Validate(m); err != nil {
			return nil, fmt.Errorf("--plan %s: %w", o.PlanFile, err)
		}
		return talaria.EncodeForPlan(m, planFromPalettize(pp), 1)
	}
	return ir.Synthetic(name, 1)
}
