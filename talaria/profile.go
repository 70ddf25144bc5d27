package talaria

import (
	"fmt"
	"math"

	"github.com/squeeze-ml/squeeze/ir"
)

// ResultSchema is the value of the "schema" field of a profile result.
const ResultSchema = "squeeze.talaria.profile/v1"

// Options are the inputs of Profile.
type Options struct {
	Config ir.Config
	Model  string  // label for the report, e.g. "synthetic:afm-on-device"
	Device *Device // a built-in, the host, or a user profile
	Plan   Plan
	// PrefillTokens is N, the prompt length (default 1024).
	PrefillTokens int
	// DecodeContext is L, the context of the decode step costed (default N).
	DecodeContext int
	// Phase chooses which phase the per-op top-level figures (latency_us,
	// energy_uj, flops, bytes, bound) describe: "decode" (default, one
	// token at context L) or "prefill" (the whole prefill of N tokens).
	Phase string
}

// PhaseCost is what one op costs in one phase on the device.
type PhaseCost struct {
	FLOPs       float64 `json:"flops"`
	DRAMBytes   int64   `json:"dram_bytes"`   // weights + KV + spilled activations
	OnChipBytes int64   `json:"onchip_bytes"` // activations that stay on chip
	LUTElems    int64   `json:"lut_elems"`    // palettized weights decoded
	LUTGroups   int     `json:"lut_groups"`   // LUT groups touched
	MemUs       float64 `json:"mem_us"`       // DRAM bytes / achieved bandwidth
	ComputeUs   float64 `json:"compute_us"`   // FLOPs / achieved peak
	LUTUs       float64 `json:"lut_us"`       // LUT-decode time
	OverheadUs  float64 `json:"overhead_us"`  // per-op dispatch
	LatencyUs   float64 `json:"latency_us"`   // max(mem, compute, lut) + overhead
	EnergyUJ    float64 `json:"energy_uj"`
	Bound       string  `json:"bound"` // "memory", "compute" or "lut"
}

// OpResult is one row of the per-op profile.
type OpResult struct {
	Name        string  `json:"name"`
	Kind        string  `json:"kind"`
	Layer       int     `json:"layer"`
	Weight      string  `json:"weight,omitempty"`
	Encoding    string  `json:"encoding,omitempty"`
	Bits        float64 `json:"bits"`         // bits per weight element of its tensor (0: weightless)
	WeightElems int64   `json:"weight_elems"` // elements of its weight tensor
	WeightBytes int64   `json:"weight_bytes"` // storage of its weight tensor at its encoding
	// Figures of the phase named by Result.Phase.
	FLOPs     float64   `json:"flops"`
	Bytes     int64     `json:"bytes"` // DRAM + on-chip bytes moved
	LatencyUs float64   `json:"latency_us"`
	EnergyUJ  float64   `json:"energy_uj"`
	Bound     string    `json:"bound"`
	Prefill   PhaseCost `json:"prefill"`
	Decode    PhaseCost `json:"decode"`
}

// Totals are the whole-model figures.
type Totals struct {
	TTFTMs                  float64 `json:"ttft_ms"`
	MsPerPromptToken        float64 `json:"ms_per_prompt_token"`
	PrefillTokensPerS       float64 `json:"prefill_tokens_per_s"`
	PrefillEnergyMJPerToken float64 `json:"prefill_energy_mj_per_token"`
	PrefillPowerW           float64 `json:"prefill_power_w"`
	DecodeMsPerToken        float64 `json:"decode_ms_per_token"`
	DecodeTokensPerS        float64 `json:"decode_tokens_per_s"`
	EnergyMJPerToken        float64 `json:"energy_mj_per_token"` // decode
	DecodePowerW            float64 `json:"decode_power_w"`
	DecodeBytesPerToken     int64   `json:"decode_bytes_per_token"` // DRAM bytes
	DecodeFLOPsPerToken     float64 `json:"decode_flops_per_token"`
	PrefillFLOPs            float64 `json:"prefill_flops"`
	WeightBytes             int64   `json:"weight_bytes"` // every tensor once
	Params                  int64   `json:"params"`
	BitsPerWeight           float64 `json:"bits_per_weight"` // 8*weight_bytes/params
	KVCacheBytes            int64   `json:"kv_cache_bytes"`
	ActivationBytes         int64   `json:"activation_bytes"`
	PeakMemoryBytes         int64   `json:"peak_memory_bytes"` // weights + KV cache + activations
	FitsInMemory            bool    `json:"fits_in_memory"`
}

// Result is the output of Profile; its JSON form is documented in
// docs/TALARIA.md and stable within ResultSchema.
type Result struct {
	Schema        string     `json:"schema"`
	Model         string     `json:"model"`
	Device        string     `json:"device"`
	DeviceClass   string     `json:"device_class"`
	PrefillTokens int        `json:"prefill_tokens"`
	DecodeContext int        `json:"decode_context"`
	Phase         string     `json:"phase"`
	Ops           []OpResult `json:"ops"`
	Totals        Totals     `json:"totals"`
}

func (o *Options) defaults() error {
	if o.Device == nil {
		return fmt.Errorf("profile: no device profile given")
	}
	if err := o.Config.Validate(); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if o.PrefillTokens == 0 {
		o.PrefillTokens = 1024
	}
	if o.PrefillTokens < 1 {
		return fmt.Errorf("profile: prefill tokens = %d, expected >= 1", o.PrefillTokens)
	}
	if o.DecodeContext == 0 {
		o.DecodeContext = o.PrefillTokens
	}
	if o.DecodeContext < 1 {
		return fmt.Errorf("profile: decode context = %d, expected >= 1", o.DecodeContext)
	}
	switch o.Phase {
	case "":
		o.Phase = "decode"
	case "decode", "prefill":
	default:
		return fmt.Errorf("profile: phase %q, expected \"decode\" or \"prefill\"", o.Phase)
	}
	return nil
}

// Profile runs the cost model: every op of opts.Config in a prefill of N
// tokens and in one decode step at context L, on opts.Device, with weights
// stored as opts.Plan says.
func Profile(opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	enc, err := opts.Plan.resolve(opts.Config)
	if err != nil {
		return nil, err
	}
	return profileResolved(opts, enc), nil
}

func profileResolved(opts Options, enc map[string]resolved) *Result {
	c, d := opts.Config, opts.Device
	res := &Result{Schema: ResultSchema, Model: opts.Model, Device: d.Name, DeviceClass: d.Class,
		PrefillTokens: opts.PrefillTokens, DecodeContext: opts.DecodeContext, Phase: opts.Phase}
	pre, dec := ir.Prefill(opts.PrefillTokens), ir.DecodeAt(opts.DecodeContext)
	var t Totals
	var preUs, decUs, preUJ, decUJ float64
	for _, o := range c.Ops() {
		r := OpResult{Name: o.Name, Kind: string(o.Kind), Layer: o.Layer, Weight: o.Weight}
		var w *resolved
		if o.Weight != "" {
			if e, ok := enc[o.Weight]; ok {
				w = &e
				r.Encoding, r.Bits, r.WeightElems, r.WeightBytes = e.Label, e.Bits, e.Elems, e.Bytes
			}
		}
		r.Prefill = phaseCost(c, d, o, pre, w)
		r.Decode = phaseCost(c, d, o, dec, w)
		sel := r.Decode
		if opts.Phase == "prefill" {
			sel = r.Prefill
		}
		r.FLOPs, r.Bytes, r.LatencyUs, r.EnergyUJ, r.Bound = sel.FLOPs, sel.DRAMBytes+sel.OnChipBytes, sel.LatencyUs, sel.EnergyUJ, sel.Bound
		preUs += r.Prefill.LatencyUs
		decUs += r.Decode.LatencyUs
		preUJ += r.Prefill.EnergyUJ
		decUJ += r.Decode.EnergyUJ
		t.PrefillFLOPs += r.Prefill.FLOPs
		t.DecodeFLOPsPerToken += r.Decode.FLOPs
		t.DecodeBytesPerToken += r.Decode.DRAMBytes
		res.Ops = append(res.Ops, r)
	}
	n := float64(opts.PrefillTokens)
	t.TTFTMs = preUs / 1e3
	t.MsPerPromptToken = t.TTFTMs / n
	t.PrefillTokensPerS = 1e3 / t.MsPerPromptToken
	t.PrefillEnergyMJPerToken = preUJ / 1e3 / n
	t.PrefillPowerW = preUJ / preUs
	t.DecodeMsPerToken = decUs / 1e3
	t.DecodeTokensPerS = 1e3 / t.DecodeMsPerToken
	t.EnergyMJPerToken = decUJ / 1e3
	t.DecodePowerW = decUJ / decUs
	for _, e := range enc {
		t.WeightBytes += e.Bytes
		t.Params += e.Elems
	}
	if t.Params > 0 {
		t.BitsPerWeight = 8 * float64(t.WeightBytes) / float64(t.Params)
	}
	ctx := max(opts.PrefillTokens, opts.DecodeContext)
	t.KVCacheBytes = c.KVCacheBytes(ctx) / 4 * int64(d.KVBytes)
	t.ActivationBytes = ActivationBytes(c, d, opts.PrefillTokens, ctx)
	t.PeakMemoryBytes = t.WeightBytes + t.KVCacheBytes + t.ActivationBytes
	t.FitsInMemory = t.PeakMemoryBytes <= d.MemoryBytes
	res.Totals = t
	return res
}

// ActivationBytes is the activation working set of a prefill of n tokens at
// context ctx: per token the residual and its two scratch copies (3 dim),
// the two FFN branches (2 ffn), q, k and v, at the device's activation
// width; one row of attention scores per head over the context (attention
// is computed a query at a time or tiled, never as a full n x ctx matrix);
// and the float32 logits of one token.
func ActivationBytes(c ir.Config, d *Device, n, ctx int) int64 {
	perTok := int64(3*c.Dim+2*c.FFN+c.QDim()+2*c.KVDim()) * int64(d.ActBytes)
	return int64(n)*perTok + 4*int64(c.Heads)*int64(ctx) + 4*int64(c.Vocab)
}

// phaseCost is the roofline cost of op o in phase p; w is its weight's
// storage (nil for a weightless op).
func phaseCost(c ir.Config, d *Device, o ir.Op, p ir.Phase, w *resolved) PhaseCost {
	var wb int64
	if w != nil {
		wb = w.Bytes
	}
	ic := c.Cost(o, p, wb)
	act := ic.ActBytes / 4 * int64(d.ActBytes) // ir counts float32 activations
	kv := ic.KVBytes / 4 * int64(d.KVBytes)    // and a float32 KV cache
	pc := PhaseCost{FLOPs: ic.FLOPs, DRAMBytes: ic.WeightBytes + kv}
	if act > d.OnChipBytes {
		pc.DRAMBytes += act
	} else {
		pc.OnChipBytes = act
	}
	if w != nil && w.LUTBits > 0 {
		switch o.Kind {
		case ir.OpEmbed: // only the gathered rows are decoded
			rows := min(p.Tokens(), w.Rows)
			pc.LUTElems = int64(rows) * int64(w.Cols)
			pc.LUTGroups = min(rows, w.Groups)
		default: // the whole weight, once per phase (a prefill reuses it across tokens)
			pc.LUTElems = w.Elems
			pc.LUTGroups = w.Groups
		}
		pc.LUTUs = float64(pc.LUTElems)/d.LUTThroughput(w.LUTBits)*1e6 + float64(pc.LUTGroups)*d.LUTGroupOverheadNs/1e3
	}
	pc.MemUs = float64(pc.DRAMBytes) / (d.MemBandwidthGBs * 1e9 * d.MemEfficiency) * 1e6
	pc.ComputeUs = pc.FLOPs / (d.PeakTFLOPs * 1e12 * d.ComputeEfficiency) * 1e6
	if o.Kind == ir.OpAttention && d.AttentionGFLOPs > 0 {
		pc.ComputeUs = pc.FLOPs / (d.AttentionGFLOPs * 1e9) * 1e6
	}
	if o.Kind == ir.OpLinear || o.Kind == ir.OpLMHead {
		if rate, ok := d.MatMulRate(w); ok {
			pc.ComputeUs = pc.FLOPs / rate * 1e6
		}
	}
	pc.OverheadUs = d.OpOverheadUs
	if d.ParallelOpOverheadUs > 0 && runtimeSplits(c, o, p) {
		pc.OverheadUs += d.ParallelOpOverheadUs
	}
	top := math.Max(pc.MemUs, math.Max(pc.ComputeUs, pc.LUTUs))
	switch top {
	case pc.MemUs:
		pc.Bound = "memory"
	case pc.ComputeUs:
		pc.Bound = "compute"
	default:
		pc.Bound = "lut"
	}
	pc.LatencyUs = top + pc.OverheadUs
	pc.EnergyUJ = (float64(pc.DRAMBytes)*d.DRAMPJPerByte + float64(pc.OnChipBytes)*d.OnChipPJPerByte + pc.FLOPs*d.PJPerFLOP) * 1e-6
	return pc
}

// runtimeSplits reports whether the squeeze CPU runtime splits op o over
// worker goroutines in phase p (runtime.linear, runtime.attention): a
// linear or classifier op when in x out x tokens >= 65536, attention when
// heads x context x head_dim >= 32768 (context: L for a decode step, N for
// a prefill). Only profiles that set parallel_op_overhead_us use it.
func runtimeSplits(c ir.Config, o ir.Op, p ir.Phase) bool {
	switch o.Kind {
	case ir.OpLinear, ir.OpLMHead:
		n := p.Tokens()
		if o.Kind == ir.OpLMHead {
			n = 1
		}
		return o.In*o.Out*n >= 1<<16
	case ir.OpAttention:
		if p.Decode {
			return c.Heads*p.L*c.HeadDim >= 1<<15
		}
		return p.N*c.Heads*p.N*c.HeadDim >= 1<<15
	}
	return false
}
