package hf

import (
	"strconv"
	"strings"

	"github.com/squeeze-ml/squeeze/ir"
)

// Per-layer HF names (after "model.layers.N.") and their canonical kinds.
var layerNames = map[string]string{
	"self_attn.q_proj.weight":         ir.AttnQ,
	"self_attn.k_proj.weight":         ir.AttnK,
	"self_attn.v_proj.weight":         ir.AttnV,
	"self_attn.o_proj.weight":         ir.AttnOut,
	"self_attn.q_proj.bias":           ir.AttnQB,
	"self_attn.k_proj.bias":           ir.AttnKB,
	"self_attn.v_proj.bias":           ir.AttnVB,
	"mlp.gate_proj.weight":            ir.FFNGate,
	"mlp.up_proj.weight":              ir.FFNUp,
	"mlp.down_proj.weight":            ir.FFNDown,
	"input_layernorm.weight":          ir.AttnNorm,
	"post_attention_layernorm.weight": ir.FFNNorm,
}

var globalNames = map[string]string{
	"model.embed_tokens.weight": ir.NameTokenEmbd,
	"model.norm.weight":         ir.NameOutputNorm,
	"lm_head.weight":            ir.NameOutput,
}

// canonicalName maps an HF tensor name to squeeze's, or "" if unknown.
func canonicalName(hf string) string {
	if c, ok := globalNames[hf]; ok {
		return c
	}
	rest, ok := strings.CutPrefix(hf, "model.layers.")
	if !ok {
		return ""
	}
	num, suffix, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 || strconv.Itoa(l) != num {
		return ""
	}
	kind, ok := layerNames[suffix]
	if !ok {
		return ""
	}
	return ir.Blk(l, kind)
}

// hfName maps a canonical name to the HF one (the inverse of canonicalName).
func hfName(canon string) string {
	for h, c := range globalNames {
		if c == canon {
			return h
		}
	}
	rest, ok := strings.CutPrefix(canon, "blk.")
	if !ok {
		return ""
	}
	num, kind, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	for h, k := range layerNames {
		if k == kind {
			return "model.layers." + num + "." + h
		}
	}
	return ""
}
