package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/squeeze-ml/squeeze/ir"
)

// hfConfig is the part of config.json squeeze reads. Pointers tell "absent"
// from zero.
type hfConfig struct {
	Architectures    []string        `json:"architectures"`
	ModelType        string          `json:"model_type"`
	HiddenSize       *int            `json:"hidden_size"`
	Layers           *int            `json:"num_hidden_layers"`
	Heads            *int            `json:"num_attention_heads"`
	KVHeads          *int            `json:"num_key_value_heads"`
	HeadDim          *int            `json:"head_dim"`
	Intermediate     *int            `json:"intermediate_size"`
	VocabSize        *int            `json:"vocab_size"`
	MaxPos           *int            `json:"max_position_embeddings"`
	RopeTheta        *float64        `json:"rope_theta"`
	RMSNormEps       *float64        `json:"rms_norm_eps"`
	TieEmbeddings    *bool           `json:"tie_word_embeddings"`
	BOS              json.RawMessage `json:"bos_token_id"`
	EOS              json.RawMessage `json:"eos_token_id"`
	RopeScaling      json.RawMessage `json:"rope_scaling"`
	SlidingWindow    *int            `json:"sliding_window"`
	UseSlidingWindow *bool           `json:"use_sliding_window"`
	HiddenAct        *string         `json:"hidden_act"`
	AttentionBias    *bool           `json:"attention_bias"`
	MLPBias          *bool           `json:"mlp_bias"`
	TorchDType       string          `json:"torch_dtype"`
}

// arch is what squeeze knows about one HF architecture.
type arch struct {
	qkvBias bool
}

var archs = map[string]arch{
	"LlamaForCausalLM":   {},
	"MistralForCausalLM": {},
	"Qwen2ForCausalLM":   {qkvBias: true},
}

// parsedConfig is config.json turned into ir.Config plus what else matters.
type parsedConfig struct {
	Config   ir.Config
	Arch     string
	BOS, EOS int // -1 if absent
	Notes    []string
}

// parseConfig reads config.json bytes; file names it in errors.
func parseConfig(file string, data []byte) (*parsedConfig, error) {
	var c hfConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(c.Architectures) != 1 {
		return nil, fmt.Errorf("%s: architectures = %v, expected exactly one of %s", file, c.Architectures, knownArchs())
	}
	name := c.Architectures[0]
	a, ok := archs[name]
	if !ok {
		return nil, fmt.Errorf("%s: architecture %q is not supported; supported: %s", file, name, knownArchs())
	}
	need := func(field string, p *int) (int, error) {
		if p == nil {
			return 0, fmt.Errorf("%s: field %q is missing", file, field)
		}
		return *p, nil
	}
	pc := &parsedConfig{Arch: name, BOS: -1, EOS: -1}
	cfg := ir.Config{Arch: "llama", QKVBias: a.qkvBias, RopeNeoX: true}
	var err error
	if cfg.Dim, err = need("hidden_size", c.HiddenSize); err != nil {
		return nil, err
	}
	if cfg.Layers, err = need("num_hidden_layers", c.Layers); err != nil {
		return nil, err
	}
	if cfg.Heads, err = need("num_attention_heads", c.Heads); err != nil {
		return nil, err
	}
	if cfg.FFN, err = need("intermediate_size", c.Intermediate); err != nil {
		return nil, err
	}
	if cfg.Vocab, err = need("vocab_size", c.VocabSize); err != nil {
		return nil, err
	}
	cfg.KVHeads = cfg.Heads
	if c.KVHeads != nil {
		cfg.KVHeads = *c.KVHeads
	}
	if c.HeadDim != nil {
		cfg.HeadDim = *c.HeadDim
	} else {
		if cfg.Heads <= 0 || cfg.Dim%cfg.Heads != 0 {
			return nil, fmt.Errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d and head_dim is absent", file, cfg.Dim, cfg.Heads)
		}
		cfg.HeadDim = cfg.Dim / cfg.Heads
	}
	cfg.SeqLen = 2048 // transformers' LlamaConfig default
	if c.MaxPos != nil {
		cfg.SeqLen = *c.MaxPos
	}
	cfg.RopeTheta = 10000
	if c.RopeTheta != nil {
		cfg.RopeTheta = *c.RopeTheta
	}
	cfg.NormEps = 1e-6 // transformers' LlamaConfig default
	if c.RMSNormEps != nil {
		cfg.NormEps = *c.RMSNormEps
	}
	if c.TieEmbeddings != nil {
		cfg.TiedEmbed = *c.TieEmbeddings
	}

	// Features squeeze's runtime does not implement: refuse rather than run
	// a different model.
	if rs := strings.TrimSpace(string(c.RopeScaling)); rs != "" && rs != "null" {
		var s struct {
			Type     string `json:"type"`
			RopeType string `json:"rope_type"`
		}
		_ = json.Unmarshal(c.RopeScaling, &s)
		t := s.RopeType
		if t == "" {
			t = s.Type
		}
		if t != "default" {
			return nil, fmt.Errorf("%s: rope_scaling type %q is not supported (only plain RoPE)", file, t)
		}
	}
	if c.HiddenAct != nil && *c.HiddenAct != "silu" {
		return nil, fmt.Errorf("%s: hidden_act %q is not supported (only \"silu\")", file, *c.HiddenAct)
	}
	if c.AttentionBias != nil && *c.AttentionBias {
		return nil, fmt.Errorf("%s: attention_bias = true is not supported for %s (it biases o_proj too)", file, name)
	}
	if c.MLPBias != nil && *c.MLPBias {
		return nil, fmt.Errorf("%s: mlp_bias = true is not supported", file)
	}
	// Sliding-window attention: a window at least as long as the context is
	// plain attention, so cap the context at the window (exact) instead of
	// refusing the model. Qwen2 applies it only when use_sliding_window.
	if c.SlidingWindow != nil && (name != "Qwen2ForCausalLM" || (c.UseSlidingWindow != nil && *c.UseSlidingWindow)) {
		w := *c.SlidingWindow
		if w <= 0 {
			return nil, fmt.Errorf("%s: sliding_window = %d, expected > 0 or null", file, w)
		}
		if w < cfg.SeqLen {
			pc.Notes = append(pc.Notes, fmt.Sprintf("sliding_window %d < max_position_embeddings %d: context capped at %d (sliding-window attention is not implemented)", w, cfg.SeqLen, w))
			cfg.SeqLen = w
		}
	}
	if pc.BOS, err = tokenID(file, "bos_token_id", c.BOS); err != nil {
		return nil, err
	}
	if pc.EOS, err = tokenID(file, "eos_token_id", c.EOS); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	pc.Config = cfg
	return pc, nil
}

// tokenID reads an int, a list of ints (first one wins) or null.
func tokenID(file, field string, raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return -1, nil
	}
	var v int
	if err := json.Unmarshal(raw, &v); err == nil {
		return v, nil
	}
	var l []int
	if err := json.Unmarshal(raw, &l); err == nil {
		if len(l) == 0 {
			return -1, nil
		}
		return l[0], nil
	}
	return 0, fmt.Errorf("%s: %s = %.40s, expected an integer, a list of integers or null", file, field, s)
}

func knownArchs() string {
	return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"
}
