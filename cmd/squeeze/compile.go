package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/ir"
	lorarecovery "github.com/squeeze-ml/squeeze/lora_recovery"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/reports"
	"github.com/squeeze-ml/squeeze/talaria"
)

func init() { extraCommands = append(extraCommands, newCompileCmd) }

type compileOptions struct {
	model         modelFlags
	Target        string
	Calib         string
	CalibTokens   string
	CalibCtx      int
	Bits          string
	GroupSize     string
	Granularity   string
	EmbeddingBits string
	PerRowScale   bool
	Proxy         string
	ErrorFeedback string
	Fast          string
	RefitLUT      int
	CalibWindows  int
	PlanIn        string
	PlanOut       string
	Method        string
	Seed          uint64
	Out           string
	JSON          bool
	Threads       int
	CPUProfile    string
	budget        budgetFlags
	// --qat: palettization-aware training of the palettes and indices
	// (zero bytes) after palettizing (see squeeze recover --tune-luts --qat).
	QAT      bool
	QATSteps int
	// SampleTokens > 0 adds that many tokens sampled from MODEL to the
	// text --qat and --recover distil on (sampleText).
	SampleTokens int
	// --recover: LoRA recovery as the last stage (see squeeze recover).
	Recover       bool
	RecoverRank   int
	RecoverSteps  int
	RecoverLR     float64
	AdapterBudget float64
}

func newCompileCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &compileOptions{}
	c := &cobra.Command{
		Use:   "compile MODEL --target 3.7bpw -o OUT.sqz",
		Short: "Calibrate, allocate bits, palettize and write a bundle",
		Long: `compile palettizes every linear weight (and the token embedding) of MODEL so that the
average bits per palettized weight, LUT and scale overhead included, is at most --target, choosing
each tensor's bits and LUT group size to minimise the importance-weighted squared error that
calibration on --calib text predicts. It writes a bundle that squeeze run/eval/inspect take.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runCompile(o, args, stdout, stderr) },
	}
	o.model.bind(c)
	o.budget.bind(c)
	f0 := c.Flags()
	f0.BoolVar(&o.QAT, "qat", false, "after palettizing, train the LUT entries, row scales, norms and indices by distillation from MODEL on --calib (zero bytes; as recover --tune-luts --tune-norms --qat, recipe by the achieved rate: below 4 bits per weight --tune-steps 1200 --sample-tokens 200000 (with --qat-lr 0.007 --qat-width-steps below 3), ~2.5 min on stories260K at 2 threads; from 4 up 200 steps on --calib alone at --qat-lr 0.005, ~40 s; for models whose float32 weights and optimizer state fit in memory)")
	f0.IntVar(&o.QATSteps, "qat-steps", 0, "--qat: optimizer steps (0 = auto: 1200 below 4 bits per weight, 200 from 4 up)")
	f0.IntVar(&o.SampleTokens, "sample-tokens", -1, "--qat/--recover: also distil on about this many tokens of text sampled from MODEL itself (as recover --sample-tokens); -1 = auto: 200000 with --qat below 4 bits per weight on models under 20M parameters, else 0")
	f0.BoolVar(&o.Recover, "recover", false, "train LoRA recovery adapters (distillation from MODEL on --calib) as the last stage")
	f0.IntVar(&o.RecoverRank, "rank", 0, "--recover: maximum adapter rank (capped by --adapter-budget; 0 = default)")
	f0.IntVar(&o.RecoverSteps, "steps", 0, "--recover: optimizer steps (0 = default)")
	f0.Float64Var(&o.RecoverLR, "lr", 0, "--recover: peak learning rate (0 = default)")
	f0.Float64Var(&o.AdapterBudget, "adapter-budget", 0.10, "--recover: adapters add at most this fraction to the bundle's size")
	f := c.Flags()
	f.StringVar(&o.Target, "target", "", "bits per palettized weight, overhead included, e.g. 3.7bpw (required unless --plan)")
	o.bindPlannerFlags(c)
	f.StringVar(&o.PlanIn, "plan", "", "use this plan (JSON, e.g. edited from --write-plan) instead of allocating")
	f.StringVar(&o.PlanOut, "write-plan", "", "also write the plan as JSON to this file")
	f.StringVarP(&o.Out, "output", "o", "", "output bundle path (required)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a pprof CPU profile of the compile to this file (stage_cpu_seconds in --json gives the CPU time per stage)")
	return c
}

// bindPlannerFlags binds the calibration, candidate and palettization
// flags that compile and sweep share.
func (o *compileOptions) bindPlannerFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.Calib, "calib", "", "calibration text: importance of each input channel (without it, compression is data-free)")
	f.StringVar(&o.CalibTokens, "calib-tokens", "", "calibrate on token ids instead of text: FILE (whitespace-separated ids; the first should be BOS) or random:N (N ids drawn uniformly from the vocabulary with --seed, BOS = 1: for timing models without a tokenizer, e.g. --synthetic; says nothing about quality)")
	f.IntVar(&o.CalibCtx, "calib-ctx", 256, "calibration window length in tokens")
	f.StringVar(&o.Bits, "bits", "2,3,4", "candidate index widths, a subset of 1,2,3,4,6,8 (the default keeps to the widths with SIMD decode kernels; 6 and 8 bits decode through the pure-Go block decoder: a TinyLlama-1.1B bundle with 27 tensors at 6 bits decoded at 0.4 tok/s under load, where lut2-4 bundles run at 12-17)")
	f.StringVar(&o.GroupSize, "group-size", "auto", "rows sharing one LUT: a number (16 as Apple), 'tensor' for one LUT per tensor, or 'auto' to let the allocator choose among 16,32,64,128,256 and per-tensor")
	f.StringVar(&o.EmbeddingBits, "embedding-bits", "auto", "token embedding / tied classifier: 'auto' (allocated with the rest), a width from --bits' set, or 'keep' (left unpalettized, outside the target)")
	f.StringVar(&o.Granularity, "granularity", "auto", "bit allocation per 'tensor', or per 'group': each block of LUT-group rows gets its own bits and scale choice (16, 32 and 64-row blocks with --group-size auto, or the given size; a tensor may also stay whole), stored as a lutmix tensor of parts; 'auto' = group unless --fast is on (per-group options cost a full clustering pass per width and block size; on stories260K at 3.7 bpw group cut dev KLD 0.210 -> 0.164, 4 s -> 12 s)")
	f.BoolVar(&o.PerRowScale, "per-row-scale", true, "also try a float16 scale per output row before clustering (the allocator picks per tensor)")
	f.StringVar(&o.Proxy, "proxy", "fisher", "damage proxy: fisher (output sensitivity from a backward pass x input mean square: predicted KL divergence, comparable across tensors) or input (input mean square only)")
	f.StringVar(&o.ErrorFeedback, "error-feedback", "auto", "round with GPTQ-style error feedback on each linear's input Gram matrix (needs calibration): on, off, or auto (on unless --fast is in effect: on a 1B model the Gram matrices take ~8 GB and the rounding ~1.5e12 multiply-adds)")
	f.Lookup("error-feedback").NoOptDefVal = "on"
	f.StringVar(&o.Fast, "fast", "auto", "big-model mode: on, off, or auto (on above 20M parameters): candidates estimated on ~64 sampled rows per option, group sizes saving < 0.01 bpw of LUT storage over a smaller one dropped, palettize.FastBins histogram bins (256 at 4 bits, 512 at 6) instead of 1024, no error feedback unless --error-feedback on")
	f.IntVar(&o.RefitLUT, "refit-lut", 1, "with --error-feedback: rounds of least-squares LUT refit")
	f.IntVar(&o.CalibWindows, "calib-windows", 16, "run the calibration (forward and backward) pass on at most this many evenly spaced windows (0 = all; on stories260K at 3.7 bpw all ~300 windows of calib.txt gave dev KLD 0.218 against 0.221 with 16, for 4x the calibration time)")
	f.StringVar(&o.Method, "method", "exact", "k-means solver: exact (optimal 1-D dynamic programming on a 1024-bin histogram) or lloyd (k-means++ and Lloyd)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed (Lloyd initialisation); same inputs and seed give a byte-identical bundle")
	f.IntVar(&o.Threads, "threads", 0, "threads (0 = all CPUs)")
}

// compileResult is the --json output of compile.
type compileResult struct {
	Path            string             `json:"path"`
	BPW             float64            `json:"bpw"`       // bits per palettized weight, LUTs and scales included
	BPWTotal        float64            `json:"bpw_total"` // bundle bits per model parameter
	Bytes           int64              `json:"bytes"`
	Params          int64              `json:"params"`
	TargetBPW       float64            `json:"target_bpw"`
	PredictedDamage float64            `json:"predicted_damage"`
	RelGap          float64            `json:"optimality_gap"`
	Calibrated      bool               `json:"calibrated"`
	Seconds         float64            `json:"seconds"`
	StageSeconds    map[string]float64 `json:"stage_seconds"` // load, calibrate, candidates (with allocation), palettize, write
	// StageCPUSeconds is the process's user + system CPU time per stage
	// (all threads): CPU / wall near --threads means the stage kept every
	// thread busy, near 1 that it ran on one.
	StageCPUSeconds map[string]float64    `json:"stage_cpu_seconds,omitempty"`
	Fast            bool                  `json:"fast"`
	BaseSHA256      string                `json:"base_sha256"`
	Tensors         []palettize.PlanEntry `json:"tensors"`
	AdapterBytes    int64                 `json:"adapter_bytes,omitempty"` // --recover: float16 A and B bytes
	QAT             *compileQAT           `json:"qat,omitempty"`           // --qat
	AdapterBPW      float64               `json:"adapter_bpw,omitempty"`   // adapter bits per palettized weight
	Device          string                `json:"device,omitempty"`
	Predicted       map[string]float64    `json:"predicted,omitempty"`
}

func parseBPW(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "bpw"), 64)
	if err != nil || !(v > 0) || v > 32 {
		return 0, fmt.Errorf("--target %q: expected bits per weight such as 3.7bpw", s)
	}
	return v, nil
}

func parseBits(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || !slices.Contains(ir.PaletteBits, b) {
			return nil, fmt.Errorf("--bits %q: %q is not a supported width (supported: %v)", s, p, ir.PaletteBits)
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out, nil
}

func parseGroupSizes(s string, m *ir.Model) ([]int, error) {
	switch s {
	case "auto":
		return []int{16, 32, 64, 128, 256, 0}, nil
	case "tensor":
		return []int{0}, nil
	}
	g, err := strconv.Atoi(s)
	if err != nil || g <= 0 {
		return nil, fmt.Errorf("--group-size %q: expected a positive number of rows, 'tensor' or 'auto'", s)
	}
	minRows := 0
	for _, n := range palettize.PalettizableNames(m) {
		if r := m.Tensors[n].Rows(); minRows == 0 || r < minRows {
			minRows = r
		}
	}
	if g > minRows {
		return nil, fmt.Errorf("--group-size %d is larger than the %d rows of the smallest palettized tensor (use 'tensor' for one LUT per tensor)", g, minRows)
	}
	return []int{g}, nil
}

// compilePlan calibrates (if asked) and allocates a plan; shared by compile and sweep.
type planner struct {
	m     *ir.Model
	imp   map[string][]float32
	calib *palettize.Calibration
	cands []palettize.TensorCandidates
	bits  []int
	// blockSizes, when set, turns on per-group allocation (--granularity
	// group): blocks holds the per-block options for each size.
	blockSizes []int
	blocks     []palettize.TensorBlocks
	method     string
	seed       uint64
	threads    int
	ef         bool
	refit      int
	fast       bool // see --fast
}

func newPlanner(m *ir.Model, calibPath string, calibCtx int, threads int, stderr io.Writer) (*planner, error) {
	return newPlannerWith(m, calibPath, palettize.CalibrateOptions{Ctx: calibCtx, Workers: threads}, stderr)
}

// newPlannerWith calibrates with the given options (Ctx, Sensitivity, Gram,
// MaxWindows); Workers 0 means all CPUs.
func newPlannerWith(m *ir.Model, calibPath string, copt palettize.CalibrateOptions, stderr io.Writer) (*planner, error) {
	return newPlannerFrom(m, calibPath, "", copt, stderr)
}

// newPlannerFrom is newPlannerWith with an optional token source
// (--calib-tokens) instead of calibration text.
func newPlannerFrom(m *ir.Model, calibPath, calibTokens string, copt palettize.CalibrateOptions, stderr io.Writer) (*planner, error) {
	calibCtx, threads := copt.Ctx, copt.Workers
	p := &planner{m: m, threads: threads}
	if p.threads <= 0 {
		p.threads = goruntime.NumCPU()
	}
	if calibPath != "" && calibTokens != "" {
		return nil, fmt.Errorf("give --calib or --calib-tokens, not both")
	}
	if calibPath == "" && calibTokens == "" {
		fmt.Fprintln(stderr, "squeeze: no --calib text: compressing without data (every input channel weighted alike)")
		return p, nil
	}
	var toks []int
	bos := 1
	source := filepath.Base(calibPath)
	if calibTokens != "" {
		var err error
		if toks, err = readCalibTokens(calibTokens, m.Config.Vocab, copt.Seed); err != nil {
			return nil, err
		}
		if m.Tokenizer != nil {
			bos = m.Tokenizer.BOS
		}
		source = calibTokens
		if !strings.HasPrefix(calibTokens, "random:") {
			source = filepath.Base(calibTokens)
		}
	} else {
		if err := needTokenizer(m); err != nil {
			return nil, err
		}
		text, err := os.ReadFile(calibPath)
		if err != nil {
			return nil, fmt.Errorf("--calib: %w", err)
		}
		toks = m.Tokenizer.Encode(string(text), true)
		if len(toks) < 2 {
			return nil, fmt.Errorf("--calib %s: the text tokenizes to %d tokens, nothing to calibrate on", calibPath, len(toks)-1)
		}
		bos = m.Tokenizer.BOS
	}
	nw := (len(toks) + calibCtx - 1) / calibCtx
	if copt.MaxWindows > 0 {
		nw = min(nw, copt.MaxWindows)
	}
	update, finish := reports.Progress(stderr, nw, "calibrate")
	copt.Workers = p.threads
	copt.Progress = func(d, _ int) { update(d) }
	c, err := palettize.CalibrateWith(m, toks, bos, copt)
	finish()
	if err != nil {
		return nil, err
	}
	c.Source = source
	p.calib, p.imp = c, c.Importance
	return p, nil
}

func (p *planner) candidates(bits, groups []int, scale bool, embBits string, stderr io.Writer) error {
	p.bits = bits
	scales := []bool{false}
	if scale {
		scales = []bool{false, true}
	}
	names := palettize.PalettizableNames(p.m)
	var embName []string
	embWidth := []int(nil)
	switch embBits {
	case "auto":
	case "keep":
		names = slices.DeleteFunc(names, func(n string) bool { return n == ir.NameTokenEmbd })
	default:
		b, err := strconv.Atoi(embBits)
		if err != nil || !slices.Contains(ir.PaletteBits, b) {
			return fmt.Errorf("--embedding-bits %q: expected auto, keep or one of %v", embBits, ir.PaletteBits)
		}
		names = slices.DeleteFunc(names, func(n string) bool { return n == ir.NameTokenEmbd })
		embName, embWidth = []string{ir.NameTokenEmbd}, []int{b}
	}
	sets := []struct {
		bits  []int
		names []string
		what  string
	}{{bits, names, "candidates"}, {embWidth, embName, "embedding"}}
	// Per-group options first (--granularity group): a tensor's options
	// with one LUT per block are then the sums of its blocks' (see
	// palettize.AddBlockOptions), not clustered a second time.
	tgroups := groups
	if p.blockSizes != nil {
		for _, set := range sets {
			if len(set.names) == 0 {
				continue
			}
			update, finish := reports.Progress(stderr, len(set.names)*len(set.bits)*len(scales)*len(p.blockSizes), "group "+set.what)
			gopt := p.candidateOptions(set.bits, nil, scales, set.names)
			gopt.Progress = func(d, _ int) { update(d) }
			tb, err := palettize.GroupCandidates(p.m, p.imp, gopt, p.blockSizes)
			finish()
			if err != nil {
				return err
			}
			p.blocks = append(p.blocks, tb...)
		}
		tgroups = slices.DeleteFunc(slices.Clone(groups), func(g int) bool { return slices.Contains(p.blockSizes, g) })
	}
	var cands [2][]palettize.TensorCandidates
	for i, set := range sets {
		if len(set.names) == 0 {
			continue
		}
		update, finish := reports.Progress(stderr, len(set.names)*len(set.bits)*len(tgroups)*len(scales), set.what)
		co := p.candidateOptions(set.bits, tgroups, scales, set.names)
		co.Progress = func(d, _ int) { update(d) }
		c, err := palettize.Candidates(p.m, p.imp, co)
		finish()
		if err != nil {
			return err
		}
		cands[i] = c
	}
	p.cands = append(cands[0], cands[1]...)
	palettize.AddBlockOptions(p.cands, p.blocks)
	return nil
}

// candidateOptions are the Candidates options of this planner (with the
// big-model shortcuts of --fast).
func (p *planner) candidateOptions(bits, groups []int, scales []bool, names []string) palettize.CandidateOptions {
	o := palettize.CandidateOptions{Bits: bits, GroupSizes: groups, PerRowScale: scales,
		Tensors: names, Method: p.method, Seed: p.seed, Workers: p.threads, Calib: p.calib, ErrorFeedback: p.ef, RefitLUT: p.refit}
	if p.fast {
		o.SampleRows, o.MinGroupSavingBPW, o.FastBins = fastSampleRows, fastMinGroupSaving, true
	}
	return o
}

// The --fast settings (see the flag's help and docs/PERF.md, "Compile").
const (
	fastParams         = 20_000_000 // --fast auto: on above this many parameters
	fastSampleRows     = 64
	fastMinGroupSaving = 0.01 // bpw
)

// readCalibTokens reads --calib-tokens: random:N or a file of
// whitespace-separated token ids, each checked against the vocabulary.
func readCalibTokens(spec string, vocab int, seed uint64) ([]int, error) {
	if n, ok := strings.CutPrefix(spec, "random:"); ok {
		cnt, err := strconv.Atoi(n)
		if err != nil || cnt < 2 {
			return nil, fmt.Errorf("--calib-tokens %q: expected random:N with N >= 2", spec)
		}
		rng := rand.New(rand.NewPCG(seed, 0x746f6b656e73)) // "tokens"
		toks := make([]int, cnt)
		for i := range toks {
			toks[i] = rng.IntN(vocab)
		}
		return toks, nil
	}
	data, err := os.ReadFile(spec)
	if err != nil {
		return nil, fmt.Errorf("--calib-tokens: %w", err)
	}
	var toks []int
	for i, f := range strings.Fields(string(data)) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 || v >= vocab {
			return nil, fmt.Errorf("--calib-tokens %s: token %d is %q, expected an id in 0..%d", spec, i, f, vocab-1)
		}
		toks = append(toks, v)
	}
	if len(toks) < 2 {
		return nil, fmt.Errorf("--calib-tokens %s: %d token ids, expected at least 2", spec, len(toks))
	}
	return toks, nil
}

func (p *planner) allocate(target float64) (*palettize.Plan, error) {
	return p.allocateFrom(p.cands, p.blocks, target)
}

// allocateFrom allocates among cands and, with per-group allocation
// (blockSizes set), blocks: the planner's own, or a subset of their
// options (explore's pinned tensors).
func (p *planner) allocateFrom(cands []palettize.TensorCandidates, blocks []palettize.TensorBlocks, target float64) (*palettize.Plan, error) {
	var plan *palettize.Plan
	var err error
	if p.blockSizes != nil {
		plan, err = palettize.AllocateGroups(cands, blocks, target)
	} else {
		plan, err = palettize.Allocate(cands, target)
	}
	if err != nil {
		return nil, err
	}
	return p.finishPlan(plan), nil
}

// finishPlan records how the plan is to be applied.
func (p *planner) finishPlan(plan *palettize.Plan) *palettize.Plan {
	plan.Method, plan.Seed = p.method, p.seed
	plan.ErrorFeedback, plan.RefitLUT = p.ef, p.refit
	if plan.CandidateBits == nil {
		plan.CandidateBits = p.bits
	}
	return plan
}

func (p *planner) apply(plan *palettize.Plan, stderr io.Writer) (*ir.Model, error) {
	update, finish := reports.Progress(stderr, len(plan.Tensors), "palettize")
	out, err := palettize.Apply(p.m, plan, p.imp, palettize.ApplyOptions{Workers: p.threads, Calib: p.calib, FastBins: p.fast, NoStats: true,
		Progress: func(d, _ int, _ string, _ palettize.Stats) { update(d) }})
	finish()
	return out, err
}

func runCompile(o *compileOptions, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	// --cpuprofile profiles this compile (SQUEEZE_CPUPROFILE, handled in
	// main, profiles any command).
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.QAT && o.Calib == "" {
		return fmt.Errorf("--qat needs --calib text to distil on")
	}
	if o.Recover && o.Calib == "" {
		return fmt.Errorf("--recover needs --calib text to distil on")
	}
	if o.SampleTokens < -1 || (o.SampleTokens > 0 && !o.QAT && !o.Recover) {
		return fmt.Errorf("--sample-tokens %d: expected -1 (auto) or >= 0, and used only with --qat or --recover", o.SampleTokens)
	}
	if o.QAT && o.QATSteps < 0 {
		return fmt.Errorf("--qat-steps %d: expected >= 1, or 0 for auto", o.QATSteps)
	}
	if o.Out == "" {
		return fmt.Errorf("-o OUT.sqz is required")
	}
	if err := checkOutDir("-o", o.Out); err != nil {
		return err
	}
	if o.Method != "exact" && o.Method != "lloyd" {
		return fmt.Errorf("--method %q: expected exact or lloyd", o.Method)
	}
	var target float64
	var err error
	if err := o.budget.check(); err != nil {
		return err
	}
	if o.PlanIn == "" {
		if o.Target == "" {
			return fmt.Errorf("--target is required (e.g. --target 3.7bpw), or give --plan FILE")
		}
		if target, err = parseBPW(o.Target); err != nil {
			return err
		}
	}
	bits, err := parseBits(o.Bits)
	if err != nil {
		return err
	}
	stages, stageCPU := map[string]float64{}, map[string]float64{}
	lap, lapCPU := time.Now(), processCPUSeconds()
	stage := func(name string) {
		now, cpu := time.Now(), processCPUSeconds()
		stages[name] += now.Sub(lap).Seconds()
		if cpu >= 0 && lapCPU >= 0 {
			stageCPU[name] += cpu - lapCPU
		}
		lap, lapCPU = now, cpu
	}
	// Each stage's goroutines carry a pprof label, so a --cpuprofile
	// splits by stage: go tool pprof -tagfocus stage=calibrate ...
	label := func(name string) {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", name)))
	}
	defer pprof.SetGoroutineLabels(context.Background())
	label("load")
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	stage("load")
	label("calibrate")
	if m.Format == "bundle" {
		return fmt.Errorf("%s is already a compiled bundle; compile the original model", m.Source)
	}
	p, groups, fast, err := o.preparePlanner(m, stage, stderr)
	if err != nil {
		return err
	}
	label("candidates")
	var plan *palettize.Plan
	if o.PlanIn != "" {
		f, err := os.Open(o.PlanIn)
		if err != nil {
			return fmt.Errorf("--plan: %w", err)
		}
		plan, err = palettize.ReadPlan(f, o.PlanIn)
		f.Close()
		if err != nil {
			return err
		}
		if err := plan.Validate(m); err != nil {
			return fmt.Errorf("--plan %s: %w", o.PlanIn, err)
		}
		target = plan.TargetBPW
	} else {
		if err := p.candidates(bits, groups, o.PerRowScale, o.EmbeddingBits, stderr); err != nil {
			return err
		}
		if o.budget.active() {
			var br *talaria.BudgetResult
			if plan, br, err = allocateWithBudgets(m, p.cands, target, &o.budget, stderr); err != nil {
				return err
			}
			plan.Seed, plan.CandidateBits = o.Seed, bits
			plan.Method = o.Method
			plan.Device = o.budget.Device
			plan.Predicted = map[string]float64{"decode_ms_per_token": br.Figures.DecodeMsPerToken,
				"prefill_ms_per_token": br.Figures.PrefillMsPerToken, "energy_mj_per_token": br.Figures.EnergyMJPerToken,
				"weight_bytes": float64(br.Figures.WeightBytes)}
		} else if plan, err = p.allocate(target); err != nil {
			return err
		}
	}
	if o.PlanOut != "" {
		f, err := os.Create(o.PlanOut)
		if err != nil {
			return fmt.Errorf("--write-plan: %w", err)
		}
		err = palettize.WritePlan(f, plan)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("--write-plan: %w", err)
		}
	}
	stage("candidates")
	label("palettize")
	pm, err := p.apply(plan, stderr)
	if err != nil {
		return err
	}
	stage("palettize")
	var text []byte // the calibration text the --qat and --recover stages distil on
	if o.QAT || o.Recover {
		if text, err = os.ReadFile(o.Calib); err != nil {
			return fmt.Errorf("--calib: %w", err)
		}
	}
	sampled := 0
	// --qat's auto recipe by the achieved rate (qatRecipeFor).
	rec := qatRecipeFor(plan.AchievedBPW)
	long := rec.Long
	qatSteps := o.QATSteps
	if qatSteps == 0 {
		qatSteps = rec.Steps
	}
	nSample := o.SampleTokens
	if nSample < 0 { // auto
		nSample = 0
		if o.QAT && long && m.NumParams() < autoSampleMaxParams {
			nSample = autoSampleTokens
		}
	}
	if nSample > 0 {
		label("sample")
		gen, n, err := sampleText(m, nSample, o.Seed, o.Threads)
		if err != nil {
			return err
		}
		text, sampled = append(append(text, '\n'), gen...), n
		stage("sample")
	}
	var qatRes *compileQAT
	if o.QAT {
		label("qat")
		tuned, rep, err := tuneBase(m, pm, text, tuneConfig{Steps: qatSteps, Seed: o.Seed, Threads: o.Threads, Norms: true,
			QAT: &rec.QAT, Log: stderr})
		if err != nil {
			return fmt.Errorf("--qat: %w", err)
		}
		pm = tuned
		qatRes = &compileQAT{Steps: rep.Steps, HeldOutKLBefore: rep.BaseHeldOutKL, HeldOutKLAfter: rep.BestHeldOutKL, BestStep: rep.BestStep, SampledTokens: sampled}
		if q := rep.QAT; q != nil {
			qatRes.IndicesChanged, qatRes.LR, qatRes.WidthSteps, qatRes.EMA, qatRes.BestFromEMA = q.IndicesChanged, q.LR, q.WidthSteps, q.EMA, q.BestFromEMA
		}
		stage("qat")
	}
	var adapterBytes int64
	if o.Recover {
		label("recover")
		// The budget is a fraction of the bundle's size: write the base
		// bundle once (beside the output, then removed) to know it.
		probe := o.Out + ".base-probe"
		binfo, err := bundle.Write(probe, pm, bundle.Extra{SqueezeVersion: version, Source: filepath.Base(m.Source), Plan: plan, Calibration: p.calib})
		os.Remove(probe)
		if err != nil {
			return err
		}
		set, _, err := recoverAdapters(m, pm, text, recoverConfig{Rank: o.RecoverRank, Steps: o.RecoverSteps, LR: o.RecoverLR,
			Budget: o.AdapterBudget, Name: "recover", Seed: o.Seed, Threads: o.Threads, Importance: p.imp, Log: stderr,
			BundleBytes: binfo.Bytes})
		if err != nil {
			return err
		}
		pm.AdapterSets = []*ir.AdapterSet{set}
		adapterBytes = set.Bytes()
		stage("recover")
	}
	ex := bundle.Extra{SqueezeVersion: version, Source: filepath.Base(m.Source), Plan: plan}
	if p.calib != nil {
		ex.Calibration = p.calib
	}
	label("write")
	info, err := bundle.Write(o.Out, pm, ex)
	if err != nil {
		return err
	}
	stage("write")
	res := compileResult{Path: info.Path, BPW: plan.AchievedBPW, BPWTotal: 8 * float64(info.Bytes) / float64(m.NumParams()),
		Bytes: info.Bytes, Params: m.NumParams(), TargetBPW: target, PredictedDamage: plan.PredictedDamage, RelGap: plan.RelGap,
		Calibrated: p.calib != nil, Seconds: time.Since(start).Seconds(), StageSeconds: stages, StageCPUSeconds: stageCPU, Fast: fast, BaseSHA256: info.BaseSHA256, Tensors: plan.Tensors,
		Device: plan.Device, Predicted: plan.Predicted}
	res.QAT = qatRes
	if o.Recover {
		res.AdapterBytes = adapterBytes
		res.AdapterBPW = 8 * float64(adapterBytes) / float64(plan.TotalWeights)
	}
	if o.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	var rows [][]string
	for _, t := range plan.Tensors {
		b, g := entryCells(t)
		rows = append(rows, []string{t.Name, fmt.Sprint(t.Shape), b, g, fmt.Sprintf("%.3f", t.BPW), fmt.Sprintf("%.4g", t.Damage)})
	}
	if err := reports.Table(stdout, []string{"tensor", "shape", "bits", "lut group", "bpw", "predicted damage"}, rows,
		[]string{"total", "", "", "", fmt.Sprintf("%.3f", plan.AchievedBPW), fmt.Sprintf("%.4g", plan.PredictedDamage)}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s: %s, %.3f bits per palettized weight (target %.3g, overhead included), %.3f bits per parameter overall; allocation gap %.2f%%; %.1fs\n",
		info.Path, reports.Bytes(info.Bytes), res.BPW, target, res.BPWTotal, 100*plan.RelGap, res.Seconds)
	return nil
}

// qatRecipe is compile --qat's auto recipe for one achieved rate.
type qatRecipe struct {
	Steps int
	QAT   lorarecovery.QATOptions
	// Long: distil on text sampled from the model too (autoSampleTokens,
	// on models under autoSampleMaxParams).
	Long bool
}

// qatRecipeFor picks compile --qat's recipe by the achieved bits per
// palettized weight. Chosen on stories260K (dev KLD over the whole
// dev.txt, docs/QUALITY.md "Session 5"); every recipe keeps a moving
// average of the palettes and latent weights (QATOptions.EMA):
//   - below 3 bpw: 1200 steps on --calib plus sampled text, latent steps
//     scaled by width (0.007 at 3 bits, so 0.014 at 2): 2.5 bpw 0.3248,
//     where session 4's 600 steps at 0.01 unscaled gave 0.3782;
//   - from 3 to 4: 1200 steps plus sampled text, 0.0025 unscaled: 3.7 bpw
//     0.0677, 0.0702, 0.0700 (seeds 1-3), where session 4's recipe gave
//     0.0848-0.0885 (at exactly 3 bpw the sub-3 recipe did 4% better on KLD
//     and worse on perplexity: the edge is not tuned);
//   - from 4 up: 200 steps on --calib alone, 0.005: every tensor 4-bit
//     (4.32 bpw) 0.0448, where session 4's 0.01 without the average gave
//     0.0533.
func qatRecipeFor(bpw float64) qatRecipe {
	switch {
	case bpw < 3:
		return qatRecipe{Steps: 1200, Long: true, QAT: lorarecovery.QATOptions{LR: 0.007, WidthSteps: true, EMA: qatEMA}}
	case bpw < 4:
		return qatRecipe{Steps: 1200, Long: true, QAT: lorarecovery.QATOptions{LR: defaultQATLR, EMA: qatEMA}}
	}
	return qatRecipe{Steps: 200, QAT: lorarecovery.QATOptions{LR: 0.005, EMA: qatEMA}}
}

const (
	qatEMA              = 0.99
	autoSampleTokens    = 200000
	autoSampleMaxParams = 20_000_000
)

// compileQAT is the --qat part of compileResult: held-out KL to MODEL on
// the last 10% of the --calib windows before and after.
type compileQAT struct {
	Steps           int     `json:"steps"`
	HeldOutKLBefore float64 `json:"heldout_kl_before"`
	HeldOutKLAfter  float64 `json:"heldout_kl_after"`
	BestStep        int     `json:"best_step"`
	IndicesChanged  int     `json:"indices_changed"`
	SampledTokens   int     `json:"sampled_tokens,omitempty"` // --sample-tokens
	// The recipe (qatRecipeFor): latent step, width scaling, the moving
	// average's decay, and whether the returned model is the average.
	LR          float64 `json:"lr"`
	WidthSteps  bool    `json:"width_steps"`
	EMA         float64 `json:"ema"`
	BestFromEMA bool    `json:"best_from_ema"`
}

// preparePlanner validates the shared planner flags, calibrates and
// returns the planner, the candidate group sizes and whether --fast is on.
func (o *compileOptions) preparePlanner(m *ir.Model, stage func(string), stderr io.Writer) (*planner, []int, bool, error) {
	groups, err := parseGroupSizes(o.GroupSize, m)
	if err != nil {
		return nil, nil, false, err
	}
	switch o.Proxy {
	case "fisher", "input":
	default:
		return nil, nil, false, fmt.Errorf("--proxy %q: expected fisher or input", o.Proxy)
	}
	if o.RefitLUT < 0 {
		return nil, nil, false, fmt.Errorf("--refit-lut %d: expected >= 0", o.RefitLUT)
	}
	var fast bool
	switch o.Fast {
	case "auto":
		fast = m.NumParams() > fastParams
	case "on", "true":
		fast = true
	case "off", "false":
	default:
		return nil, nil, false, fmt.Errorf("--fast %q: expected auto, on or off", o.Fast)
	}
	var ef bool
	switch o.ErrorFeedback {
	case "auto":
		ef = !fast
	case "on", "true":
		ef = true
	case "off", "false":
	default:
		return nil, nil, false, fmt.Errorf("--error-feedback %q: expected auto, on or off", o.ErrorFeedback)
	}
	ef = ef && (o.Calib != "" || o.CalibTokens != "")
	p, err := newPlannerFrom(m, o.Calib, o.CalibTokens, palettize.CalibrateOptions{Ctx: o.CalibCtx, Workers: o.Threads,
		Sensitivity: o.Proxy == "fisher", Gram: ef, MaxWindows: o.CalibWindows, Seed: o.Seed}, stderr)
	if err != nil {
		return nil, nil, false, err
	}
	p.fast = fast
	stage("calibrate")
	if fast && os.Getenv("GOGC") == "" {
		// The model is most of the live heap and holds no pointers, so
		// collecting often is cheap; the default (collect when the heap
		// doubles) would let per-group garbage grow to a second model's
		// worth of memory.
		debug.SetGCPercent(10)
	}
	if ef {
		p.ef, p.refit = true, o.RefitLUT
	}
	if o.Proxy == "input" && p.calib != nil {
		p.calib.OutputFisher = nil // weigh by input mean squares only
	}
	p.method, p.seed = o.Method, o.Seed
	gran := o.Granularity
	if gran == "auto" {
		gran = "group"
		if fast || o.GroupSize == "tensor" || o.budget.active() {
			gran = "tensor"
		}
	}
	switch gran {
	case "tensor":
	case "group":
		if o.GroupSize == "tensor" {
			return nil, nil, false, fmt.Errorf("--granularity group cuts tensors into blocks of LUT-group rows; --group-size tensor leaves nothing to cut (use auto or a number)")
		}
		p.blockSizes = []int{16, 32, 64}
		if o.GroupSize != "auto" {
			p.blockSizes = groups
		}
		if o.budget.active() {
			return nil, nil, false, fmt.Errorf("--granularity group with --device budgets is not supported yet (the budget allocator chooses per tensor)")
		}
	default:
		return nil, nil, false, fmt.Errorf("--granularity %q: expected tensor or group", o.Granularity)
	}
	return p, groups, fast, nil
}

// entryCells is a plan entry's bits and LUT group for the tables (compile's
// and explore's): "tensor" for one LUT per tensor, widths:rows for a
// per-group entry (partsSummary).
func entryCells(t palettize.PlanEntry) (bits, group string) {
	if len(t.Parts) > 0 {
		return partsSummary(t.Parts)
	}
	group = fmt.Sprint(t.GroupSize)
	if len(t.Shape) > 0 && t.GroupSize == t.Shape[0] {
		group = "tensor"
	}
	return fmt.Sprint(t.Bits), group
}

// partsSummary describes a per-group entry for the tables: rows per width
// ("4:32 2:128 3:12") and the group sizes.
func partsSummary(parts []palettize.PlanPart) (bits, groups string) {
	var b, g []string
	for _, pp := range parts {
		s := ""
		if pp.PerRowScale {
			s = "s"
		}
		b = append(b, fmt.Sprintf("%d%s:%d", pp.Bits, s, pp.Rows))
		if s := fmt.Sprint(pp.GroupSize); !slices.Contains(g, s) {
			g = append(g, s)
		}
	}
	return strings.Join(b, " "), strings.Join(g, ",")
}
