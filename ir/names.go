package ir

import "fmt"

// Canonical (GGUF) tensor names.
const (
	NameTokenEmbd  = "token_embd"
	NameOutputNorm = "output_norm"
	NameOutput     = "output"
)

// Per-layer tensor kinds, the suffix after "blk.N.".
const (
	AttnNorm = "attn_norm"
	AttnQ    = "attn_q"
	AttnK    = "attn_k"
	AttnV    = "attn_v"
	AttnOut  = "attn_output"
	FFNNorm  = "ffn_norm"
	FFNGate  = "ffn_gate"
	FFNUp    = "ffn_up"
	FFNDown  = "ffn_down"
	AttnQB   = "attn_q.bias"
	AttnKB   = "attn_k.bias"
	AttnVB   = "attn_v.bias"
)

// LinearKinds are the per-layer linear weights, in execution order.
var LinearKinds = []string{AttnQ, AttnK, AttnV, AttnOut, FFNGate, FFNUp, FFNDown}

// Blk returns the canonical name of a per-layer tensor: "blk.3.attn_q".
func Blk(layer int, kind string) string { return fmt.Sprintf("blk.%d.%s", layer, kind) }

// ExpectedShapes lists every tensor a model with config c must have, with its
// shape, in canonical order. The classifier "output" is absent when tied.
func ExpectedShapes(c Config) []NamedShape {
	var s []NamedShape
	add := func(n string, sh ...int) { s = append(s, NamedShape{n, sh}) }
	add(NameTokenEmbd, c.Vocab, c.Dim)
	for l := 0; l < c.Layers; l++ {
		add(Blk(l, AttnNorm), c.Dim)
		add(Blk(l, AttnQ), c.QDim(), c.Dim)
		add(Blk(l, AttnK), c.KVDim(), c.Dim)
		add(Blk(l, AttnV), c.KVDim(), c.Dim)
		if c.QKVBias {
			add(Blk(l, AttnQB), c.QDim())
			add(Blk(l, AttnKB), c.KVDim())
			add(Blk(l, AttnVB), c.KVDim())
		}
		add(Blk(l, AttnOut), c.Dim, c.QDim())
		add(Blk(l, FFNNorm), c.Dim)
		add(Blk(l, FFNGate), c.FFN, c.Dim)
		add(Blk(l, FFNUp), c.FFN, c.Dim)
		add(Blk(l, FFNDown), c.Dim, c.FFN)
	}
	add(NameOutputNorm, c.Dim)
	if !c.TiedEmbed {
		add(NameOutput, c.Vocab, c.Dim)
	}
	return s
}

// NamedShape is a tensor name with its expected shape.
type NamedShape struct {
	Name  string
	Shape []int
}
