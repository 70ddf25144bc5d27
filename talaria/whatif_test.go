package talaria

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func TestParseWhatIf(t *testing.T) {
	ovs, err := ParseWhatIf("blk.*.ffn_*=2, blk.0.*=4,output=16")
	if err != nil {
		t.Fatal(err)
	}
	want := []Override{{"blk.*.ffn_*", 2}, {"blk.0.*", 4}, {"output", 16}}
	if len(ovs) != 3 || ovs[0] != want[0] || ovs[1] != want[1] || ovs[2] != want[2] {
		t.Fatalf("parsed %+v", ovs)
	}
	for _, c := range []struct{ in, want string }{
		{"blk.*.ffn_*", "entry 1 \"blk.*.ffn_*\": expected PATTERN=BITS"},
		{"blk.*=5", "bits \"5\", expected"},
		{"blk.*=x", "bits \"x\""},
		{"blk.[=4", "bad glob pattern"},
		{"a=4,,b=2", "entry 2 is empty"},
		{"=4", "expected PATTERN=BITS"},
	} {
		if _, err := ParseWhatIf(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

func TestApplyOverridesOrder(t *testing.T) {
	c := tinyConfig()
	c.Layers = 2
	ovs, _ := ParseWhatIf("blk.*.ffn_*=2,blk.0.*=4")
	base := Plan{Tensors: map[string]TensorEncoding{"blk.1.ffn_up": {Bits: 8, GroupSize: 4, PerRowScale: true}}}
	p, err := ApplyOverrides(TensorNames(c), base, ovs)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]TensorEncoding{
		"blk.0.ffn_gate": {Bits: 4},                                  // later entry wins
		"blk.0.attn_q":   {Bits: 4},                                  // only the second matches
		"blk.0.ffn_norm": {Bits: 4},                                  // blk.0.* matches norms too
		"blk.1.ffn_down": {Bits: 2},                                  // only the first matches
		"blk.1.ffn_up":   {Bits: 2, GroupSize: 4, PerRowScale: true}, // keeps its grouping
	}
	for n, want := range cases {
		if got := p.Tensors[n]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", n, got, want)
		}
	}
	if _, ok := p.Tensors["blk.1.attn_q"]; ok {
		t.Error("blk.1.attn_q should be untouched")
	}
	if base.Tensors["blk.1.ffn_up"].Bits != 8 {
		t.Error("ApplyOverrides modified its input plan")
	}
	if _, err := ApplyOverrides(TensorNames(c), base, []Override{{"blk.*.mlp_*", 2}}); err == nil || !strings.Contains(err.Error(), "matches no tensor") {
		t.Errorf("no-match error: %v", err)
	}
}

func TestWhatIfDeltas(t *testing.T) {
	c, _ := ir.SyntheticConfig("stories110M")
	d, _ := Builtin("rpi5")
	base := Plan{BPW: 4}
	ovs, _ := ParseWhatIf("blk.*.ffn_*=2,blk.0.*=4")
	dmg := Damage{}
	for _, n := range TensorNames(c) {
		dmg[n] = map[int]float64{2: 0.5, 4: 0.1}
	}
	opts := Options{Config: c, Model: "synthetic:stories110M", Device: d, Plan: base, PrefillTokens: 128}
	w, err := WhatIf(opts, ovs, dmg)
	if err != nil {
		t.Fatal(err)
	}
	// blk.1..11 ffn_gate/up/down move 4 -> 2 bits (33 tensors); the glob
	// also matches ffn_norm, but norm vectors are never palettized. blk.0.*
	// (attention and ffn at BPW 4 -> lut4 with one LUT: +32 bytes each)
	// changes too.
	if len(w.Changed) != 33+7 {
		t.Errorf("changed %d tensors: %v", len(w.Changed), w.Changed)
	}
	elems := int64(c.FFN * c.Dim)
	want := int64(0)
	for l := 1; l < 12; l++ {
		want += 3 * (ir.PackedBytes(2, int(elems)) + 4*2 - elems*4/8)
	}
	for _, k := range []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"} {
		want += 16 * 2 // a 16-entry float16 LUT on top of the 4-bit indices
		_ = k
	}
	if got := w.Totals.WeightBytesAfter - w.Totals.WeightBytesBefore; got != want {
		t.Errorf("size delta %d, want %d", got, want)
	}
	// Memory-bound decode on a Pi: halving the FFN bytes must cut latency.
	for _, o := range w.Ops {
		if strings.HasPrefix(o.Name, "blk.5.ffn_") && !(o.LatencyUsAfter < o.LatencyUsBefore && o.EnergyUJAfter < o.EnergyUJBefore) {
			t.Errorf("%s: latency %v -> %v energy %v -> %v", o.Name, o.LatencyUsBefore, o.LatencyUsAfter, o.EnergyUJBefore, o.EnergyUJAfter)
		}
	}
	if !(w.Totals.DecodeMsAfter < w.Totals.DecodeMsBefore) {
		t.Errorf("decode %v -> %v", w.Totals.DecodeMsBefore, w.Totals.DecodeMsAfter)
	}
	// Damage: 33 tensors 0.1 -> 0.5; blk.0's 7 linears 0.1 -> 0.1.
	if !w.Totals.DamageKnown {
		t.Fatalf("damage unknown: %v", w.Totals.DamageMissingTensors)
	}
	near(t, "damage before", w.Totals.DamageBefore, 40*0.1)
	near(t, "damage after", w.Totals.DamageAfter, 33*0.5+7*0.1)
	var buf bytes.Buffer
	if err := RenderWhatIf(&buf, w); err != nil {
		t.Fatal(err)
	}
	if s := buf.String(); !strings.Contains(s, "TOTAL") || !strings.Contains(s, "blk.1.ffn_up") || !strings.Contains(s, "4 → 2") {
		t.Errorf("what-if table:\n%s", s)
	}
	// A uniform 3.7 bpw base has no integer bits: damage is reported unknown.
	opts.Plan = UniformBPW(3.7)
	w2, err := WhatIf(opts, ovs, dmg)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Totals.DamageKnown || len(w2.Totals.DamageMissingTensors) == 0 {
		t.Error("fractional base bits should make damage unknown")
	}
}
