package talaria

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/squeeze-ml/squeeze/ir"
	sqzrt "github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// MeasureSchema is the value of the "schema" field of a measured result.
const MeasureSchema = "squeeze.talaria.measure/v1"

// MeasureThresholdUs is the smallest measured op time (µs) the summary's
// error statistic counts: below it timer resolution, scheduling jitter and
// the per-op overhead dominate, and those ops are a small share of a step.
const MeasureThresholdUs = 50

// MeasureOptions are the inputs of Measure.
type MeasureOptions struct {
	Model *ir.Model // the model the runtime runs (weights as stored)
	Label string    // report label (default Model.Source)
	// Device must be a host profile calibrated on this machine.
	Device *Device
	// Plan is what the prediction assumes; the zero Plan means the model's
	// own encodings (PlanFromModel), which is what the runtime runs.
	Plan *Plan
	// PrefillTokens is N: the prompt that fills the cache first (timed once,
	// per op). Default 128.
	PrefillTokens int
	// Warmup decode steps run untimed after the prefill (default 2);
	// Steps decode steps are then timed (default 16). Per-op figures are
	// medians over the timed steps.
	Warmup, Steps int
	// Threads for the runtime (default: the threads the device was
	// calibrated with, so the probes and the runtime split work alike).
	Threads int
	// Seed chooses the prompt tokens.
	Seed uint64
}

// OpMeasure is one op, measured beside predicted.
type OpMeasure struct {
	Name        string  `json:"name"`
	Kind        string  `json:"kind"`
	Layer       int     `json:"layer"`
	Encoding    string  `json:"encoding,omitempty"`
	Bound       string  `json:"bound"`        // predicted bound (decode)
	MeasuredUs  float64 `json:"measured_us"`  // decode: median over the timed steps
	MinUs       float64 `json:"min_us"`       // decode: fastest timed step
	PredictedUs float64 `json:"predicted_us"` // decode at the middle context of the timed steps
	ErrorPct    float64 `json:"error_pct"`    // 100 * (predicted - measured) / measured
	// The prefill of N tokens: one timed run.
	PrefillMeasuredUs  float64 `json:"prefill_measured_us"`
	PrefillPredictedUs float64 `json:"prefill_predicted_us"`
	PrefillErrorPct    float64 `json:"prefill_error_pct"`
}

// MeasureSummary holds the whole-pass comparison.
type MeasureSummary struct {
	ThresholdUs float64 `json:"threshold_us"`
	// Ops is the count of ops whose measured decode time is >= ThresholdUs;
	// MedianAbsErrorPct is the median |error_pct| over them.
	Ops               int     `json:"ops"`
	MedianAbsErrorPct float64 `json:"median_abs_error_pct"`
	MaxAbsErrorPct    float64 `json:"max_abs_error_pct"`
	// The same statistic against each op's fastest timed step (min_us),
	// over ops whose min is >= ThresholdUs: on a loaded machine the median
	// carries the scheduler's share, the minimum is closer to what the
	// hardware does undisturbed.
	MinOps               int     `json:"min_ops"`
	MinMedianAbsErrorPct float64 `json:"min_median_abs_error_pct"`
	DecodeMeasuredMs     float64 `json:"decode_measured_ms"` // sum of per-op medians
	DecodeWallMs         float64 `json:"decode_wall_ms"`     // median wall time of a whole step
	DecodePredictedMs    float64 `json:"decode_predicted_ms"`
	// Prefill counterparts (ops >= ThresholdUs of the prefill).
	PrefillOps               int     `json:"prefill_ops"`
	PrefillMedianAbsErrorPct float64 `json:"prefill_median_abs_error_pct"`
	PrefillMeasuredMs        float64 `json:"prefill_measured_ms"`
	PrefillPredictedMs       float64 `json:"prefill_predicted_ms"`
}

// MeasureResult is the output of Measure; its JSON form is documented in
// docs/TALARIA.md.
type MeasureResult struct {
	Schema        string         `json:"schema"`
	Model         string         `json:"model"`
	Device        string         `json:"device"`
	Threads       int            `json:"threads"`
	Kernels       string         `json:"kernels"` // kernels.Impl()/kernels.CurrentMode()
	PrefillTokens int            `json:"prefill_tokens"`
	Warmup        int            `json:"warmup"`
	Steps         int            `json:"steps"`
	FirstContext  int            `json:"first_context"`  // context of the first timed decode step
	DecodeContext int            `json:"decode_context"` // context the decode prediction is made at
	LoadAvgBefore [3]float64     `json:"loadavg_before"` // /proc/loadavg (zeros when unreadable)
	LoadAvgAfter  [3]float64     `json:"loadavg_after"`
	Ops           []OpMeasure    `json:"ops"`
	Summary       MeasureSummary `json:"summary"`
}

// PlanFromModel reads the storage of every matrix of a model (palettized
// width, group size, per-row scales; f16; f32) as a Plan.
func PlanFromModel(m *ir.Model) Plan {
	p := Plan{Tensors: map[string]TensorEncoding{}}
	for n, t := range m.Tensors {
		if len(t.Shape) != 2 {
			continue
		}
		e := TensorEncoding{Bits: 32}
		switch {
		case t.Type == ir.LUTMIX:
			e = TensorEncoding{}
			for _, pt := range t.Parts {
				e.Parts = append(e.Parts, PartEncoding{Rows: pt.Rows(),
					TensorEncoding: TensorEncoding{Bits: ir.Encodings[pt.Type].Bits, GroupSize: pt.Pal.GroupSize, PerRowScale: pt.Pal.Scales != nil}})
			}
		case t.Pal != nil:
			e = TensorEncoding{Bits: ir.Encodings[t.Type].Bits, GroupSize: t.Pal.GroupSize, PerRowScale: t.Pal.Scales != nil}
		case t.Type == ir.F16 || t.Type == ir.BF16:
			e.Bits = 16
		case t.Type == ir.Q8_0:
			e.Bits = 8
		}
		p.Tensors[n] = e
	}
	return p
}

// Measure runs the squeeze runtime on opts.Model with every op timed
// (runtime.Options.OpTimer) and pairs each op's measured time with the cost
// model's prediction on opts.Device:
//
//  1. prefill N prompt tokens in one Forward call (timed per op, once);
//  2. run Warmup decode steps untimed, then Steps decode steps, each timed
//     per op; the decode figure of an op is its median over the steps.
//
// Nothing is flushed between ops or steps: decode is measured in the steady
// state the runtime really runs in. The model's cost model counts every
// weight byte as a DRAM read, which is what a decode step does when the
// weights read per step exceed the last-level cache (stories110M: 440 MB at
// f32, 62 MB at 4 bits, against a 32 MB L3 here); for a model that fits
// in the cache the prediction is pessimistic (see docs/TALARIA.md).
func Measure(opts MeasureOptions) (*MeasureResult, error) {
	m, d := opts.Model, opts.Device
	if m == nil {
		return nil, fmt.Errorf("measure: no model")
	}
	if d == nil || d.Calibration == nil {
		return nil, fmt.Errorf("measure: device %q is not a measured host profile: measured mode compares against this machine only (use --device host)", deviceName(d))
	}
	if want := HostKey(d.Calibration.Threads); d.Calibration.HostKey != want {
		return nil, fmt.Errorf("measure: device %q was calibrated as %q, this machine is %q: recalibrate (--recalibrate)", d.Name, d.Calibration.HostKey, want)
	}
	if opts.PrefillTokens == 0 {
		opts.PrefillTokens = 128
	}
	if opts.Warmup == 0 {
		opts.Warmup = 2
	}
	if opts.Steps == 0 {
		opts.Steps = 16
	}
	if opts.Threads <= 0 {
		opts.Threads = d.Calibration.Threads
	}
	c := m.Config
	N, W, K := opts.PrefillTokens, opts.Warmup, opts.Steps
	if N < 1 || W < 0 || K < 1 {
		return nil, fmt.Errorf("measure: prefill %d, warmup %d, steps %d: expected prefill >= 1, warmup >= 0, steps >= 1", N, W, K)
	}
	if N+W+K > c.SeqLen {
		return nil, fmt.Errorf("measure: prefill %d + warmup %d + steps %d = %d tokens exceed the model's context of %d", N, W, K, N+W+K, c.SeqLen)
	}
	plan := PlanFromModel(m)
	if opts.Plan != nil {
		plan = *opts.Plan
	}
	label := opts.Label
	if label == "" {
		label = m.Source
	}

	// Run.
	ops := c.Ops()
	idx := make(map[string]int, len(ops))
	for i, o := range ops {
		idx[o.Name] = i
	}
	cur := make([]float64, len(ops)) // µs of the current pass
	seen := make([]int, len(ops))
	var unknown []string
	timer := func(op string, dt time.Duration) {
		i, ok := idx[op]
		if !ok {
			unknown = append(unknown, op)
			return
		}
		cur[i] += float64(dt.Nanoseconds()) / 1e3
		seen[i]++
	}
	rt, err := sqzrt.New(m, sqzrt.Options{Threads: opts.Threads, OpTimer: timer})
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	// runtime.New fits the int8 tables in the background; finish them
	// before anything is timed, or the first layers' prefill ops are
	// measured beside the fitting (session 8: blk.0.attn_v 23.6 ms against
	// 3-5 ms in the other layers)
	rt.WarmI8()
	st := rt.NewState(N + W + K)
	logits := make([]float32, c.Vocab)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6d656173))
	prompt := make([]int, N)
	for i := range prompt {
		prompt[i] = rng.IntN(c.Vocab)
	}
	res := &MeasureResult{Schema: MeasureSchema, Model: label, Device: d.Name, Threads: opts.Threads,
		Kernels: kernels.Impl() + "/" + kernels.CurrentMode().String(), PrefillTokens: N, Warmup: W, Steps: K,
		FirstContext: N + W + 1, DecodeContext: N + W + (K+1)/2}
	res.LoadAvgBefore = loadAvg()
	reset := func() {
		for i := range cur {
			cur[i], seen[i] = 0, 0
		}
	}
	check := func(phase string) error {
		if len(unknown) > 0 {
			return fmt.Errorf("measure: the runtime timed op %q, which is not an op of the model's config (%d ops)", unknown[0], len(ops))
		}
		for i, o := range ops {
			if seen[i] != 1 {
				return fmt.Errorf("measure: %s: op %q was timed %d times, expected once per forward pass", phase, o.Name, seen[i])
			}
		}
		return nil
	}
	reset()
	if err := rt.Forward(st, prompt, logits, false); err != nil {
		return nil, fmt.Errorf("measure: prefill: %w", err)
	}
	if err := check("prefill"); err != nil {
		return nil, err
	}
	prefill := append([]float64(nil), cur...)
	next := sqzrt.Argmax(logits)
	for s := 0; s < W; s++ {
		if err := rt.Forward(st, []int{next}, logits, false); err != nil {
			return nil, fmt.Errorf("measure: decode: %w", err)
		}
		next = sqzrt.Argmax(logits)
	}
	steps := make([][]float64, len(ops))
	wall := make([]float64, 0, K)
	for s := 0; s < K; s++ {
		reset()
		t0 := time.Now()
		if err := rt.Forward(st, []int{next}, logits, false); err != nil {
			return nil, fmt.Errorf("measure: decode: %w", err)
		}
		wall = append(wall, float64(time.Since(t0).Nanoseconds())/1e6)
		if err := check("decode"); err != nil {
			return nil, err
		}
		for i := range ops {
			steps[i] = append(steps[i], cur[i])
		}
		next = sqzrt.Argmax(logits)
	}
	res.LoadAvgAfter = loadAvg()

	// Predict.
	pred, err := Profile(Options{Config: c, Model: label, Device: d, Plan: plan, PrefillTokens: N, DecodeContext: res.DecodeContext})
	if err != nil {
		return nil, fmt.Errorf("measure: %w", err)
	}
	if len(pred.Ops) != len(ops) {
		return nil, fmt.Errorf("measure: the cost model has %d ops, the config %d", len(pred.Ops), len(ops))
	}
	var decErr, preErr, minErr []float64
	S := &res.Summary
	S.ThresholdUs = MeasureThresholdUs
	for i, o := range ops {
		p := pred.Ops[i]
		if p.Name != o.Name {
			return nil, fmt.Errorf("measure: cost-model op %d is %q, the config's is %q", i, p.Name, o.Name)
		}
		med, mn := median(steps[i]), minOf(steps[i])
		om := OpMeasure{Name: o.Name, Kind: string(o.Kind), Layer: o.Layer, Encoding: p.Encoding, Bound: p.Decode.Bound,
			MeasuredUs: med, MinUs: mn, PredictedUs: p.Decode.LatencyUs, ErrorPct: errPct(p.Decode.LatencyUs, med),
			PrefillMeasuredUs: prefill[i], PrefillPredictedUs: p.Prefill.LatencyUs, PrefillErrorPct: errPct(p.Prefill.LatencyUs, prefill[i])}
		res.Ops = append(res.Ops, om)
		S.DecodeMeasuredMs += med / 1e3
		S.DecodePredictedMs += p.Decode.LatencyUs / 1e3
		S.PrefillMeasuredMs += prefill[i] / 1e3
		S.PrefillPredictedMs += p.Prefill.LatencyUs / 1e3
		if med >= MeasureThresholdUs {
			decErr = append(decErr, math.Abs(om.ErrorPct))
		}
		if mn >= MeasureThresholdUs {
			minErr = append(minErr, math.Abs(errPct(p.Decode.LatencyUs, mn)))
		}
		if prefill[i] >= MeasureThresholdUs {
			preErr = append(preErr, math.Abs(om.PrefillErrorPct))
		}
	}
	S.DecodeWallMs = median(wall)
	S.Ops, S.PrefillOps = len(decErr), len(preErr)
	if len(decErr) > 0 {
		S.MedianAbsErrorPct = median(decErr)
		S.MaxAbsErrorPct = maxOf(decErr)
	}
	if S.MinOps = len(minErr); len(minErr) > 0 {
		S.MinMedianAbsErrorPct = median(minErr)
	}
	if len(preErr) > 0 {
		S.PrefillMedianAbsErrorPct = median(preErr)
	}
	return res, nil
}

func deviceName(d *Device) string {
	if d == nil {
		return ""
	}
	return d.Name
}

func errPct(pred, meas float64) float64 {
	if meas <= 0 {
		return 0
	}
	return 100 * (pred - meas) / meas
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minOf(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// loadAvg reads the 1, 5 and 15 minute load averages (zeros when
// /proc/loadavg is unreadable).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// RenderMeasure writes the measured-vs-predicted table: every op (or the
// first top by measured decode time when top > 0), then the summary.
func RenderMeasure(w io.Writer, r *MeasureResult, top int) error {
	rows := append([]OpMeasure(nil), r.Ops...)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].MeasuredUs > rows[j].MeasuredUs })
	if top > 0 && top < len(rows) {
		rows = rows[:top]
	}
	fmt.Fprintf(w, "%s on %s, %d threads: prefill %d tokens (timed once), then %d warm-up and %d timed decode steps (contexts %d..%d); decode per op = median over the steps, predicted at context %d\n",
		r.Model, r.Device, r.Threads, r.PrefillTokens, r.Warmup, r.Steps, r.FirstContext, r.FirstContext+r.Steps-1, r.DecodeContext)
	right := tw.CellAlignment{PerColumn: []tw.Align{tw.AlignLeft, tw.AlignLeft, tw.AlignLeft, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignLeft, tw.AlignRight, tw.AlignRight, tw.AlignRight}}
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithFooterAutoFormat(tw.Off),
		tablewriter.WithRowAlignmentConfig(right),
		tablewriter.WithFooterAlignmentConfig(right),
	)
	t.Header("op", "kind", "enc", "measured µs", "min µs", "predicted µs", "error %", "bound", "prefill meas. µs", "prefill pred. µs", "prefill err %")
	for _, o := range rows {
		enc := o.Encoding
		if enc == "" {
			enc = "-"
		}
		if err := t.Append(o.Name, o.Kind, enc, fmt.Sprintf("%.1f", o.MeasuredUs), fmt.Sprintf("%.1f", o.MinUs),
			fmt.Sprintf("%.1f", o.PredictedUs), fmt.Sprintf("%+.1f", o.ErrorPct), o.Bound,
			fmt.Sprintf("%.1f", o.PrefillMeasuredUs), fmt.Sprintf("%.1f", o.PrefillPredictedUs), fmt.Sprintf("%+.1f", o.PrefillErrorPct)); err != nil {
			return err
		}
	}
	S := r.Summary
	label := "TOTAL"
	if len(rows) < len(r.Ops) {
		label = fmt.Sprintf("TOTAL (%d ops, top %d shown)", len(r.Ops), len(rows))
	}
	t.Footer(label, "", "", fmt.Sprintf("%.1f", S.DecodeMeasuredMs*1e3), "", fmt.Sprintf("%.1f", S.DecodePredictedMs*1e3),
		fmt.Sprintf("%+.1f", errPct(S.DecodePredictedMs, S.DecodeMeasuredMs)), "",
		fmt.Sprintf("%.1f", S.PrefillMeasuredMs*1e3), fmt.Sprintf("%.1f", S.PrefillPredictedMs*1e3), fmt.Sprintf("%+.1f", errPct(S.PrefillPredictedMs, S.PrefillMeasuredMs)))
	if err := t.Render(); err != nil {
		return err
	}
	fmt.Fprintf(w, "decode: median |error| %.1f%% (max %.1f%%) over %d ops measured >= %.0f µs; step %.2f ms measured (sum of op medians; wall median %.2f ms) vs %.2f ms predicted\n",
		S.MedianAbsErrorPct, S.MaxAbsErrorPct, S.Ops, S.ThresholdUs, S.DecodeMeasuredMs, S.DecodeWallMs, S.DecodePredictedMs)
	fmt.Fprintf(w, "decode against each op's fastest step: median |error| %.1f%% over %d ops >= %.0f µs\n", S.MinMedianAbsErrorPct, S.MinOps, S.ThresholdUs)
	fmt.Fprintf(w, "prefill of %d: median |error| %.1f%% over %d ops >= %.0f µs; %.1f ms measured vs %.1f ms predicted\n",
		r.PrefillTokens, S.PrefillMedianAbsErrorPct, S.PrefillOps, S.ThresholdUs, S.PrefillMeasuredMs, S.PrefillPredictedMs)
	_, err := fmt.Fprintf(w, "load average %.2f %.2f %.2f before, %.2f %.2f %.2f after (1/5/15 min)\n",
		r.LoadAvgBefore[0], r.LoadAvgBefore[1], r.LoadAvgBefore[2], r.LoadAvgAfter[0], r.LoadAvgAfter[1], r.LoadAvgAfter[2])
	return err
}
