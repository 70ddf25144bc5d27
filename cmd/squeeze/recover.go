package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/ir"
	lorarecovery "github.com/squeeze-ml/squeeze/lora_recovery"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/reports"
	"github.com/squeeze-ml/squeeze/runtime"
)

func init() { extraCommands = append(extraCommands, newRecoverCmd) }

// Recovery defaults, tuned on stories260K (docs/QUALITY.md, "Recovery").
const (
	defaultRecoverRank  = 64
	defaultRecoverSteps = 200
	defaultRecoverLR    = 1e-2
	// Adapters (and --joint) train on 256-token windows, the context eval
	// scores at (its second half): on stories260K at 3.7 bpw 128-token
	// windows never trained the positions dev.txt is scored on, and 256
	// cut dev KLD from 0.0609 to 0.0594 (adapters) and 0.0568 to 0.0541
	// (--joint) at the same tokens per step; 512 did worse (0.0549).
	// Palette tuning / QAT alone keeps 128 (compile --qat's base: 256 gave
	// 0.0703 against 0.0677). docs/QUALITY.md, "Session 6".
	defaultRecoverSeqLen  = 256
	defaultTuneSeqLen     = 128
	stepTokens            = 1024 // tokens per step: the default batch is stepTokens / seq-len
	defaultRecoverCE      = 0
	defaultRecoverBudget  = 0.10
	defaultRecoverTargets = "q,k,v,o,gate,up,down"
	defaultRecoverName    = "recover"
	defaultTuneSteps      = 200
	defaultTuneLR         = 5e-3
	defaultQATLR          = 0.0025 // compile --qat's from 3 to 4 bits per weight (qatRecipeFor)
)

type recoverOptions struct {
	Original  string
	Tokenizer string
	Calib     string
	CalibCtx  int
	// SampleTokens > 0 appends that many tokens sampled from the original
	// to the calibration text (sampleText).
	SampleTokens int
	Rank         int
	Steps        int
	LR           float64
	Batch        int
	SeqLen       int
	CEWeight     float64
	Budget       float64
	Targets      string
	Ranks        string
	LoRAInit     string
	Name         string
	Seed         uint64
	Threads      int
	Out          string
	JSON         bool
	TuneLUTs     bool
	TuneSteps    int
	TuneLR       float64
	TuneNorms    bool
	QAT          bool
	QATLR        float64
	QATInit      string
	QATLUTs      string
	QATAdam      string
	QATHyst      float64
	QATFreeze    float64
	QATEMA       float64
	QATWidth     bool
	Joint        bool
	JointCycles  int
}

func newRecoverCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &recoverOptions{}
	c := &cobra.Command{
		Use:   "recover BUNDLE --original MODEL --calib FILE [-o OUT.sqz]",
		Short: "Train LoRA adapters that win back the accuracy a compiled bundle lost, and store them in the bundle",
		Long: `recover distils the original model into LoRA adapters on top of the bundle's frozen palettized
weights: it calibrates the original on --calib text, initialises the adapters from the
importance-weighted compression residual, trains them to match the original's next-token
distributions (KL), keeps the checkpoint with the lowest held-out KL and writes the bundle with the
adapter set added (a set of the same --name is replaced). The rank is the smaller of --rank and the
largest rank whose float16 adapters add at most --adapter-budget x the bundle's size.
Use them with squeeze run/eval --adapter NAME.

--tune-luts first fine-tunes the palettes themselves by the same distillation (zero-byte recovery):
the indices stay frozen, the float16 LUT entries and per-row scales are trained, and the bundle is
rewritten with the tuned palettes (same size; new base checksum, so adapter sets already in it are
dropped). Adapters are then trained on the tuned base unless --rank 0.

--qat (with --tune-luts) is palettization-aware training: the indices are re-assigned too. Latent
float32 weights (started from the bundle's decoded weights, --qat-init) take straight-through
gradient steps of --qat-lr x each tensor's weight RMS, and every index follows the LUT entry nearest
to its latent weight. Bits, group sizes and row scales stay as compiled: the bundle keeps its size.
It holds a few float32 copies of the palettized weights in memory (fine for small models).

--joint is the strongest recipe after compile --qat: the adapters train in the QAT run itself, so
the indices settle around what the adapters correct. It implies --tune-luts --tune-norms --qat and
defaults to 600 steps on --calib plus 200k tokens sampled from --original, on 256-token windows
(stories260K at 3.7 bpw: dev KLD 0.068 -> 0.054 with rank-1 adapters within the 10% budget).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.jointDefaults(c.Flags().Changed)
			return runRecover(o, args, stdout, stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Original, "original", "", "the uncompressed model the bundle was compiled from (required)")
	f.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer file for a llama2.c --original (default: beside it)")
	f.StringVar(&o.Calib, "calib", "", "calibration text to train on (required); its last 10% of windows are held out")
	f.IntVar(&o.SampleTokens, "sample-tokens", 0, "also distil on about this many tokens of text sampled from --original itself (temperature 1, seeded by --seed), appended to --calib: more in-distribution text for long --qat runs (on stories260K, 200k tokens with --tune-steps 600 gave dev KLD 0.097 where calib.txt alone gave 0.108)")
	f.IntVar(&o.CalibCtx, "calib-ctx", 256, "window length for the importance calibration")
	f.IntVar(&o.Rank, "rank", defaultRecoverRank, "maximum adapter rank (the budget may lower it); 0 = no adapters (with --tune-luts)")
	f.IntVar(&o.Steps, "steps", defaultRecoverSteps, "optimizer steps")
	f.Float64Var(&o.LR, "lr", defaultRecoverLR, "peak learning rate (Adam, warmup then cosine decay)")
	f.IntVar(&o.Batch, "batch", 0, "windows per step (0 = 1024 tokens per step: 4 windows of 256, 8 of 128)")
	f.IntVar(&o.SeqLen, "seq-len", 0, "training window length in tokens, at most the model's context (0 = 256 for adapters and --joint, 128 for --tune-luts / --qat alone)")
	f.Float64Var(&o.CEWeight, "ce-weight", defaultRecoverCE, "weight of cross-entropy on the text beside the KL to the original (adapters, and --tune-luts / --qat)")
	f.Float64Var(&o.Budget, "adapter-budget", defaultRecoverBudget, "adapter bytes at most this fraction of the bundle's size (0 = no budget)")
	f.StringVar(&o.Targets, "lora-targets", defaultRecoverTargets, "linears to adapt: q,k,v,o,gate,up,down and/or names like blk.3.ffn_down")
	f.StringVar(&o.Ranks, "lora-ranks", "", "per-target ranks that override --rank, e.g. q=2,o=2,blk.4.ffn_down=3 (a tensor name wins over its kind); their bytes count against --adapter-budget first, and the other targets get the largest rank that still fits")
	f.StringVar(&o.LoRAInit, "lora-init", "residual", "where the adapters start: residual (B*A the importance-weighted best rank-r fit of W - W_palettized) or zero (standard LoRA: A random, B = 0, so training starts from the base's own output; stories260K 3.7 bpw, recover --joint on the compile --qat seed-1 base: dev KLD 0.0549 int8 against 0.0526 with residual)")
	f.StringVar(&o.Name, "name", defaultRecoverName, "adapter set name")
	f.Uint64Var(&o.Seed, "seed", 1, "seed (window order); same inputs and seed give the same adapters")
	f.IntVar(&o.Threads, "threads", 0, "threads (0 = all CPUs)")
	f.StringVarP(&o.Out, "output", "o", "", "output bundle (default: rewrite BUNDLE in place, atomically)")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	f.BoolVar(&o.TuneLUTs, "tune-luts", false, "first fine-tune the palettes (LUT entries and row scales; indices frozen) by distillation")
	f.IntVar(&o.TuneSteps, "tune-steps", defaultTuneSteps, "optimizer steps of --tune-luts")
	f.Float64Var(&o.TuneLR, "tune-lr", defaultTuneLR, "peak step of --tune-luts, relative to each tensor's LUT (or scale) RMS")
	f.BoolVar(&o.TuneNorms, "tune-norms", false, "with --tune-luts, also tune the float32 RMSNorm weights (zero bytes too)")
	f.BoolVar(&o.QAT, "qat", false, "with --tune-luts, also re-assign the indices (palettization-aware training of latent weights; zero bytes too)")
	f.Float64Var(&o.QATLR, "qat-lr", defaultQATLR, "peak step of the --qat latent weights, relative to each tensor's weight RMS (the default is compile --qat's from 3 to 4 bits per weight; it uses 0.007 with --qat-width-steps below 3, 0.005 with 200 steps from 4 up)")
	f.StringVar(&o.QATInit, "qat-init", "palettized", "where the --qat latent weights start: palettized, original, or blend:F (Wq + F x (W - Wq))")
	f.StringVar(&o.QATAdam, "qat-adam", "element", "--qat latent step normalisation: element (plain Adam) or tensor (per-tensor second moment: larger gradients move first)")
	f.Float64Var(&o.QATFreeze, "qat-freeze", 0, "--qat: freeze the indices for this last fraction of the steps (LUTs, scales and norms keep training on a fixed assignment), in [0, 1); stories260K 3.7 bpw, 600 steps + 200k sampled tokens: 0.25 gave dev KLD 0.109 against 0.0996 without, so it is off by default")
	f.Float64Var(&o.QATEMA, "qat-ema", qatEMA, "--qat: also keep a moving average (this decay, in [0, 1)) of the palettes and latent weights and return it when its held-out KL is lower; 0 = off")
	f.BoolVar(&o.Joint, "joint", false, "train the adapters in a QAT run of the palettes (one run, --lr for the adapters, the rank as the budget allows) instead of after it on a frozen base; implies --tune-luts --tune-norms --qat and, unless given, --joint-cycles 2 --tune-steps 600 --sample-tokens 200000 --lr 0.005 (the best recipe after compile --qat on stories260K)")
	f.IntVar(&o.JointCycles, "joint-cycles", 1, "--joint: run the joint recipe this many times in a row, each cycle on the previous one's palettes with adapters initialised afresh from their residual and a new learning-rate schedule (as running recover --joint again on its output, without re-sampling the text); --joint makes it 2 unless given (stories260K 3.7 bpw, three compile seeds: dev KLD 0.0514-0.0519 against 0.0534-0.0541 with 1; two cycles of 300 steps gave 0.0558 int8, worse than one of 600)")
	f.BoolVar(&o.QATWidth, "qat-width-steps", false, "--qat: scale each n-bit tensor's (or part's) latent step by 2^(3-n), about its LUT's entry gap (--qat-lr is then the 3-bit step)")
	f.Float64Var(&o.QATHyst, "qat-hysteresis", 0, "--qat: an index moves only when its latent weight is nearer the new entry by more than this fraction of the gap (0..1)")
	f.StringVar(&o.QATLUTs, "qat-luts", "gradient", "how --qat LUT entries follow the indices: gradient (trained) or centroids (cluster means of the latent weights)")
	return c
}

// recoverConfig configures recoverAdapters. Zero values take the command's
// defaults.
type recoverConfig struct {
	Rank     int      // maximum rank
	Steps    int      // optimizer steps
	LR       float64  // peak learning rate
	Batch    int      // windows per step
	SeqLen   int      // training window length
	CEWeight float64  // cross-entropy weight beside the KL
	Budget   float64  // adapter bytes <= Budget x BundleBytes; 0 = no budget
	Targets  []string // short kinds (q,k,v,o,gate,up,down), ir kinds or tensor names; nil = all
	// Ranks fixes the rank of some targets (keys as Targets, already
	// mapped to ir kinds or tensor names); the rest get Rank, lowered to
	// what the budget leaves.
	Ranks    map[string]int
	Init     lorarecovery.InitMode // residual (the default) or zero
	Name     string                // adapter set name
	Seed     uint64
	Threads  int
	CalibCtx int // importance calibration window
	// CalibTokens caps the tokens the importance calibration runs over
	// (per-channel mean squares settle long before the whole text; the
	// runtime's prefill dominates set-up time) [16384; < 0: all].
	CalibTokens int
	// Importance, when set (e.g. by compile, which has just calibrated),
	// is used instead of calibrating again.
	Importance map[string][]float32
	// BundleBytes is the base bundle's size for the budget; 0 = estimate
	// from the base tensors' bytes (data, LUTs, scales).
	BundleBytes int64
	// Log receives the rank choice and, when it is a terminal, a progress
	// line; nil = silent.
	Log io.Writer
}

func (c *recoverConfig) defaults() {
	if c.Rank == 0 {
		c.Rank = defaultRecoverRank
	}
	if c.Steps == 0 {
		c.Steps = defaultRecoverSteps
	}
	if c.LR == 0 {
		c.LR = defaultRecoverLR
	}
	if c.SeqLen == 0 {
		c.SeqLen = defaultRecoverSeqLen
	}
	if c.Name == "" {
		c.Name = defaultRecoverName
	}
	if c.CalibCtx == 0 {
		c.CalibCtx = 256
	}
	if c.CalibTokens == 0 {
		c.CalibTokens = 16384
	}
	if c.Threads <= 0 {
		c.Threads = goruntime.NumCPU()
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// shortKinds are the short linear names --lora-targets and --lora-ranks
// accept beside ir kinds and tensor names.
var shortKinds = map[string]string{"q": ir.AttnQ, "k": ir.AttnK, "v": ir.AttnV, "o": ir.AttnOut,
	"gate": ir.FFNGate, "up": ir.FFNUp, "down": ir.FFNDown}

// parseRanks maps --lora-ranks ("q=2,blk.4.ffn_down=3") to per-target
// ranks keyed by lora_recovery target names; nil for "".
func parseRanks(s string) (map[string]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]int{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, rs, ok := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		r, err := strconv.Atoi(strings.TrimSpace(rs))
		if !ok || err != nil || r < 1 || name == "" {
			return nil, fmt.Errorf("--lora-ranks %q: %q is not TARGET=RANK with a rank >= 1 (e.g. q=2 or blk.4.ffn_down=3)", s, p)
		}
		if k, ok := shortKinds[name]; ok {
			name = k
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--lora-ranks %q: %s is given twice", s, name)
		}
		out[name] = r
	}
	return out, nil
}

// parseTargets maps --lora-targets to lora_recovery target names.
func parseTargets(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if k, ok := shortKinds[p]; ok {
			p = k
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--lora-targets %q: no targets (expected e.g. q,k,v,o,gate,up,down)", s)
	}
	return out, nil
}

// baseBytes estimates a model's stored size from its tensors (data, LUTs
// and scales), for the adapter budget when the bundle size is not known.
func baseBytes(m *ir.Model) int64 {
	var n int64
	for _, t := range m.Tensors {
		n += t.Bytes()
	}
	return n
}

// palettizedWeights counts the weights of m's palettized tensors.
func palettizedWeights(m *ir.Model) int64 {
	var n int64
	for _, t := range m.Tensors {
		if t.IsPalettized() {
			n += int64(t.Elems())
		}
	}
	return n
}

// adapterPrep is what adapter training needs besides its options: the
// rank (the --rank cap lowered to the budget), the original's per-channel
// importance, and the calibration tokens without their BOS.
type adapterPrep struct {
	Rank       int
	Importance map[string][]float32
	Tokens     []int
	BOS        int
}

// adapterSetup checks that orig is the model base was compiled from,
// chooses the rank and calibrates the importance (cfg with its defaults
// applied). Sequential (recoverAdapters) and joint (recover --joint)
// training share it.
func adapterSetup(orig, base *ir.Model, calibText []byte, cfg recoverConfig) (adapterPrep, error) {
	var ap adapterPrep
	if orig.Tokenizer == nil {
		return ap, fmt.Errorf("recover: %s: no tokenizer to read the calibration text with", orig.Source)
	}
	if err := sameShape(orig, base); err != nil {
		return ap, fmt.Errorf("recover: %w", err)
	}
	// Rank: the --rank cap, lowered to the budget.
	rank := cfg.Rank
	if cfg.Budget > 0 {
		bb := cfg.BundleBytes
		if bb <= 0 {
			bb = baseBytes(base)
		}
		budget := int64(cfg.Budget * float64(bb))
		// The set's manifest entries and padding count too: the budget is
		// on what the file gains, not only on the matrices.
		names, err := lorarecovery.TargetNames(base.Config, cfg.Targets)
		if err != nil {
			return ap, fmt.Errorf("recover: %w", err)
		}
		ins, outs := make([]int, len(names)), make([]int, len(names))
		for i, n := range names {
			t, err := base.Tensor(n)
			if err != nil {
				return ap, fmt.Errorf("recover: %w", err)
			}
			ins[i], outs[i] = t.Cols(), t.Rows()
		}
		overhead := func(r int) int64 {
			rs := make([]int, len(names))
			for i, n := range names {
				rs[i] = r
				if g, _, ok := lorarecovery.GivenRank(cfg.Ranks, n); ok {
					rs[i] = g
				}
			}
			return bundle.AdapterSetOverhead(cfg.Name, names, ins, outs, rs, bb)
		}
		br, err := lorarecovery.RankForBudget(base, cfg.Targets, cfg.Ranks, budget, 1<<30, overhead)
		over := overhead(max(br, 1))
		if err != nil {
			return ap, fmt.Errorf("recover: --adapter-budget %g of %s = %s, with %s of manifest and padding for %d adapters: %w (adapt fewer linears with --lora-targets, or raise --adapter-budget)",
				cfg.Budget, reports.Bytes(bb), reports.Bytes(budget), reports.Bytes(over), len(names), err)
		}
		allGiven := true
		for _, n := range names {
			if _, _, ok := lorarecovery.GivenRank(cfg.Ranks, n); !ok {
				allGiven = false
			}
		}
		if allGiven {
			fmt.Fprintf(cfg.Log, "recover: every target has its --lora-ranks rank; with %s of manifest they fit %g x %s = %s\n",
				reports.Bytes(over), cfg.Budget, reports.Bytes(bb), reports.Bytes(budget))
		} else if br < rank {
			fmt.Fprintf(cfg.Log, "recover: rank %d: the largest whose float16 adapters and %s of manifest fit %g x %s = %s (--rank %d)\n",
				br, reports.Bytes(over), cfg.Budget, reports.Bytes(bb), reports.Bytes(budget), cfg.Rank)
			rank = br
		} else {
			fmt.Fprintf(cfg.Log, "recover: rank %d: the --rank cap (the budget of %s would allow rank %d)\n", rank, reports.Bytes(budget), br)
		}
	} else {
		fmt.Fprintf(cfg.Log, "recover: rank %d (--rank; no adapter budget)\n", rank)
	}
	// Importance from the original, as compile uses it.
	tok := orig.Tokenizer
	stream := tok.Encode(string(calibText), true)
	if len(stream) < 2 {
		return ap, fmt.Errorf("recover: the calibration text tokenizes to %d tokens, nothing to train on", len(stream)-1)
	}
	bos := max(tok.BOS, 0)
	imp := cfg.Importance
	if imp == nil {
		cs := stream
		if cfg.CalibTokens > 0 && len(cs) > cfg.CalibTokens {
			cs = cs[:cfg.CalibTokens]
		}
		cal, err := palettize.Calibrate(orig, cs, bos, min(cfg.CalibCtx, orig.Config.SeqLen), cfg.Threads, nil)
		if err != nil {
			return ap, fmt.Errorf("recover: %w", err)
		}
		imp = cal.Importance
	}
	// The trainer puts BOS first in each window itself.
	tokens := stream
	if tok.BOS >= 0 && len(tokens) > 0 && tokens[0] == tok.BOS {
		tokens = tokens[1:]
	}
	ap.Rank, ap.Importance, ap.Tokens, ap.BOS = rank, imp, tokens, bos
	return ap, nil
}

// trainWindows caps the training window length at the model's context
// ctx and, when batch is 0, takes the batch that makes stepTokens tokens
// per step at that length.
func trainWindows(seqLen, batch, ctx int) (int, int) {
	seqLen = min(seqLen, ctx)
	if batch == 0 {
		batch = max(1, stepTokens/seqLen)
	}
	return seqLen, batch
}

// ranksNote describes --lora-ranks overrides for the summary table.
func ranksNote(ranks map[string]int) string {
	if len(ranks) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ranks)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, ranks[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// recoverAdapters trains an adapter set on base (the palettized model,
// frozen) that distils orig on calibText. The set's BaseSHA256 is base's
// (Meta["base_sha256"], set by the bundle loader), so bundle.Write accepts
// it only on that base. Compile --recover calls this on the model it has
// just palettized.
func recoverAdapters(orig, base *ir.Model, calibText []byte, cfg recoverConfig) (*ir.AdapterSet, lorarecovery.Report, error) {
	var rep lorarecovery.Report
	cfg.defaults()
	ap, err := adapterSetup(orig, base, calibText, cfg)
	if err != nil {
		return nil, rep, err
	}
	rank, imp, tokens, bos := ap.Rank, ap.Importance, ap.Tokens, ap.BOS
	progress := func(int, float64, float64) {}
	if f, ok := cfg.Log.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		var last time.Time
		progress = func(step int, loss, kl float64) {
			if now := time.Now(); now.Sub(last) > 100*time.Millisecond || step == cfg.Steps {
				last = now
				fmt.Fprintf(f, "\rrecover: step %d/%d  loss %.4f  held-out KL %.4f ", step, cfg.Steps, loss, kl)
			}
		}
	}
	seqLen, batch := trainWindows(cfg.SeqLen, cfg.Batch, orig.Config.SeqLen)
	set, rep, err := lorarecovery.Train(orig, base, tokens, lorarecovery.Options{
		Rank: rank, Ranks: cfg.Ranks, Targets: cfg.Targets, Init: cfg.Init, Importance: imp,
		Steps: cfg.Steps, LR: cfg.LR, Batch: batch, SeqLen: seqLen, CEWeight: cfg.CEWeight,
		BOS: bos, Seed: cfg.Seed, Threads: cfg.Threads, Name: cfg.Name, Progress: progress,
	})
	if f, ok := cfg.Log.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		fmt.Fprintln(f)
	}
	if err != nil {
		return nil, rep, fmt.Errorf("recover: %w", err)
	}
	set.BaseSHA256 = base.Meta["base_sha256"]
	return set, rep, nil
}

// calibStream tokenizes the calibration text with orig's tokenizer for the
// trainers: the stream without a leading BOS (the trainers put BOS first in
// each window themselves) and the BOS id.
func calibStream(orig *ir.Model, calibText []byte) ([]int, int, error) {
	if orig.Tokenizer == nil {
		return nil, 0, fmt.Errorf("recover: %s: no tokenizer to read the calibration text with", orig.Source)
	}
	tok := orig.Tokenizer
	stream := tok.Encode(string(calibText), true)
	if len(stream) < 2 {
		return nil, 0, fmt.Errorf("recover: the calibration text tokenizes to %d tokens, nothing to train on", len(stream)-1)
	}
	if tok.BOS >= 0 && stream[0] == tok.BOS {
		stream = stream[1:]
	}
	return stream, max(tok.BOS, 0), nil
}

// tuneConfig configures tuneBase. Zero values take the command's defaults.
type tuneConfig struct {
	Steps   int
	LR      float64
	Batch   int
	SeqLen  int
	Seed    uint64
	Threads int
	Norms   bool                        // also tune the RMSNorm weights
	QAT     *lorarecovery.QATOptions    // also re-assign the indices; nil = frozen
	Joint   *lorarecovery.JointAdapters // with QAT: train these adapters in the same run; nil = none
	CE      float64                     // cross-entropy weight beside the KL (recover --ce-weight)
	Log     io.Writer                   // progress line when a terminal; nil = silent
}

// tuneBase fine-tunes base's palettes (LUT entries and row scales, indices
// frozen) by distillation from orig on calibText. The returned model shares
// base's index data, has no adapter sets and no base checksum (bundle.Write
// computes the new one).
func tuneBase(orig, base *ir.Model, calibText []byte, cfg tuneConfig) (*ir.Model, lorarecovery.TuneReport, error) {
	var rep lorarecovery.TuneReport
	if cfg.Steps == 0 {
		cfg.Steps = defaultTuneSteps
	}
	if cfg.LR == 0 {
		cfg.LR = defaultTuneLR
	}
	if cfg.SeqLen == 0 {
		cfg.SeqLen = defaultTuneSeqLen
		if cfg.Joint != nil {
			cfg.SeqLen = defaultRecoverSeqLen
		}
	}
	if cfg.Threads <= 0 {
		cfg.Threads = goruntime.NumCPU()
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	tokens, bos, err := calibStream(orig, calibText)
	if err != nil {
		return nil, rep, err
	}
	progress := func(int, float64, float64) {}
	f, tty := cfg.Log.(*os.File)
	tty = tty && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
	if tty {
		var last time.Time
		progress = func(step int, loss, kl float64) {
			if now := time.Now(); now.Sub(last) > 100*time.Millisecond || step == cfg.Steps {
				last = now
				fmt.Fprintf(f, "\rtune-luts: step %d/%d  loss %.4f  held-out KL %.4f ", step, cfg.Steps, loss, kl)
			}
		}
	}
	seqLen, batch := trainWindows(cfg.SeqLen, cfg.Batch, base.Config.SeqLen)
	tuned, rep, err := lorarecovery.TuneLUTs(orig, base, tokens, lorarecovery.TuneOptions{
		Steps: cfg.Steps, LR: cfg.LR, Batch: batch, SeqLen: seqLen,
		BOS: bos, Seed: cfg.Seed, Threads: cfg.Threads, Norms: cfg.Norms, QAT: cfg.QAT, Adapters: cfg.Joint, CEWeight: cfg.CE, Progress: progress,
	})
	if tty {
		fmt.Fprintln(f)
	}
	if err != nil {
		return nil, rep, fmt.Errorf("recover: --tune-luts: %w", err)
	}
	return tuned, rep, nil
}

// recoverResult is the --json output of recover.
type recoverResult struct {
	Path            string         `json:"path"`
	Name            string         `json:"name"`
	Rank            int            `json:"rank"`
	Ranks           map[string]int `json:"ranks,omitempty"` // --lora-ranks: the targets given their own rank
	Targets         int            `json:"targets"`
	Steps           int            `json:"steps"`
	AdapterBytes    int64          `json:"adapter_bytes"`
	AdapterBPW      float64        `json:"adapter_bpw"` // adapter bits per palettized weight
	BundleBytes     int64          `json:"bundle_bytes"`
	BaseBytes       int64          `json:"base_bytes"`               // the bundle without adapter sets
	SampledTokens   int            `json:"sampled_tokens,omitempty"` // --sample-tokens
	SampleSeconds   float64        `json:"sample_seconds,omitempty"`
	AddedBytes      int64          `json:"added_bytes"` // file growth: adapters, alignment and manifest entries
	HeldOutKLBefore float64        `json:"heldout_kl_before"`
	HeldOutKLInit   float64        `json:"heldout_kl_init"`
	HeldOutKLAfter  float64        `json:"heldout_kl_after"`
	// CycleHeldOutKL is each --joint-cycles cycle's best held-out KL.
	CycleHeldOutKL []float64 `json:"cycle_heldout_kl,omitempty"`
	BestStep       int       `json:"best_step"`
	TrainTokens    int64     `json:"train_tokens"`
	Seconds        float64   `json:"seconds"`
	BaseSHA256     string    `json:"base_sha256"`
	// Tune reports --tune-luts (nil without it). With --rank 0 the adapter
	// fields above are zero.
	Tune *tuneResult `json:"tune_luts,omitempty"`
	// DroppedSets are the adapter sets the bundle had that were trained on
	// the palettes --tune-luts replaced.
	DroppedSets []string `json:"dropped_adapter_sets,omitempty"`
}

// tuneResult is the --tune-luts part of recoverResult.
type tuneResult struct {
	Steps           int     `json:"steps"`
	LR              float64 `json:"lr"`
	Tensors         int     `json:"tensors"`
	LUTEntries      int     `json:"lut_entries"`
	Scales          int     `json:"scales"`
	NormWeights     int     `json:"norm_weights"`
	HeldOutKLBefore float64 `json:"heldout_kl_before"`
	HeldOutKLAfter  float64 `json:"heldout_kl_after"`
	BestStep        int     `json:"best_step"`
	TrainTokens     int64   `json:"train_tokens"`
	Seconds         float64 `json:"seconds"`
	// QAT reports --qat (nil without it).
	QAT *lorarecovery.QATReport `json:"qat,omitempty"`
}

// parseQAT maps --qat-lr, --qat-init and --qat-luts to QAT options.
func parseQAT(o *recoverOptions) (*lorarecovery.QATOptions, error) {
	q := &lorarecovery.QATOptions{LR: o.QATLR, Hysteresis: o.QATHyst, FreezeFrac: o.QATFreeze, EMA: o.QATEMA, WidthSteps: o.QATWidth}
	if !(o.QATLR > 0) {
		return nil, fmt.Errorf("--qat-lr %g: expected > 0", o.QATLR)
	}
	switch init := o.QATInit; init {
	case "palettized":
		q.Init = lorarecovery.QATInitPalettized
	case "original":
		q.Init = lorarecovery.QATInitOriginal
	default:
		frac, blend := strings.CutPrefix(init, "blend:")
		f, err := strconv.ParseFloat(frac, 64)
		if !blend || err != nil || !(f >= 0 && f <= 1) {
			return nil, fmt.Errorf("--qat-init %q: expected palettized, original or blend:F with F in [0, 1]", init)
		}
		q.Init, q.Blend = lorarecovery.QATInitBlend, f
	}
	switch o.QATAdam {
	case "element":
	case "tensor":
		q.TensorAdam = true
	default:
		return nil, fmt.Errorf("--qat-adam %q: expected tensor or element", o.QATAdam)
	}
	switch o.QATLUTs {
	case "gradient":
		q.LUTs = lorarecovery.QATGradient
	case "centroids":
		q.LUTs = lorarecovery.QATCentroids
	default:
		return nil, fmt.Errorf("--qat-luts %q: expected gradient or centroids", o.QATLUTs)
	}
	return q, nil
}

// Defaults of recover --joint, the flags it sets unless given: the best
// recipe measured on stories260K at 3.7 bpw after compile --qat (dev KLD
// 0.0519 / 0.0514 / 0.0514 on three compile seeds with rank-1 adapters on
// every linear and two cycles, against 0.0541 / 0.0540 / 0.0534 with one;
// docs/QUALITY.md, session 12).
const (
	jointTuneSteps    = 600
	jointSampleTokens = 200000
	jointLR           = 0.005
	jointCycles       = 2
)

// jointDefaults makes --joint a recipe: it implies --tune-luts --tune-norms
// --qat and, for flags not given (changed reports which were), two cycles
// of 600 steps, 200k sampled tokens and adapter lr 0.005.
func (o *recoverOptions) jointDefaults(changed func(string) bool) {
	if !o.Joint {
		return
	}
	set := func(name string, apply func()) {
		if !changed(name) {
			apply()
		}
	}
	set("tune-luts", func() { o.TuneLUTs = true })
	set("tune-norms", func() { o.TuneNorms = true })
	set("qat", func() { o.QAT = true })
	set("tune-steps", func() { o.TuneSteps = jointTuneSteps })
	set("sample-tokens", func() { o.SampleTokens = jointSampleTokens })
	set("lr", func() { o.LR = jointLR })
	set("joint-cycles", func() { o.JointCycles = jointCycles })
}

func runRecover(o *recoverOptions, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	if o.Original == "" {
		return fmt.Errorf("--original MODEL is required (the model the bundle was compiled from)")
	}
	if o.Calib == "" {
		return fmt.Errorf("--calib FILE is required")
	}
	if o.Rank == 0 && !o.TuneLUTs {
		return fmt.Errorf("--rank 0 trains no adapters: nothing to do without --tune-luts")
	}
	if o.TuneLUTs && (o.TuneSteps < 1 || !(o.TuneLR > 0)) {
		return fmt.Errorf("--tune-steps %d, --tune-lr %g: expected steps >= 1 and lr > 0", o.TuneSteps, o.TuneLR)
	}
	if o.Joint && (!o.QAT || o.Rank == 0) {
		return fmt.Errorf("--joint trains the adapters in the QAT run: it needs --tune-luts --qat and --rank > 0")
	}
	if o.JointCycles < 1 || (o.JointCycles > 1 && !o.Joint) {
		return fmt.Errorf("--joint-cycles %d: expected >= 1, and more than 1 only with --joint", o.JointCycles)
	}
	var qat *lorarecovery.QATOptions
	if o.QAT {
		if !o.TuneLUTs {
			return fmt.Errorf("--qat re-assigns indices while tuning the palettes: it needs --tune-luts")
		}
		var err error
		if qat, err = parseQAT(o); err != nil {
			return err
		}
	}
	if o.Rank < 0 || o.Steps < 1 || !(o.LR > 0) || o.Batch < 0 || o.SeqLen < 0 || o.SeqLen == 1 || o.CEWeight < 0 || o.Budget < 0 {
		return fmt.Errorf("--rank %d, --steps %d, --lr %g, --batch %d, --seq-len %d, --ce-weight %g, --adapter-budget %g: expected rank >= 0, steps >= 1, batch >= 0, lr > 0, seq-len 0 or >= 2, ce-weight and budget >= 0",
			o.Rank, o.Steps, o.LR, o.Batch, o.SeqLen, o.CEWeight, o.Budget)
	}
	if o.SampleTokens < 0 {
		return fmt.Errorf("--sample-tokens %d: expected >= 0", o.SampleTokens)
	}
	if o.Name == "" || o.Name == "none" || strings.ContainsAny(o.Name, "/\\ ") {
		return fmt.Errorf("--name %q: expected a non-empty name without spaces or slashes, other than \"none\"", o.Name)
	}
	targets, err := parseTargets(o.Targets)
	if err != nil {
		return err
	}
	ranks, err := parseRanks(o.Ranks)
	if err != nil {
		return err
	}
	var linit lorarecovery.InitMode
	switch o.LoRAInit {
	case "residual":
		linit = lorarecovery.InitResidual
	case "zero":
		linit = lorarecovery.InitZero
	default:
		return fmt.Errorf("--lora-init %q: expected residual or zero", o.LoRAInit)
	}
	if ranks != nil && o.Rank == 0 {
		return fmt.Errorf("--lora-ranks with --rank 0: no adapters are trained")
	}
	text, err := os.ReadFile(o.Calib)
	if err != nil {
		return fmt.Errorf("--calib: %w", err)
	}
	path := args[0]
	out := o.Out
	if out == "" {
		out = path
	}
	if err := checkOutDir("-o", out); err != nil {
		return err
	}
	base, man, err := bundle.Load(path, bundle.Options{Verify: true})
	if err != nil {
		return err
	}
	defer base.Close()
	orig, err := formats.Load(o.Original, formats.LoadOptions{Tokenizer: o.Tokenizer})
	if err != nil {
		return fmt.Errorf("--original: %w", err)
	}
	defer orig.Close()
	if orig.Format == "bundle" {
		return fmt.Errorf("--original %s is a compiled bundle; give the uncompressed model", o.Original)
	}
	if orig.Tokenizer == nil {
		orig.Tokenizer = base.Tokenizer
	}
	var res recoverResult
	if o.SampleTokens > 0 {
		t0 := time.Now()
		gen, n, err := sampleText(orig, o.SampleTokens, o.Seed, o.Threads)
		if err != nil {
			return err
		}
		text = append(append(text, '\n'), gen...)
		res.SampledTokens, res.SampleSeconds = n, time.Since(t0).Seconds()
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	// The budget is relative to the bundle without the set being replaced
	// or any other adapter set (their matrices, manifest entries and
	// padding).
	bb, err := man.BaseBytes()
	if err != nil {
		return err
	}
	res.BaseBytes = bb
	model := base
	acfg := recoverConfig{Rank: o.Rank, Steps: o.Steps, LR: o.LR, Batch: o.Batch,
		SeqLen: o.SeqLen, CEWeight: o.CEWeight, Budget: o.Budget, Targets: targets, Ranks: ranks, Init: linit, Name: o.Name, Seed: o.Seed,
		Threads: o.Threads, CalibCtx: o.CalibCtx, BundleBytes: bb, Log: stderr}
	if o.Joint {
		acfg.defaults()
	}
	var set *ir.AdapterSet
	if o.TuneLUTs {
		t0 := time.Now()
		cycles := 1
		if o.Joint {
			cycles = o.JointCycles
		}
		var (
			trep      lorarecovery.TuneReport
			before    float64 // the held-out KL of the bundle as given
			trainToks int64
		)
		for c := 0; c < cycles; c++ {
			// each cycle starts from the previous one's palettes, with
			// adapters initialised from the residual against them
			var joint *lorarecovery.JointAdapters
			if o.Joint {
				ap, err := adapterSetup(orig, model, text, acfg)
				if err != nil {
					return err
				}
				joint = &lorarecovery.JointAdapters{Rank: ap.Rank, Ranks: ranks, Targets: targets, Init: linit, Importance: ap.Importance, LR: acfg.LR, Name: acfg.Name}
			}
			if cycles > 1 {
				fmt.Fprintf(stderr, "recover: joint cycle %d of %d\n", c+1, cycles)
			}
			tuned, r, err := tuneBase(orig, model, text, tuneConfig{Steps: o.TuneSteps, LR: o.TuneLR, Batch: o.Batch,
				SeqLen: o.SeqLen, Seed: o.Seed, Threads: o.Threads, Norms: o.TuneNorms, QAT: qat, Joint: joint, CE: o.CEWeight, Log: stderr})
			if err != nil {
				return err
			}
			if cycles > 1 {
				res.CycleHeldOutKL = append(res.CycleHeldOutKL, r.BestHeldOutKL)
			}
			if c == 0 {
				before = r.BaseHeldOutKL
			}
			trainToks += r.TrainTokens
			model, trep = tuned, r
		}
		trep.BaseHeldOutKL, trep.TrainTokens = before, trainToks
		if set = trep.AdapterSet; set != nil {
			res.Rank, res.Targets, res.Steps = trep.AdapterRank, len(set.Adapters), trep.Steps
			res.HeldOutKLBefore, res.HeldOutKLAfter = trep.BaseHeldOutKL, trep.BestHeldOutKL
			if trep.QAT != nil { // joint implies --qat: its first evaluation has the initial adapters
				res.HeldOutKLInit = trep.QAT.InitHeldOutKL
			}
			res.BestStep, res.TrainTokens = trep.BestStep, trep.TrainTokens
		}
		for _, s := range base.AdapterSets {
			res.DroppedSets = append(res.DroppedSets, s.Name)
		}
		if len(res.DroppedSets) > 0 {
			fmt.Fprintf(stderr, "recover: dropping adapter sets %s: they were trained on the palettes --tune-luts replaced\n",
				strings.Join(res.DroppedSets, ", "))
		}
		res.Tune = &tuneResult{Steps: trep.Steps, LR: o.TuneLR, Tensors: trep.Tensors, LUTEntries: trep.LUTEntries,
			Scales: trep.Scales, NormWeights: trep.NormWeights, HeldOutKLBefore: trep.BaseHeldOutKL, HeldOutKLAfter: trep.BestHeldOutKL,
			BestStep: trep.BestStep, TrainTokens: trep.TrainTokens, Seconds: time.Since(t0).Seconds(), QAT: trep.QAT}
	}
	if o.Rank > 0 && !o.Joint {
		var rep lorarecovery.Report
		set, rep, err = recoverAdapters(orig, model, text, acfg)
		if err != nil {
			return err
		}
		res.Rank, res.Targets, res.Steps = rep.Rank, rep.Targets, rep.Steps
		res.HeldOutKLBefore, res.HeldOutKLInit, res.HeldOutKLAfter = rep.BaseHeldOutKL, rep.InitHeldOutKL, rep.BestHeldOutKL
		res.BestStep, res.TrainTokens = rep.BestStep, rep.TrainTokens
	}
	if set != nil { // joint or sequential
		res.Name, res.AdapterBytes, res.Ranks = set.Name, set.Bytes(), ranks
		res.AdapterBPW = 8 * float64(set.Bytes()) / float64(palettizedWeights(base))
	}
	info, err := writeWithAdapterSet(out, model, man, set)
	if err != nil {
		return err
	}
	res.Path, res.BundleBytes, res.AddedBytes = info.Path, info.Bytes, info.Bytes-st.Size()
	res.Seconds, res.BaseSHA256 = time.Since(start).Seconds(), info.BaseSHA256
	if o.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(res)
	}
	var rows [][]string
	if tr := res.Tune; tr != nil {
		rows = append(rows,
			[]string{"palettes tuned", fmt.Sprintf("%d tensors: %d LUT entries, %d row scales, %d norm weights (%s, no bytes added)",
				tr.Tensors, tr.LUTEntries, tr.Scales, tr.NormWeights, map[bool]string{false: "indices unchanged", true: "indices re-assigned"}[tr.QAT != nil])},
			[]string{"held-out KL(original || bundle)", fmt.Sprintf("%.5f as compiled, %.5f with tuned palettes (step %d of %d, %.1fs)",
				tr.HeldOutKLBefore, tr.HeldOutKLAfter, tr.BestStep, tr.Steps, tr.Seconds)})
		if q := tr.QAT; q != nil {
			rows = append(rows, []string{"indices re-assigned (--qat)", fmt.Sprintf("%d of %d changed (%.1f%%; %d flips during training)",
				q.IndicesChanged, q.Weights, 100*float64(q.IndicesChanged)/float64(max(q.Weights, 1)), q.Flips)})
		}
	}
	if n := len(res.CycleHeldOutKL); n > 1 {
		kls := make([]string, n)
		for i, v := range res.CycleHeldOutKL {
			kls[i] = fmt.Sprintf("%.5f", v)
		}
		rows = append(rows, []string{"joint cycles", fmt.Sprintf("%d, best held-out KL after each: %s (step counts and the \"initialised\" figure below are the last cycle's)", n, strings.Join(kls, ", "))})
	}
	if set != nil {
		rows = append(rows,
			[]string{"adapter set", fmt.Sprintf("%s: rank %d on %d linears%s", res.Name, res.Rank, res.Targets, ranksNote(res.Ranks))},
			[]string{"adapter size", fmt.Sprintf("%s (%.1f%% of the base bundle, %.3f bits per palettized weight)",
				reports.Bytes(res.AdapterBytes), 100*float64(res.AdapterBytes)/float64(bb), res.AdapterBPW)},
			[]string{"held-out KL(original || bundle)", fmt.Sprintf("%.5f without adapters, %.5f initialised, %.5f trained (step %d of %d)",
				res.HeldOutKLBefore, res.HeldOutKLInit, res.HeldOutKLAfter, res.BestStep, res.Steps)})
	}
	rows = append(rows, []string{"total", fmt.Sprintf("%d adapter training tokens, %.1fs", res.TrainTokens, res.Seconds)})
	if err := reports.Table(stdout, []string{"recover", "value"}, rows, nil); err != nil {
		return err
	}
	if set != nil {
		fmt.Fprintf(stdout, "\nwrote %s (%s); use it with --adapter %s\n", info.Path, reports.Bytes(info.Bytes), res.Name)
	} else {
		fmt.Fprintf(stdout, "\nwrote %s (%s)\n", info.Path, reports.Bytes(info.Bytes))
	}
	return nil
}

// writeWithAdapterSet writes base (a loaded bundle, or one with tuned
// palettes) to path with set added (nil: none), replacing a set of the same
// name, keeping the manifest's plan, calibration summary, source and
// metadata.
func writeWithAdapterSet(path string, base *ir.Model, man *bundle.Manifest, set *ir.AdapterSet) (bundle.Info, error) {
	m := *base
	m.AdapterSets = nil
	for _, s := range base.AdapterSets {
		if set == nil || s.Name != set.Name {
			m.AdapterSets = append(m.AdapterSets, s)
		}
	}
	if set != nil {
		m.AdapterSets = append(m.AdapterSets, set)
	}
	ex := bundle.Extra{SqueezeVersion: man.SqueezeVersion, Source: man.Source, Meta: man.Extra}
	if len(man.Plan) > 0 {
		ex.Plan = man.Plan
	}
	if len(man.Calibration) > 0 {
		ex.Calibration = man.Calibration
	}
	return bundle.Write(path, &m, ex)
}

// selectAdapter applies m's adapter set called name to rt: "" and "none"
// run the base alone. A set trained on another base (its base checksum is
// not the bundle's) or whose shapes do not fit is refused.
func selectAdapter(m *ir.Model, rt *runtime.Model, name string) error {
	if name == "" || name == "none" {
		return rt.SetAdapters(nil)
	}
	var names []string
	for _, s := range m.AdapterSets {
		if s.Name != name {
			names = append(names, s.Name)
			continue
		}
		want := m.Meta["base_sha256"]
		switch {
		case want == "":
			return fmt.Errorf("--adapter %s: %s records no base checksum, so the set cannot be checked against its weights", name, m.Source)
		case s.BaseSHA256 != want:
			return fmt.Errorf("--adapter %s: the set was trained on base %s, but %s's base weights are %s; recover it again on this bundle",
				name, short(s.BaseSHA256), m.Source, short(want))
		}
		if err := rt.SetAdapters(s); err != nil {
			return fmt.Errorf("--adapter %s: %w", name, err)
		}
		return nil
	}
	if len(names) == 0 {
		return fmt.Errorf("--adapter %s: %s has no adapter sets (add one with squeeze recover)", name, m.Source)
	}
	return fmt.Errorf("--adapter %s: %s has no adapter set of that name; available: %s (or none)", name, m.Source, strings.Join(names, ", "))
}

// short abbreviates a checksum for messages.
func short(h string) string {
	if h == "" {
		return "(none recorded)"
	}
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
