package ir

import (
	"fmt"
	"sort"
)

// OpKind is the kind of one op in the execution order.
type OpKind string

const (
	OpEmbed     OpKind = "embed"
	OpRMSNorm   OpKind = "rmsnorm"
	OpLinear    OpKind = "linear"
	OpRoPE      OpKind = "rope"
	OpAttention OpKind = "attention"
	OpSwiGLU    OpKind = "swiglu"
	OpAdd       OpKind = "add"
	OpLMHead    OpKind = "lm_head"
)

// Op is one operation of the forward pass.
type Op struct {
	Name   string `json:"name"`   // unique, e.g. "blk.3.attn_q" or "blk.3.attention"
	Kind   OpKind `json:"kind"`   //
	Layer  int    `json:"layer"`  // -1 for ops outside the blocks
	Weight string `json:"weight"` // tensor name, "" for weightless ops
	In     int    `json:"in"`     // input width (linear/lm_head), or vector width
	Out    int    `json:"out"`    // output width
}

// Phase selects what a cost is for: a prefill of N tokens from an empty
// cache (Decode false), or one decode step at context length L (Decode true).
type Phase struct {
	Decode bool
	N      int // prefill tokens
	L      int // decode context (tokens already in the cache, plus this one)
}

// Prefill returns the phase of a prefill of n tokens.
func Prefill(n int) Phase { return Phase{N: n} }

// DecodeAt returns the phase of one decode step at context l.
func DecodeAt(l int) Phase { return Phase{Decode: true, L: l} }

// Tokens is the number of tokens the phase processes.
func (p Phase) Tokens() int {
	if p.Decode {
		return 1
	}
	return p.N
}

// String describes the phase.
func (p Phase) String() string {
	if p.Decode {
		return fmt.Sprintf("decode@%d", p.L)
	}
	return fmt.Sprintf("prefill%d", p.N)
}

// Cost is what one op costs in a phase. Bytes are what moves between the op
// and memory: weights read once, activations read and written in float32,
// and KV-cache bytes read and written (float32).
type Cost struct {
	FLOPs       float64 `json:"flops"`
	WeightBytes int64   `json:"weight_bytes"`
	ActBytes    int64   `json:"act_bytes"`
	KVBytes     int64   `json:"kv_bytes"`
}

// Ops returns the ops of one forward pass in execution order.
func (c Config) Ops() []Op {
	var ops []Op
	add := func(o Op) { ops = append(ops, o) }
	add(Op{Name: NameTokenEmbd, Kind: OpEmbed, Layer: -1, Weight: NameTokenEmbd, In: c.Vocab, Out: c.Dim})
	for l := 0; l < c.Layers; l++ {
		b := func(s string) string { return Blk(l, s) }
		add(Op{Name: b(AttnNorm), Kind: OpRMSNorm, Layer: l, Weight: b(AttnNorm), In: c.Dim, Out: c.Dim})
		add(Op{Name: b(AttnQ), Kind: OpLinear, Layer: l, Weight: b(AttnQ), In: c.Dim, Out: c.QDim()})
		add(Op{Name: b(AttnK), Kind: OpLinear, Layer: l, Weight: b(AttnK), In: c.Dim, Out: c.KVDim()})
		add(Op{Name: b(AttnV), Kind: OpLinear, Layer: l, Weight: b(AttnV), In: c.Dim, Out: c.KVDim()})
		add(Op{Name: b("rope"), Kind: OpRoPE, Layer: l, In: c.QDim() + c.KVDim(), Out: c.QDim() + c.KVDim()})
		add(Op{Name: b("attention"), Kind: OpAttention, Layer: l, In: c.QDim(), Out: c.QDim()})
		add(Op{Name: b(AttnOut), Kind: OpLinear, Layer: l, Weight: b(AttnOut), In: c.QDim(), Out: c.Dim})
		add(Op{Name: b("attn_residual"), Kind: OpAdd, Layer: l, In: c.Dim, Out: c.Dim})
		add(Op{Name: b(FFNNorm), Kind: OpRMSNorm, Layer: l, Weight: b(FFNNorm), In: c.Dim, Out: c.Dim})
		add(Op{Name: b(FFNGate), Kind: OpLinear, Layer: l, Weight: b(FFNGate), In: c.Dim, Out: c.FFN})
		add(Op{Name: b(FFNUp), Kind: OpLinear, Layer: l, Weight: b(FFNUp), In: c.Dim, Out: c.FFN})
		add(Op{Name: b("swiglu"), Kind: OpSwiGLU, Layer: l, In: c.FFN, Out: c.FFN})
		add(Op{Name: b(FFNDown), Kind: OpLinear, Layer: l, Weight: b(FFNDown), In: c.FFN, Out: c.Dim})
		add(Op{Name: b("ffn_residual"), Kind: OpAdd, Layer: l, In: c.Dim, Out: c.Dim})
	}
	add(Op{Name: NameOutputNorm, Kind: OpRMSNorm, Layer: -1, Weight: NameOutputNorm, In: c.Dim, Out: c.Dim})
	w := NameOutput
	if c.TiedEmbed {
		w = NameTokenEmbd
	}
	add(Op{Name: NameOutput, Kind: OpLMHead, Layer: -1, Weight: w, In: c.Dim, Out: c.Vocab})
	return ops
}

// Cost returns the cost of op o in phase p when its weight tensor occupies
// weightBytes in storage (pass the encoded size: f32, f16 or palettized).
//
// Model: linear ops read the whole weight once per phase (a prefill reuses
// it across tokens) and do 2*N*in*out FLOPs; the embedding reads only the N
// rows it gathers; the classifier runs on the last token only (a prefill
// needs one next-token distribution; evaluation, which wants all, is N
// decode-sized classifier calls). Attention in a prefill of N does
// 2*heads*headDim*N(N+1)/2 multiply-adds for scores and as many for the
// weighted sum, and reads/writes the N keys and values once (tiled); in a
// decode step at context L it reads all L cached keys and values.
func (c Config) Cost(o Op, p Phase, weightBytes int64) Cost {
	n := float64(p.Tokens())
	N := int64(p.Tokens())
	const f = 4 // float32 activations
	switch o.Kind {
	case OpEmbed:
		perRow := weightBytes / int64(max(c.Vocab, 1))
		return Cost{WeightBytes: perRow * N, ActBytes: f * N * int64(c.Dim)}
	case OpRMSNorm:
		return Cost{FLOPs: 4 * n * float64(o.In), WeightBytes: weightBytes, ActBytes: 2 * f * N * int64(o.In)}
	case OpLinear:
		fl := 2 * n * float64(o.In) * float64(o.Out)
		return Cost{FLOPs: fl, WeightBytes: weightBytes, ActBytes: f * N * int64(o.In+o.Out)}
	case OpLMHead:
		return Cost{FLOPs: 2 * float64(o.In) * float64(o.Out), WeightBytes: weightBytes, ActBytes: f * int64(o.In+o.Out)}
	case OpRoPE:
		// each rotated pair: 4 multiplies and 2 adds
		return Cost{FLOPs: 3 * n * float64(o.In), ActBytes: 2 * f * N * int64(o.In)}
	case OpAttention:
		hd, h := float64(c.HeadDim), float64(c.Heads)
		kv := int64(c.KVDim())
		if p.Decode {
			L := float64(p.L)
			return Cost{FLOPs: 4*h*hd*L + 5*h*L, ActBytes: 2 * f * int64(c.QDim()), KVBytes: 2*f*kv*int64(p.L) + 2*f*kv}
		}
		pairs := n * (n + 1) / 2
		return Cost{FLOPs: 4*h*hd*pairs + 5*h*pairs, ActBytes: 2 * f * N * int64(c.QDim()), KVBytes: 4 * f * kv * N}
	case OpSwiGLU:
		return Cost{FLOPs: 6 * n * float64(o.In), ActBytes: 3 * f * N * int64(o.In)}
	case OpAdd:
		return Cost{FLOPs: n * float64(o.In), ActBytes: 3 * f * N * int64(o.In)}
	}
	return Cost{}
}

// OpCost is Cost with the weight bytes taken from the model's tensors.
func (m *Model) OpCost(o Op, p Phase) Cost {
	var wb int64
	if t, ok := m.Tensors[o.Weight]; ok {
		wb = t.Bytes()
	}
	return m.Config.Cost(o, p, wb)
}

// KVCacheBytes is the float32 KV cache size for ctx tokens.
func (c Config) KVCacheBytes(ctx int) int64 {
	return 2 * 4 * int64(c.Layers) * int64(c.KVDim()) * int64(ctx)
}

func sortStrings(s []string) { sort.Strings(s) }
