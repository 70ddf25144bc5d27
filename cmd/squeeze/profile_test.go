package main

import (
	"encoding/json"
	"math"
	"testing"
)

// Apple's published figures for its ~3B on-device model on iPhone 15 Pro:
// ~0.6 ms per prompt token and ~30 decode tokens/s; the profile must land
// within 25% of each from the device's published hardware figures alone.
func TestProfileAFMOnIPhone(t *testing.T) {
	out, _, err := squeeze(t, "profile", "--synthetic", "afm-on-device", "--device", "iphone15pro-ane", "--bpw", "3.7", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Totals map[string]any   `json:"totals"`
		Ops    []map[string]any `json:"ops"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ttft_ms", "ms_per_prompt_token", "decode_tokens_per_s", "energy_mj_per_token", "peak_memory_bytes"} {
		if _, ok := r.Totals[k]; !ok {
			t.Errorf("totals.%s missing", k)
		}
	}
	if len(r.Ops) == 0 {
		t.Fatal("no ops")
	}
	for _, k := range []string{"name", "kind", "bits", "latency_us", "energy_uj", "weight_bytes", "flops"} {
		if _, ok := r.Ops[0][k]; !ok {
			t.Errorf("ops[].%s missing", k)
		}
	}
	if v := r.Totals["ms_per_prompt_token"].(float64); math.Abs(v-0.6)/0.6 > 0.25 {
		t.Errorf("ms per prompt token %.3f, Apple published ~0.6", v)
	}
	if v := r.Totals["decode_tokens_per_s"].(float64); math.Abs(v-30)/30 > 0.25 {
		t.Errorf("decode %.1f tokens/s, Apple published ~30", v)
	}
}

func TestProfileWhatIfOnRealModel(t *testing.T) {
	out, _, err := squeeze(t, "profile", stories, "--device", "rpi5", "--what-if", "blk.*.ffn_*=2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Changed []string `json:"changed_tensors"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Changed) != 15 { // ffn_gate, ffn_up, ffn_down in 5 layers; norms untouched
		t.Errorf("what-if changed %d tensors: %v", len(r.Changed), r.Changed)
	}
}
