package ir

import (
	"strings"
	"testing"
)

var tiny = Config{Arch: "llama", Dim: 8, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 2, FFN: 12, Vocab: 10, SeqLen: 16, RopeTheta: 10000, NormEps: 1e-5}

func TestOpsAndCosts(t *testing.T) {
	ops := tiny.Ops()
	if len(ops) != 2+2*14+1 {
		t.Fatalf("%d ops", len(ops))
	}
	seen := map[string]bool{}
	for _, o := range ops {
		if seen[o.Name] {
			t.Fatalf("op name %s repeated", o.Name)
		}
		seen[o.Name] = true
	}
	find := func(name string) Op {
		for _, o := range ops {
			if o.Name == name {
				return o
			}
		}
		t.Fatalf("no op %s", name)
		return Op{}
	}
	// attn_k: [kvdim=4, dim=8]; prefill of 5: 2*5*8*4 FLOPs, all weight bytes, in+out activations.
	c := tiny.Cost(find("blk.0.attn_k"), Prefill(5), 128)
	if c.FLOPs != 2*5*8*4 || c.WeightBytes != 128 || c.ActBytes != 4*5*(8+4) {
		t.Errorf("attn_k prefill cost %+v", c)
	}
	// decode at context 7: attention reads 7 cached K and V rows of kvdim 4 and writes one.
	a := tiny.Cost(find("blk.1.attention"), DecodeAt(7), 0)
	if a.KVBytes != 2*4*4*7+2*4*4 || a.FLOPs != 4*4*2*7+5*4*7 {
		t.Errorf("attention decode cost %+v", a)
	}
	// the embedding reads only the rows it gathers
	e := tiny.Cost(find("token_embd"), Prefill(3), 10*8*4)
	if e.WeightBytes != 3*8*4 {
		t.Errorf("embedding reads %d bytes for 3 tokens", e.WeightBytes)
	}
	// tied classifier reads token_embd
	tc := tiny
	tc.TiedEmbed = true
	last := tc.Ops()[len(tc.Ops())-1]
	if last.Kind != OpLMHead || last.Weight != NameTokenEmbd {
		t.Errorf("tied classifier op %+v", last)
	}
	if got := tiny.KVCacheBytes(16); got != 2*4*2*4*16 {
		t.Errorf("kv cache %d", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := tiny.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := tiny
	bad.KVHeads = 3
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "kv_heads") {
		t.Errorf("heads 4 / kv 3: %v", err)
	}
	bad = tiny
	bad.Dim = -1
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "dim") {
		t.Errorf("dim -1: %v", err)
	}
}

func TestPackedBytesAndCheck(t *testing.T) {
	// 3 bits = a 2-bit plane (64 per 16-byte block) and a 1-bit plane (128 per block)
	if got := PackedBytes(3, 130); got != 3*16+2*16 {
		t.Errorf("PackedBytes(3, 130) = %d", got)
	}
	tt := &Tensor{Name: "w", Shape: []int{4, 8}, Type: LUT2, Data: make([]byte, PackedBytes(2, 32)),
		Pal: &Palette{GroupSize: 3, LUT: make([]uint16, 2*4)}}
	if err := tt.Check(); err != nil {
		t.Fatal(err)
	}
	tt.Pal.LUT = tt.Pal.LUT[:5]
	if err := tt.Check(); err == nil || !strings.Contains(err.Error(), "LUT has 5 entries, expected 8") {
		t.Errorf("short LUT: %v", err)
	}
}

func TestSyntheticShapes(t *testing.T) {
	m, err := Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.NumParams() != 260032 {
		t.Errorf("synthetic stories260K has %d params, the real one 260032", m.NumParams())
	}
	if _, err := Synthetic("nope", 1); err == nil {
		t.Error("unknown synthetic name accepted")
	}
	c, _ := SyntheticConfig("afm-on-device")
	var nonEmb int64
	for _, ns := range ExpectedShapes(c) {
		if ns.Name != NameTokenEmbd {
			n := int64(1)
			for _, d := range ns.Shape {
				n *= int64(d)
			}
			nonEmb += n
		}
	}
	if nonEmb < 2.5e9 || nonEmb > 2.8e9 {
		t.Errorf("AFM non-embedding parameters %d, Apple: about 2.6B", nonEmb)
	}
}
