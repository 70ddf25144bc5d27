package bundle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/ir"
)

// palettized builds a small mixed model: stories260K with attn_q at 4 bits
// (G=16, row scales) and ffn_down at 3 bits (one LUT), the rest f32.
func palettized(t testing.TB) *ir.Model {
	t.Helper()
	m, err := llama2c.Load("../../testdata/stories260K/stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	out := *m
	out.Tensors = map[string]*ir.Tensor{}
	for n, tt := range m.Tensors {
		out.Tensors[n] = tt
	}
	mkT := func(name string, shape []int, bits, g int, scales bool, codes ...bool) *ir.Tensor {
		src := &ir.Tensor{Shape: shape}
		dt, _ := ir.LUTType(bits)
		idx := make([]uint8, src.Elems())
		for i := range idx {
			idx[i] = uint8((i * 7) % (1 << bits))
		}
		ng := (src.Rows() + g - 1) / g
		lut := make([]uint16, ng<<bits)
		for i := range lut {
			lut[i] = ir.F32ToF16(float32(i%(1<<bits)-(1<<(bits-1))) * 0.01)
		}
		p := &ir.Palette{GroupSize: g, LUT: lut}
		if scales {
			p.Scales = make([]uint16, src.Rows())
			for i := range p.Scales {
				p.Scales[i] = ir.F32ToF16(1 + float32(i)/100)
			}
		}
		if len(codes) > 0 && codes[0] {
			p.ScaleCodes = make([]uint8, src.Rows())
			for i := range p.ScaleCodes {
				p.ScaleCodes[i] = uint8(20 + i)
			}
			p.ExpandScaleCodes()
		}
		return &ir.Tensor{Name: name, Shape: shape, Type: dt, Data: ir.PackIndices(bits, idx), Pal: p}
	}
	mk := func(name string, bits, g int, scales bool) {
		out.Tensors[name] = mkT(name, m.Tensors[name].Shape, bits, g, scales)
	}
	mk("blk.0.attn_q", 4, 16, true)
	mk("blk.1.ffn_down", 3, 64, false)
	out.Tensors["blk.3.attn_v"] = mkT("blk.3.attn_v", m.Tensors["blk.3.attn_v"].Shape, 2, 16, true, true) // one-byte scale codes
	// per-group bits: blk.2.ffn_up (172 x 64) as three parts
	out.Tensors["blk.2.ffn_up"] = &ir.Tensor{Name: "blk.2.ffn_up", Shape: []int{172, 64}, Type: ir.LUTMIX, Parts: []*ir.Tensor{
		mkT("", []int{32, 64}, 4, 16, true), mkT("", []int{128, 64}, 2, 32, false), mkT("", []int{12, 64}, 3, 12, true, true)}}
	out.AdapterSets = []*ir.AdapterSet{{Name: "chat", Adapters: map[string]*ir.Adapter{
		"blk.0.attn_v": {Target: "blk.0.attn_v", Rank: 2, In: 64, Out: 32, Scale: 0.5, A: make([]float32, 128), B: make([]float32, 64)},
	}}}
	out.AdapterSets[0].Adapters["blk.0.attn_v"].A[3] = 0.25
	return &out
}

func TestRoundTripAndDeterminism(t *testing.T) {
	m := palettized(t)
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "a.sqz"), filepath.Join(dir, "b.sqz")
	info, err := Write(p1, m, Extra{SqueezeVersion: "test", Plan: map[string]int{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p2, m, Extra{SqueezeVersion: "test", Plan: map[string]int{"x": 1}}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(p1)
	b, _ := os.ReadFile(p2)
	if !bytes.Equal(a, b) || int64(len(a)) != info.Bytes {
		t.Fatalf("two writes differ (%d vs %d bytes, info %d)", len(a), len(b), info.Bytes)
	}
	got, man, err := Load(p1, Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for _, s := range man.Sections {
		if s.Offset%64 != 0 {
			t.Fatalf("section %s at unaligned offset %d", s.Name, s.Offset)
		}
	}
	row1, row2 := make([]float32, 172), make([]float32, 172)
	for n, tt := range m.Tensors {
		g := got.Tensors[n]
		if g == nil || g.Type != tt.Type || !bytes.Equal(g.Data, tt.Data) || len(g.Parts) != len(tt.Parts) {
			t.Fatalf("tensor %s differs after the round trip", n)
		}
		if tt.Pal != nil && (!bytes.Equal(g.Pal.ScaleCodes, tt.Pal.ScaleCodes) || g.Bytes() != tt.Bytes()) {
			t.Fatalf("tensor %s: scale codes or size differ after the round trip", n)
		}
		for i, p := range tt.Parts {
			if gp := g.Parts[i]; gp.Type != p.Type || !bytes.Equal(gp.Data, p.Data) || gp.Pal.GroupSize != p.Pal.GroupSize || len(gp.Pal.Scales) != len(p.Pal.Scales) ||
				!bytes.Equal(gp.Pal.ScaleCodes, p.Pal.ScaleCodes) {
				t.Fatalf("tensor %s part %d differs after the round trip", n, i)
			}
		}
		for r := 0; r < tt.Rows(); r++ {
			tt.DecodeRow(r, row1[:tt.Cols()])
			g.DecodeRow(r, row2[:tt.Cols()])
			if !equalF(row1[:tt.Cols()], row2[:tt.Cols()]) {
				t.Fatalf("tensor %s row %d decodes differently", n, r)
			}
		}
	}
	// zero copy: f32 sections are views of the mapping
	e := got.Tensors[ir.NameTokenEmbd]
	if &e.Data[0] != &a[0] && e.F32() == nil {
		t.Fatal("no data")
	}
	if got.Tokenizer == nil || !equalI(got.Tokenizer.Encode("Once upon a time", true), []int{1, 403, 407, 261, 378}) {
		t.Fatal("tokenizer did not survive the round trip")
	}
	if len(got.AdapterSets) != 1 || got.AdapterSets[0].Adapters["blk.0.attn_v"].A[3] != 0.25 || got.AdapterSets[0].BaseSHA256 != man.BaseSHA256 {
		t.Fatalf("adapters did not survive the round trip: %+v", got.AdapterSets)
	}
	if got.Meta["base_sha256"] != info.BaseSHA256 {
		t.Fatal("base hash not reported")
	}
	// BaseBytes: the size of the same bundle written without its adapter
	// sets, to the byte, from the manifest of the one with them
	plain := *m
	plain.AdapterSets = nil
	p3 := filepath.Join(dir, "plain.sqz")
	pinfo, err := Write(p3, &plain, Extra{SqueezeVersion: "test", Plan: map[string]int{"x": 1}})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := man.BaseBytes()
	if err != nil || bb != pinfo.Bytes || bb >= info.Bytes {
		t.Fatalf("BaseBytes %d (%v), the bundle without sets is %d bytes, with them %d", bb, err, pinfo.Bytes, info.Bytes)
	}
	_, pman, err := Load(p3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pb, err := pman.BaseBytes(); err != nil || pb != pinfo.Bytes {
		t.Fatalf("BaseBytes of a bundle without sets %d (%v), its size %d", pb, err, pinfo.Bytes)
	}
}

func TestCorruption(t *testing.T) {
	m := palettized(t)
	p := filepath.Join(t.TempDir(), "a.sqz")
	if _, err := Write(p, m, Extra{}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(p)
	for _, cut := range []int{0, 10, 63, 64, 1000, len(good) / 2, len(good) - 1} {
		if _, _, err := Parse("cut.sqz", good[:cut], Options{}); err == nil || !strings.Contains(err.Error(), "cut.sqz") {
			t.Errorf("truncated at %d: %v", cut, err)
		}
	}
	flip := append([]byte(nil), good...)
	flip[200] ^= 0xff // inside token_embd
	if _, _, err := Parse("flip.sqz", flip, Options{Verify: true}); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("flipped weight byte: %v", err)
	}
	man := append([]byte(nil), good...)
	man[len(man)-5] ^= 0x01
	if _, _, err := Parse("man.sqz", man, Options{}); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("corrupted manifest: %v", err)
	}
	ver := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(ver[4:], 99)
	if _, _, err := Parse("ver.sqz", ver, Options{}); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future version: %v", err)
	}
	// a failed write leaves nothing behind
	bad := *m
	bad.Tensors = map[string]*ir.Tensor{}
	for n, tt := range m.Tensors {
		bad.Tensors[n] = tt
	}
	delete(bad.Tensors, "blk.2.attn_k")
	dir := t.TempDir()
	if _, err := Write(filepath.Join(dir, "x.sqz"), &bad, Extra{}); err == nil {
		t.Fatal("model without blk.2.attn_k written")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("failed write left %d files", len(ents))
	}
	if _, err := Write("/nonexistent-dir/x.sqz", m, Extra{}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func equalF(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalI(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tinyModel is a few-kilobyte model (one palettized tensor, no tokenizer)
// so that fuzzing iterations stay fast.
func tinyModel() *ir.Model {
	c := ir.Config{Arch: "llama", Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4, FFN: 16, Vocab: 12, SeqLen: 16,
		RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true}
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Source: "tiny"}
	for _, ns := range ir.ExpectedShapes(c) {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%5) * 0.1
		}
		m.Tensors[ns.Name] = ir.NewF32(ns.Name, v, ns.Shape...)
	}
	q := m.Tensors["blk.0.ffn_up"]
	idx := make([]uint8, q.Elems())
	for i := range idx {
		idx[i] = uint8(i % 4)
	}
	m.Tensors["blk.0.ffn_up"] = &ir.Tensor{Name: q.Name, Shape: q.Shape, Type: ir.LUT2, Data: ir.PackIndices(2, idx),
		Pal: &ir.Palette{GroupSize: 16, LUT: []uint16{ir.F32ToF16(-1), ir.F32ToF16(0), ir.F32ToF16(0.5), ir.F32ToF16(1)}}}
	return m
}

func FuzzParse(f *testing.F) {
	p := filepath.Join(f.TempDir(), "a.sqz")
	if _, err := Write(p, tinyModel(), Extra{}); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(p)
	f.Add(good[:64])
	f.Add(good)
	// a bundle with palettized, lutmix and scale-code tensors and adapters
	pm := filepath.Join(f.TempDir(), "m.sqz")
	if _, err := Write(pm, palettized(f), Extra{}); err != nil {
		f.Fatal(err)
	}
	mixed, _ := os.ReadFile(pm)
	f.Add(mixed)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = Parse("fuzz.sqz", data, Options{Verify: true})
	})
}

// A lutmix entry whose parts do not account for its sections exactly is
// refused, naming the tensor and the part.
func TestLutmixPartsErrors(t *testing.T) {
	byName := map[string]ir.DType{}
	for dt, e := range ir.Encodings {
		byName[e.Name] = dt
	}
	fail := func(f string, a ...any) error { return fmt.Errorf("x.sqz: "+f, a...) }
	// two parts of 16 x 64: lut4 (512 bytes, 16 entries) and lut2 with
	// scales (256 bytes, 4 entries, 16 scales)
	secs := [][]byte{nil, make([]byte, 512+256), make([]byte, 2*(16+4)), make([]byte, 2*16)}
	sec := func(i int, what string) ([]byte, error) { return secs[i], nil }
	good := func() TensorEntry {
		return TensorEntry{Name: "w", Shape: []int{32, 64}, Type: "lutmix", Data: 1, LUT: 2, Scales: 3,
			Parts: []PartEntry{{Rows: 16, Type: "lut4", GroupSize: 16}, {Rows: 16, Type: "lut2", GroupSize: 16, Scales: true}}}
	}
	e := good()
	tt, err := readParts(e, &ir.Tensor{Name: "w", Shape: e.Shape, Type: ir.LUTMIX}, secs[1], sec, byName, fail)
	if err != nil || tt.Check() != nil || len(tt.Parts[1].Pal.Scales) != 16 {
		t.Fatalf("good entry: %v", err)
	}
	cases := map[string]func(e *TensorEntry){
		"left over":      func(e *TensorEntry) { e.Parts[1].Scales = false },
		"too short":      func(e *TensorEntry) { e.Parts[0].Rows = 40 },
		"expected lut1":  func(e *TensorEntry) { e.Parts[0].Type = "f16" },
		"group size 17":  func(e *TensorEntry) { e.Parts[0].GroupSize = 17 },
		"needs a matrix": func(e *TensorEntry) { e.Parts = nil },
	}
	for want, mutate := range cases {
		e := good()
		mutate(&e)
		_, err := readParts(e, &ir.Tensor{Name: "w", Shape: e.Shape, Type: ir.LUTMIX}, secs[1], sec, byName, fail)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `"w"`) {
			t.Errorf("%s: %v", want, err)
		}
	}
}
