package ir

import "fmt"

// Config is the architecture of a Llama-family decoder.
type Config struct {
	Arch      string  `json:"arch"` // "llama" (Mistral and Qwen2 map onto it; Qwen2 sets QKVBias)
	Dim       int     `json:"dim"`
	Layers    int     `json:"layers"`
	Heads     int     `json:"heads"`
	KVHeads   int     `json:"kv_heads"`
	HeadDim   int     `json:"head_dim"`
	FFN       int     `json:"ffn"`
	Vocab     int     `json:"vocab"`
	SeqLen    int     `json:"seq_len"`
	RopeTheta float64 `json:"rope_theta"`
	NormEps   float64 `json:"norm_eps"`
	TiedEmbed bool    `json:"tied_embeddings"`
	QKVBias   bool    `json:"qkv_bias"`
	RopeNeoX  bool    `json:"rope_neox"` // rotate halves (HF layout without permutation) instead of adjacent pairs
}

// QDim is the width of the query projection output (heads x head dim).
func (c Config) QDim() int { return c.Heads * c.HeadDim }

// KVDim is the width of the key/value projection output.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim }

// Validate checks that the configuration is self-consistent and in range.
func (c Config) Validate() error {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("config: %s = %d, expected %d..%d", name, v, lo, hi)
		}
		return nil
	}
	for _, e := range []error{
		check("dim", c.Dim, 1, 1<<16),
		check("layers", c.Layers, 1, 1024),
		check("heads", c.Heads, 1, 1024),
		check("kv_heads", c.KVHeads, 1, 1024),
		check("head_dim", c.HeadDim, 1, 4096),
		check("ffn", c.FFN, 1, 1<<18),
		check("vocab", c.Vocab, 1, 1<<22),
		check("seq_len", c.SeqLen, 1, 1<<24),
	} {
		if e != nil {
			return e
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("config: heads = %d is not a multiple of kv_heads = %d", c.Heads, c.KVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("config: head_dim = %d must be even for RoPE", c.HeadDim)
	}
	if !(c.RopeTheta > 0) {
		return fmt.Errorf("config: rope_theta = %v, expected > 0", c.RopeTheta)
	}
	if !(c.NormEps > 0) || c.NormEps > 1 {
		return fmt.Errorf("config: norm_eps = %v, expected in (0, 1]", c.NormEps)
	}
	return nil
}
