package talaria

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

var (
	quickHostOnce sync.Once
	quickHost     *Device
	quickHostErr  error
)

// quickHostDevice is a quick (noisy) host calibration, not cached.
func quickHostDevice(t *testing.T) *Device {
	t.Helper()
	quickHostOnce.Do(func() {
		quickHost, quickHostErr = CalibrateHost(HostOptions{Quick: true, NoCache: true, Threads: runtime.GOMAXPROCS(0)})
	})
	if quickHostErr != nil {
		t.Fatal(quickHostErr)
	}
	return quickHost
}

// checkMeasure checks the structure of a measured result against the
// model's op list: every op paired once, in order, with consistent
// errors and summary.
func checkMeasure(t *testing.T, r *MeasureResult, c ir.Config) {
	t.Helper()
	ops := c.Ops()
	if len(r.Ops) != len(ops) {
		t.Fatalf("%d measured ops, the config has %d", len(r.Ops), len(ops))
	}
	var sumM, sumP float64
	over := 0
	for i, o := range r.Ops {
		if o.Name != ops[i].Name || o.Kind != string(ops[i].Kind) || o.Layer != ops[i].Layer {
			t.Errorf("op %d is %s/%s/%d, the config's is %s/%s/%d", i, o.Name, o.Kind, o.Layer, ops[i].Name, ops[i].Kind, ops[i].Layer)
		}
		if !(o.MeasuredUs > 0) || !(o.PredictedUs > 0) || !(o.PrefillMeasuredUs > 0) || !(o.PrefillPredictedUs > 0) {
			t.Errorf("op %s: measured %v predicted %v prefill %v/%v: expected all > 0", o.Name, o.MeasuredUs, o.PredictedUs, o.PrefillMeasuredUs, o.PrefillPredictedUs)
		}
		if o.MinUs > o.MeasuredUs {
			t.Errorf("op %s: min %v > median %v", o.Name, o.MinUs, o.MeasuredUs)
		}
		if want := 100 * (o.PredictedUs - o.MeasuredUs) / o.MeasuredUs; math.Abs(o.ErrorPct-want) > 1e-9*math.Abs(want)+1e-9 {
			t.Errorf("op %s: error %v%%, expected %v%%", o.Name, o.ErrorPct, want)
		}
		sumM += o.MeasuredUs
		sumP += o.PredictedUs
		if o.MeasuredUs >= MeasureThresholdUs {
			over++
		}
	}
	S := r.Summary
	if S.Ops != over {
		t.Errorf("summary counts %d ops >= %v µs, expected %d", S.Ops, MeasureThresholdUs, over)
	}
	if math.Abs(S.DecodeMeasuredMs-sumM/1e3) > 1e-9 || math.Abs(S.DecodePredictedMs-sumP/1e3) > 1e-9 {
		t.Errorf("summary decode %v/%v ms, sums of ops %v/%v", S.DecodeMeasuredMs, S.DecodePredictedMs, sumM/1e3, sumP/1e3)
	}
	if r.FirstContext != r.PrefillTokens+r.Warmup+1 || r.DecodeContext < r.FirstContext || r.DecodeContext > r.FirstContext+r.Steps-1 {
		t.Errorf("contexts: first %d, predicted at %d (prefill %d, warmup %d, steps %d)", r.FirstContext, r.DecodeContext, r.PrefillTokens, r.Warmup, r.Steps)
	}
	if !(S.DecodeWallMs > 0) {
		t.Errorf("decode wall %v ms", S.DecodeWallMs)
	}
}

func TestMeasureTinyF32(t *testing.T) {
	d := quickHostDevice(t)
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Measure(MeasureOptions{Model: m, Device: d, PrefillTokens: 8, Warmup: 1, Steps: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkMeasure(t, r, m.Config)
	if r.Schema != MeasureSchema || r.Device != "host" || r.Threads != d.Calibration.Threads || r.Steps != 3 {
		t.Errorf("header %+v", r)
	}
	for _, o := range r.Ops {
		if o.Kind == string(ir.OpLinear) && o.Encoding != "f32" {
			t.Errorf("op %s encoding %q, expected f32", o.Name, o.Encoding)
		}
	}
	// Table and JSON views.
	var tb bytes.Buffer
	if err := RenderMeasure(&tb, r, 5); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"measured µs", "predicted µs", "median |error|", "load average", "top 5 shown"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	var jb bytes.Buffer
	if err := WriteJSON(&jb, r); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Ops     []map[string]any `json:"ops"`
		Summary map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal(jb.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "measured_us", "predicted_us", "error_pct", "prefill_measured_us"} {
		if _, ok := j.Ops[0][k]; !ok {
			t.Errorf("ops[].%s missing", k)
		}
	}
	for _, k := range []string{"median_abs_error_pct", "ops", "decode_measured_ms", "decode_predicted_ms", "threshold_us"} {
		if _, ok := j.Summary[k]; !ok {
			t.Errorf("summary.%s missing", k)
		}
	}
}

func TestMeasureTinyPalettized(t *testing.T) {
	d := quickHostDevice(t)
	m, err := ir.SyntheticPalettized("stories260K", 4, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Measure(MeasureOptions{Model: m, Device: d, PrefillTokens: 4, Warmup: 0, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkMeasure(t, r, m.Config)
	for _, o := range r.Ops {
		if (o.Kind == string(ir.OpLinear) || o.Kind == string(ir.OpEmbed)) && o.Encoding != "lut4/g16" {
			t.Errorf("op %s encoding %q, expected lut4/g16 (the model's own storage)", o.Name, o.Encoding)
		}
	}
}

func TestMeasureRefuses(t *testing.T) {
	d := quickHostDevice(t)
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Builtin("m2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Measure(MeasureOptions{Model: m, Device: m2}); err == nil || !strings.Contains(err.Error(), "host") {
		t.Errorf("measuring against a published profile: err %v, expected a refusal naming the host", err)
	}
	other := *d
	cal := *d.Calibration
	cal.HostKey = "plan9/mips/another-cpu"
	other.Calibration = &cal
	if _, err := Measure(MeasureOptions{Model: m, Device: &other}); err == nil || !strings.Contains(err.Error(), "another-cpu") {
		t.Errorf("foreign calibration: err %v", err)
	}
	if _, err := Measure(MeasureOptions{Model: m, Device: d, PrefillTokens: 510, Steps: 4}); err == nil || !strings.Contains(err.Error(), "context of 512") {
		t.Errorf("too long: err %v", err)
	}
}

func TestEncodeForPlan(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	p := Plan{Tensors: map[string]TensorEncoding{
		ir.Blk(0, ir.FFNUp):   {Bits: 3, GroupSize: 8, PerRowScale: true},
		ir.Blk(1, ir.AttnQ):   {Bits: 16},
		ir.Blk(2, ir.FFNDown): {Bits: 2},
	}}
	e, err := EncodeForPlan(m, p, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := PlanFromModel(e)
	for name, want := range p.Tensors {
		g := got.Tensors[name]
		if want.GroupSize == 0 && want.Bits < 16 {
			want.GroupSize = e.Tensors[name].Rows() // one LUT for the tensor
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: encoded as %+v, plan says %+v", name, g, want)
		}
	}
	if got.Tensors[ir.Blk(0, ir.AttnQ)].Bits != 32 || m.Tensors[ir.Blk(0, ir.FFNUp)].Type != ir.F32 {
		t.Error("tensors outside the plan changed, or the input model was modified")
	}
	// The runtime runs it, and the measured result pairs every op.
	r, err := Measure(MeasureOptions{Model: e, Device: quickHostDevice(t), PrefillTokens: 4, Steps: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkMeasure(t, r, e.Config)
	if _, err := EncodeForPlan(m, Plan{Tensors: map[string]TensorEncoding{"nope": {Bits: 4}}}, 1); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown tensor: err %v", err)
	}
	if _, err := EncodeForPlan(m, UniformBPW(3.5), 1); err == nil {
		t.Error("uniform bpw plan accepted")
	}
}

// A lutmix tensor (per-group widths) reads back from a model as its parts,
// and the cost model counts exactly its bytes and all its LUT groups.
func TestPlanFromModelLutmix(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	name := ir.Blk(1, ir.FFNUp) // 172 x 64
	a, b := lutTensor(rng, 4, 32, 64, 16), lutTensor(rng, 2, 140, 64, 32)
	b.Pal.ScaleCodes = make([]uint8, 140)
	for i := range b.Pal.ScaleCodes {
		b.Pal.ScaleCodes[i] = uint8(30 + i%5)
	}
	b.Pal.ExpandScaleCodes()
	mt := &ir.Tensor{Name: name, Shape: []int{172, 64}, Type: ir.LUTMIX, Parts: []*ir.Tensor{a, b}}
	if err := mt.Check(); err != nil {
		t.Fatal(err)
	}
	m.Tensors[name] = mt
	p := PlanFromModel(m)
	e := p.Tensors[name]
	if len(e.Parts) != 2 || e.Parts[0].Rows != 32 || e.Parts[1].Bits != 2 || !e.Parts[1].PerRowScale {
		t.Fatalf("plan from model: %+v", e)
	}
	res, err := p.resolve(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := res[name]
	if r.Bytes != mt.Bytes() || r.Groups != 2+5 || r.Label != "lutmix/2parts" {
		t.Fatalf("resolved %d bytes, %d groups, %q; the tensor has %d bytes, 7 groups", r.Bytes, r.Groups, r.Label, mt.Bytes())
	}
	if want := float64(32*4+140*2) / 172; math.Abs(r.LUTBits-want) > 1e-12 {
		t.Fatalf("LUT width %v, expected the row-weighted mean %v", r.LUTBits, want)
	}
	bad := p.Clone()
	bad.Tensors[name] = TensorEncoding{Parts: []PartEncoding{{Rows: 100, TensorEncoding: TensorEncoding{Bits: 4}}}}
	if _, err := bad.resolve(m.Config); err == nil || !strings.Contains(err.Error(), "parts cover 100 rows") {
		t.Fatalf("parts not covering the rows: %v", err)
	}
}
