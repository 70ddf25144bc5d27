package talaria

import (
	"math"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// tinyConfig: dim 4, 1 layer, 1 head of 4, ffn 8, vocab 16, tied.
func tinyConfig() ir.Config {
	return ir.Config{Arch: "llama", Dim: 4, Layers: 1, Heads: 1, KVHeads: 1, HeadDim: 4, FFN: 8, Vocab: 16, SeqLen: 32, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true}
}

// unitDevice: 1 GB/s, 1 GFLOP/s, 1 G LUT weights/s, 1 us per op,
// 10 pJ/DRAM byte, 1 pJ/on-chip byte, 2 pJ/FLOP, float32 everywhere.
func unitDevice() *Device {
	lut := map[string]float64{}
	for _, b := range []string{"1", "2", "3", "4", "6", "8"} {
		lut[b] = 1
	}
	return &Device{Schema: DeviceSchema, Name: "unit", Class: ClassCPU, ActBytes: 4, KVBytes: 4,
		MemBandwidthGBs: 1, MemEfficiency: 1, MemoryBytes: 1 << 30, PeakTFLOPs: 0.001, ComputeEfficiency: 1,
		OnChipBytes: 1 << 20, LUTDecodeGElemS: lut, LUTGroupOverheadNs: 0, OpOverheadUs: 1,
		DRAMPJPerByte: 10, OnChipPJPerByte: 1, PJPerFLOP: 2}
}

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

func findOp(t *testing.T, r *Result, name string) OpResult {
	t.Helper()
	for _, o := range r.Ops {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("op %q missing", name)
	return OpResult{}
}

func TestCostArithmeticByHand(t *testing.T) {
	d := unitDevice()
	if err := d.Validate("unit"); err != nil {
		t.Fatal(err)
	}
	r, err := Profile(Options{Config: tinyConfig(), Device: d, PrefillTokens: 4, DecodeContext: 6})
	if err != nil {
		t.Fatal(err)
	}
	up := findOp(t, r, "blk.0.ffn_up")
	// f32 ffn_up is 8x4: 128 bytes. Decode: 2*4*8 = 64 FLOPs, act (4+8)*4 =
	// 48 bytes on chip. mem 128 B / 1e9 B/s = 0.128 us > compute 0.064 us.
	if up.WeightBytes != 128 || up.Decode.DRAMBytes != 128 || up.Decode.OnChipBytes != 48 || up.Decode.FLOPs != 64 {
		t.Fatalf("ffn_up decode: %+v", up.Decode)
	}
	near(t, "decode mem_us", up.Decode.MemUs, 0.128)
	near(t, "decode compute_us", up.Decode.ComputeUs, 0.064)
	near(t, "decode latency", up.Decode.LatencyUs, 1.128)
	near(t, "decode energy (128*10+48*1+64*2 pJ)", up.Decode.EnergyUJ, 1456e-6)
	if up.Decode.Bound != "memory" || up.Bound != "memory" || up.LatencyUs != up.Decode.LatencyUs {
		t.Errorf("bound/phase selection: %+v", up)
	}
	// Prefill of 4: 256 FLOPs (compute 0.256 us beats 0.128 us of weights).
	near(t, "prefill latency", up.Prefill.LatencyUs, 1.256)
	if up.Prefill.OnChipBytes != 4*4*12 || up.Prefill.Bound != "compute" {
		t.Errorf("prefill: %+v", up.Prefill)
	}

	// 4-bit, one LUT: 32 indices = one 16-byte block + 16 float16 entries = 48 B.
	p := Plan{Tensors: map[string]TensorEncoding{"blk.0.ffn_up": {Bits: 4}}}
	r4, err := Profile(Options{Config: tinyConfig(), Device: d, Plan: p, PrefillTokens: 4, DecodeContext: 6})
	if err != nil {
		t.Fatal(err)
	}
	up4 := findOp(t, r4, "blk.0.ffn_up")
	if up4.WeightBytes != 48 || up4.Encoding != "lut4" || up4.Bits != 4 || up4.Decode.LUTElems != 32 {
		t.Fatalf("lut4 ffn_up: %+v", up4)
	}
	near(t, "lut4 lut_us", up4.Decode.LUTUs, 0.032)
	near(t, "lut4 latency (compute bound)", up4.Decode.LatencyUs, 1.064)
	if r4.Totals.WeightBytes != r.Totals.WeightBytes-128+48 {
		t.Errorf("total weight bytes %d, want %d", r4.Totals.WeightBytes, r.Totals.WeightBytes-80)
	}

	// Totals: TTFT is the sum of prefill latencies; decode tokens/s its inverse.
	var pre, dec, e float64
	for _, o := range r.Ops {
		pre += o.Prefill.LatencyUs
		dec += o.Decode.LatencyUs
		e += o.Decode.EnergyUJ
	}
	near(t, "ttft_ms", r.Totals.TTFTMs, pre/1e3)
	near(t, "ms_per_prompt_token", r.Totals.MsPerPromptToken, pre/1e3/4)
	near(t, "decode_tokens_per_s", r.Totals.DecodeTokensPerS, 1e6/dec)
	near(t, "energy_mj_per_token", r.Totals.EnergyMJPerToken, e/1e3)
	near(t, "decode power", r.Totals.DecodePowerW, e/dec)
	// Params: embd 64 + norms 3*4 + q,k,v,o 4*16 + ffn 3*32 = 236, all f32.
	if r.Totals.Params != 236 || r.Totals.WeightBytes != 944 {
		t.Errorf("params %d bytes %d, want 236 / 944", r.Totals.Params, r.Totals.WeightBytes)
	}
	// KV: 2 * 4 B * 1 layer * kvdim 4 * ctx 6 = 192. Activations: 4 tokens *
	// (3*4 + 2*8 + 4 + 2*4) * 4 B = 640, + scores 4*1*6 = 24, + logits 64.
	if r.Totals.KVCacheBytes != 192 || r.Totals.ActivationBytes != 728 || r.Totals.PeakMemoryBytes != 944+192+728 {
		t.Errorf("memory: kv %d act %d peak %d", r.Totals.KVCacheBytes, r.Totals.ActivationBytes, r.Totals.PeakMemoryBytes)
	}
	// The tied classifier reads the embedding table at its encoding.
	if out := findOp(t, r, "output"); out.Weight != "token_embd" || out.Decode.DRAMBytes != 256 {
		t.Errorf("lm_head: %+v", out)
	}

	// Activations beyond on-chip capacity spill to DRAM.
	d0 := unitDevice()
	d0.OnChipBytes = 0
	r0, _ := Profile(Options{Config: tinyConfig(), Device: d0, PrefillTokens: 4, DecodeContext: 6})
	up0 := findOp(t, r0, "blk.0.ffn_up")
	if up0.Decode.DRAMBytes != 176 || up0.Decode.OnChipBytes != 0 {
		t.Errorf("spill: %+v", up0.Decode)
	}
	near(t, "spilled energy", up0.Decode.EnergyUJ, (176*10+64*2)*1e-6)
}

func TestEncodedBytesAndGroups(t *testing.T) {
	// 3-bit, 8x100, 4 rows per LUT, per-row scales: planes 2+1 bits:
	// ceil(800/64)*16 + ceil(800/128)*16 = 208+112; LUTs 2*8*2 = 32; scale
	// codes 8 (one byte per row).
	b, err := EncodedBytes(TensorEncoding{Bits: 3, GroupSize: 4, PerRowScale: true}, 8, 100)
	if err != nil || b != 360 {
		t.Fatalf("EncodedBytes = %d, %v; want 360", b, err)
	}
	if b != ir.PackedBytes(3, 800)+32+8 {
		t.Fatal("disagrees with ir.PackedBytes")
	}
	if _, err := EncodedBytes(TensorEncoding{Bits: 5}, 2, 2); err == nil {
		t.Error("5 bits accepted")
	}
	// Finer LUT groups cost more: group overhead per group touched.
	d := unitDevice()
	d.LUTGroupOverheadNs = 100
	d.LUTDecodeGElemS["4"] = 0.001 // make LUT decode the bound
	cfg := tinyConfig()
	prof := func(gs int) OpResult {
		r, err := Profile(Options{Config: cfg, Device: d, PrefillTokens: 4, DecodeContext: 4,
			Plan: Plan{Tensors: map[string]TensorEncoding{"blk.0.ffn_up": {Bits: 4, GroupSize: gs}}}})
		if err != nil {
			t.Fatal(err)
		}
		return findOp(t, r, "blk.0.ffn_up")
	}
	one, per := prof(0), prof(1)
	if one.Decode.LUTGroups != 1 || per.Decode.LUTGroups != 8 {
		t.Fatalf("groups %d / %d", one.Decode.LUTGroups, per.Decode.LUTGroups)
	}
	near(t, "group overhead difference", per.Decode.LUTUs-one.Decode.LUTUs, 7*0.1)
	if per.Decode.Bound != "lut" || per.LatencyUs <= one.LatencyUs {
		t.Errorf("finer groups should be slower: %v vs %v", per.LatencyUs, one.LatencyUs)
	}
}

func TestPlanErrors(t *testing.T) {
	d := unitDevice()
	for _, c := range []struct {
		p    Plan
		want string
	}{
		{Plan{Tensors: map[string]TensorEncoding{"blk.9.attn_q": {Bits: 4}}}, `tensor "blk.9.attn_q" is not a tensor of this model`},
		{Plan{Tensors: map[string]TensorEncoding{"blk.0.attn_q": {Bits: 5}}}, `tensor "blk.0.attn_q": bits = 5`},
		{Plan{BPW: -1}, "bpw = -1"},
		{Plan{Default: TensorEncoding{Bits: 7}}, "default encoding: bits = 7"},
	} {
		_, err := Profile(Options{Config: tinyConfig(), Device: d, Plan: c.p})
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("plan %+v: error %v, want %q", c.p, err, c.want)
		}
	}
	if _, err := Profile(Options{Config: tinyConfig()}); err == nil {
		t.Error("no device accepted")
	}
	if _, err := Profile(Options{Config: tinyConfig(), Device: d, Phase: "train"}); err == nil {
		t.Error("bad phase accepted")
	}
}

func TestUniformBPW(t *testing.T) {
	r, err := Profile(Options{Config: tinyConfig(), Device: unitDevice(), Plan: UniformBPW(3.5), PrefillTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Linear and embedding at 3.5 bits: round(3.5*elems/8); norms f32.
	for _, o := range r.Ops {
		switch o.Kind {
		case "linear", "lm_head", "embed":
			if o.Bits != 3.5 || o.WeightBytes != int64(math.Round(3.5*float64(o.WeightElems)/8)) {
				t.Errorf("%s: bits %v bytes %d", o.Name, o.Bits, o.WeightBytes)
			}
		case "rmsnorm":
			if o.Bits != 32 {
				t.Errorf("%s: bits %v", o.Name, o.Bits)
			}
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestMatMulRateCompute: with matmul_gflops a linear's compute term is
// FLOPs over the rate of its encoding (interpolated for a fractional LUT
// width), not FLOPs at peak_tflops; attention and ops whose encoding has
// no rate keep the peak.
func TestMatMulRateCompute(t *testing.T) {
	d := unitDevice()
	d.MatMulGFLOPs = map[string]float64{"f32": 0.004, "2": 0.016, "4": 0.008}
	if err := d.Validate("unit"); err != nil {
		t.Fatal(err)
	}
	p := Plan{Tensors: map[string]TensorEncoding{"blk.0.ffn_up": {Bits: 4}, "blk.0.ffn_gate": {Bits: 3}}}
	r, err := Profile(Options{Config: tinyConfig(), Device: d, Plan: p, PrefillTokens: 4, DecodeContext: 6})
	if err != nil {
		t.Fatal(err)
	}
	// prefill of 4 tokens through an 8x4 linear: 2*4*8*4 = 256 FLOPs
	up := findOp(t, r, "blk.0.ffn_up")
	near(t, "lut4 ffn_up prefill compute us", up.Prefill.ComputeUs, 256/0.008e9*1e6)
	near(t, "lut4 ffn_up decode compute us", up.Decode.ComputeUs, 64/0.008e9*1e6)
	// 3 bits: halfway between 2 (0.016) and 4 (0.008)
	gate := findOp(t, r, "blk.0.ffn_gate")
	near(t, "lut3 ffn_gate prefill compute us", gate.Prefill.ComputeUs, 256/0.012e9*1e6)
	down := findOp(t, r, "blk.0.ffn_down") // f32 (no plan entry)
	near(t, "f32 ffn_down prefill compute us", down.Prefill.ComputeUs, 256/0.004e9*1e6)
	att := findOp(t, r, "blk.0.attention")
	near(t, "attention decode compute us", att.Decode.ComputeUs, att.Decode.FLOPs/1e9*1e6)
	// no f16 rate: an f16 linear keeps peak_tflops
	delete(d.MatMulGFLOPs, "f32")
	r, err = Profile(Options{Config: tinyConfig(), Device: d, PrefillTokens: 4, DecodeContext: 6})
	if err != nil {
		t.Fatal(err)
	}
	down = findOp(t, r, "blk.0.ffn_down")
	near(t, "f32 ffn_down prefill compute us without a rate", down.Prefill.ComputeUs, 256/1e9*1e6)
	for _, bad := range []map[string]float64{{"5": 1}, {"bf16": 1}, {"4": 0}, {"4": math.NaN()}} {
		d.MatMulGFLOPs = bad
		if err := d.Validate("unit"); err == nil || !strings.Contains(err.Error(), "matmul_gflops") {
			t.Errorf("matmul_gflops %v: error %v", bad, err)
		}
	}
}
