package hf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unsafe"

	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// ---- fixtures built from scratch ------------------------------------------

// tinyCfg is a tiny random Llama: dim 16, 2 layers, 4 heads, 2 KV heads,
// FFN 24, vocab 512 (stories260K's tok512).
func tinyCfg() ir.Config {
	return ir.Config{Arch: "llama", Dim: 16, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4, FFN: 24, Vocab: 512,
		SeqLen: 128, RopeTheta: 10000, NormEps: 1e-5, RopeNeoX: true}
}

// readTok512 reads testdata's llama2.c tokenizer.bin (float32 score, int32
// length, bytes per token, after an int32 max length) as SentencePiece.
func readTok512(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	b, err := os.ReadFile("../../testdata/stories260K/tok512.bin")
	if err != nil {
		t.Fatal(err)
	}
	tok := &tokenizer.Tokenizer{Kind: tokenizer.SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddSpacePrefix: true}
	for off := 4; off < len(b); {
		score := math.Float32frombits(binary.LittleEndian.Uint32(b[off:]))
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		s := string(b[off+8 : off+8+n])
		off += 8 + n
		if len(tok.Tokens) > 2 {
			s = strings.ReplaceAll(s, " ", "▁")
		}
		tok.Tokens = append(tok.Tokens, s)
		tok.Scores = append(tok.Scores, score)
	}
	if err := tok.Init(); err != nil {
		t.Fatal(err)
	}
	return tok
}

type stSpec struct {
	dtype string
	shape []int
	data  []byte
}

// writeST is an independent safetensors writer for the tests: tensors in
// name order, packed; pad pads the header to a multiple of 8 (otherwise the
// data section starts at 8+len(header) as it falls).
func writeST(t testing.TB, path string, ts map[string]stSpec, pad bool) {
	t.Helper()
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	sort.Strings(names)
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := 0
	for _, n := range names {
		s := ts[n]
		hdr[n] = map[string]any{"dtype": s.dtype, "shape": s.shape, "data_offsets": []int{off, off + len(s.data)}}
		off += len(s.data)
	}
	js, _ := json.Marshal(hdr)
	if pad {
		for (8+len(js))%8 != 0 {
			js = append(js, ' ')
		}
	} else {
		for (8+len(js))%4 != 2 {
			js = append(js, ' ')
		}
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	out = append(out, js...)
	for _, n := range names {
		out = append(out, ts[n].data...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func encode(dtype string, v []float32) []byte {
	var b []byte
	for _, x := range v {
		switch dtype {
		case "F32":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		case "F16":
			b = binary.LittleEndian.AppendUint16(b, ir.F32ToF16(x))
		case "BF16":
			b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(x)>>16))
		}
	}
	return b
}

type fixture struct {
	arch    string // HF architecture
	dtype   string
	shards  int
	tied    bool
	lmHead  bool // write lm_head.weight even when tied
	pad     bool // 8-align the data section
	noTok   bool
	cfgEdit func(map[string]any)
}

// hfConfigJSON is config.json for c.
func hfConfigJSON(c ir.Config, arch string, tied bool) map[string]any {
	return map[string]any{
		"architectures": []string{arch}, "hidden_size": c.Dim, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KVHeads, "intermediate_size": c.FFN,
		"vocab_size": c.Vocab, "max_position_embeddings": c.SeqLen, "rms_norm_eps": c.NormEps,
		"tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
		"rotary_emb_base_ignored": 1,
	}
}

// build writes an HF directory with random weights and returns the float32
// values written, by HF name.
func (f fixture) build(t testing.TB, dir string) map[string][]float32 {
	t.Helper()
	c := tinyCfg()
	c.TiedEmbed = f.tied
	c.QKVBias = f.arch == "Qwen2ForCausalLM"
	rng := rand.New(rand.NewPCG(1, 2))
	vals := map[string][]float32{}
	specs := map[string]stSpec{}
	shapes := ir.ExpectedShapes(c)
	if f.tied && f.lmHead {
		shapes = append(shapes, ir.NamedShape{Name: ir.NameOutput, Shape: []int{c.Vocab, c.Dim}})
	}
	for _, ns := range shapes {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		hn := hfName(ns.Name)
		vals[hn] = v
		specs[hn] = stSpec{f.dtype, ns.Shape, encode(f.dtype, v)}
	}
	// an extra tensor every loader must ignore
	specs["model.layers.0.self_attn.rotary_emb.inv_freq"] = stSpec{"F32", []int{2}, encode("F32", []float32{1, 0.01})}
	if f.shards <= 1 {
		writeST(t, filepath.Join(dir, "model.safetensors"), specs, f.pad)
	} else {
		parts := make([]map[string]stSpec, f.shards)
		wm := map[string]string{}
		i := 0
		names := make([]string, 0, len(specs))
		for n := range specs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			k := i % f.shards
			if parts[k] == nil {
				parts[k] = map[string]stSpec{}
			}
			parts[k][n] = specs[n]
			wm[n] = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, f.shards)
			i++
		}
		for k, p := range parts {
			writeST(t, filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, f.shards)), p, f.pad)
		}
		js, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": wm})
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), js, 0o644)
	}
	cfg := hfConfigJSON(c, f.arch, f.tied)
	if f.cfgEdit != nil {
		f.cfgEdit(cfg)
	}
	js, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644)
	if !f.noTok {
		tj, err := tokenizer.MarshalJSON(readTok512(t))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
	}
	return vals
}

func mustLoad(t *testing.T, dir string) *ir.Model {
	t.Helper()
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// checkValues compares every loaded tensor to the values written.
func checkValues(t *testing.T, m *ir.Model, vals map[string][]float32, dtype string) {
	t.Helper()
	for _, name := range m.TensorNames() {
		tn := m.Tensors[name]
		want := encode(dtype, vals[hfName(name)])
		if string(tn.Data) != string(want) {
			t.Fatalf("tensor %s: bytes differ from what was written", name)
		}
		wantType := map[string]ir.DType{"F32": ir.F32, "F16": ir.F16, "BF16": ir.BF16}[dtype]
		if tn.Type != wantType {
			t.Fatalf("tensor %s: type %v, want %v", name, tn.Type, wantType)
		}
	}
}

// ---- loading -------------------------------------------------------------

func TestLoadSingleFileF32ZeroCopy(t *testing.T) {
	dir := t.TempDir()
	vals := fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true}.build(t, dir)
	m := mustLoad(t, dir)
	c := m.Config
	want := tinyCfg()
	if c != want {
		t.Fatalf("config %+v\nwant   %+v", c, want)
	}
	checkValues(t, m, vals, "F32")
	if _, ok := m.Meta["hf.copied"]; ok {
		t.Errorf("aligned file copied tensors: %s", m.Meta["hf.copied"])
	}
	// Zero copy: two tensors sit at the distance their file offsets have.
	data, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	hdr, err := parseSafetensors("x", data)
	if err != nil {
		t.Fatal(err)
	}
	a, b := m.Tensors["blk.0.attn_q"], m.Tensors["blk.1.ffn_up"]
	da := uintptr(unsafe.Pointer(&b.Data[0])) - uintptr(unsafe.Pointer(&a.Data[0]))
	df := hdr[hfName("blk.1.ffn_up")].Begin - hdr[hfName("blk.0.attn_q")].Begin
	if int64(da) != df {
		t.Errorf("tensors are %d bytes apart in memory, %d in the file: not one mapping", da, df)
	}
	if m.Tokenizer == nil || m.Tokenizer.BOS != 1 || m.Tokenizer.EOS != 2 {
		t.Fatalf("tokenizer %v", m.Tokenizer)
	}
	ref := readTok512(t)
	for _, s := range []string{"Once upon a time, there was a little girl.", "Lily  and\nBen 123!"} {
		if g, w := m.Tokenizer.Encode(s, true), ref.Encode(s, true); !reflect.DeepEqual(g, w) {
			t.Errorf("Encode(%q) = %v, tok512 gives %v", s, g, w)
		}
	}
}

func TestLoadMisalignedF32IsCopied(t *testing.T) {
	dir := t.TempDir()
	vals := fixture{arch: "MistralForCausalLM", dtype: "F32", pad: false}.build(t, dir)
	m := mustLoad(t, dir)
	checkValues(t, m, vals, "F32")
	if !strings.Contains(m.Meta["hf.copied"], "misaligned") {
		t.Errorf("Meta[hf.copied] = %q", m.Meta["hf.copied"])
	}
	for _, name := range m.TensorNames() {
		if p := uintptr(unsafe.Pointer(&m.Tensors[name].Data[0])); p%4 != 0 {
			t.Fatalf("tensor %s is not 4-aligned", name)
		}
	}
}

func TestLoadShardedF16BF16(t *testing.T) {
	for _, dt := range []string{"F16", "BF16"} {
		dir := t.TempDir()
		vals := fixture{arch: "LlamaForCausalLM", dtype: dt, shards: 2, pad: true, noTok: true}.build(t, dir)
		m := mustLoad(t, dir)
		checkValues(t, m, vals, dt)
		if m.Tokenizer != nil {
			t.Error("tokenizer without tokenizer.json")
		}
		// decoded values match the float32 originals within the format's precision
		got := m.Tensors["blk.1.attn_k"].F32()
		for i, v := range vals[hfName("blk.1.attn_k")] {
			tol := math.Abs(float64(v)) * map[string]float64{"F16": 1e-3, "BF16": 8e-3}[dt]
			if math.Abs(float64(got[i]-v)) > tol+1e-7 {
				t.Fatalf("%s: value %d = %v, want %v", dt, i, got[i], v)
			}
		}
	}
}

func TestLoadQwen2Biases(t *testing.T) {
	dir := t.TempDir()
	vals := fixture{arch: "Qwen2ForCausalLM", dtype: "F32", pad: true}.build(t, dir)
	m := mustLoad(t, dir)
	if !m.Config.QKVBias {
		t.Fatal("QKVBias not set")
	}
	checkValues(t, m, vals, "F32")
	for _, n := range []string{"blk.0.attn_q.bias", "blk.1.attn_k.bias", "blk.1.attn_v.bias"} {
		if _, ok := m.Tensors[n]; !ok {
			t.Errorf("missing %s", n)
		}
	}
}

func TestLoadTiedEmbeddingsShared(t *testing.T) {
	dir := t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", tied: true, lmHead: true, pad: true}.build(t, dir)
	m := mustLoad(t, dir)
	if _, ok := m.Tensors[ir.NameOutput]; ok {
		t.Fatal("tied model has an output tensor")
	}
	if m.Classifier() != m.Tensors[ir.NameTokenEmbd] || &m.Classifier().Data[0] != &m.Tensors[ir.NameTokenEmbd].Data[0] {
		t.Fatal("classifier does not share token_embd's data")
	}
}

// ---- writing ---------------------------------------------------------------

func TestWriteLoadRoundTripBitIdentical(t *testing.T) {
	for _, f := range []fixture{
		{arch: "LlamaForCausalLM", dtype: "F32", pad: true},
		{arch: "Qwen2ForCausalLM", dtype: "F32", pad: true, tied: true},
	} {
		src := t.TempDir()
		f.build(t, src)
		m := mustLoad(t, src)
		out := filepath.Join(t.TempDir(), "out")
		if err := Write(out, m, ir.F32); err != nil {
			t.Fatal(err)
		}
		m2 := mustLoad(t, out)
		if m2.Config != m.Config {
			t.Fatalf("config %+v\nwant   %+v", m2.Config, m.Config)
		}
		if !reflect.DeepEqual(m2.TensorNames(), m.TensorNames()) {
			t.Fatalf("tensor names differ: %v vs %v", m2.TensorNames(), m.TensorNames())
		}
		for _, n := range m.TensorNames() {
			if string(m2.Tensors[n].Data) != string(m.Tensors[n].Data) {
				t.Fatalf("%s: tensor %s differs after round trip", f.arch, n)
			}
		}
		t1, t2 := m.Tokenizer, m2.Tokenizer
		if !reflect.DeepEqual(t1.Tokens, t2.Tokens) || !reflect.DeepEqual(t1.Types, t2.Types) || t1.BOS != t2.BOS || t1.EOS != t2.EOS {
			t.Fatal("tokenizer changed in round trip")
		}
		text, _ := os.ReadFile("../../testdata/tinystories/dev.txt")
		if !reflect.DeepEqual(t1.Encode(string(text[:5000]), true), t2.Encode(string(text[:5000]), true)) {
			t.Fatal("encodings differ after round trip")
		}
		// Writing is deterministic.
		out2 := filepath.Join(t.TempDir(), "out")
		if err := Write(out2, m, ir.F32); err != nil {
			t.Fatal(err)
		}
		for _, fn := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
			a, _ := os.ReadFile(filepath.Join(out, fn))
			b, _ := os.ReadFile(filepath.Join(out2, fn))
			if len(a) == 0 || string(a) != string(b) {
				t.Errorf("%s: not deterministic (or empty)", fn)
			}
		}
	}
}

func TestWriteF16AndReplaceExisting(t *testing.T) {
	src := t.TempDir()
	vals := fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true}.build(t, src)
	m := mustLoad(t, src)
	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "stale.txt"), []byte("old"), 0o644)
	if err := Write(out, m, ir.F16); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "stale.txt")); err == nil {
		t.Error("old directory content survived the replacement")
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		t.Errorf("temporary directories left behind: %d entries", len(ents))
	}
	m2 := mustLoad(t, out)
	checkValues(t, m2, vals, "F16")
	data, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if n := binary.LittleEndian.Uint64(data); (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-aligned", 8+n)
	}
	if !strings.Contains(string(data[8:200]), `"__metadata__":{"format":"pt"}`) {
		t.Errorf("no __metadata__ format pt in header")
	}
}

func TestWriteErrors(t *testing.T) {
	src := t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, noTok: true}.build(t, src)
	m := mustLoad(t, src)
	if err := Write(filepath.Join(t.TempDir(), "x"), m, ir.BF16); err == nil {
		t.Error("bf16 write accepted")
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "x"), m, ir.F32); err == nil {
		t.Error("write under a missing parent accepted")
	}
	q := m.Tensors["blk.0.attn_q"]
	pal := &ir.Tensor{Name: q.Name, Shape: q.Shape, Type: ir.LUT2, Data: make([]byte, ir.PackedBytes(2, q.Elems())),
		Pal: &ir.Palette{GroupSize: q.Rows(), LUT: make([]uint16, 4)}}
	m.Tensors["blk.0.attn_q"] = pal
	dir := filepath.Join(t.TempDir(), "x")
	err := Write(dir, m, ir.F32)
	if err == nil || !strings.Contains(err.Error(), "palettized") || !strings.Contains(err.Error(), "blk.0.attn_q") {
		t.Errorf("palettized write: %v", err)
	}
	if _, e := os.Stat(dir); e == nil {
		t.Error("failed write left a directory")
	}
}

// ropeInterleaved rotates adjacent pairs (2i, 2i+1) of each head (llama2.c).
func ropeInterleaved(v []float64, hd, pos int, theta float64) {
	for h := 0; h < len(v)/hd; h++ {
		for i := 0; i < hd/2; i++ {
			a := float64(pos) * math.Pow(theta, -float64(2*i)/float64(hd))
			x, y := v[h*hd+2*i], v[h*hd+2*i+1]
			v[h*hd+2*i], v[h*hd+2*i+1] = x*math.Cos(a)-y*math.Sin(a), x*math.Sin(a)+y*math.Cos(a)
		}
	}
}

// ropeNeoX rotates (i, i+hd/2) of each head (HF rotate_half).
func ropeNeoX(v []float64, hd, pos int, theta float64) {
	for h := 0; h < len(v)/hd; h++ {
		for i := 0; i < hd/2; i++ {
			a := float64(pos) * math.Pow(theta, -float64(2*i)/float64(hd))
			x, y := v[h*hd+i], v[h*hd+i+hd/2]
			v[h*hd+i], v[h*hd+i+hd/2] = x*math.Cos(a)-y*math.Sin(a), x*math.Sin(a)+y*math.Cos(a)
		}
	}
}

func matvec(w []float32, rows, cols int, x []float64) []float64 {
	out := make([]float64, rows)
	for r := range out {
		for c := 0; c < cols; c++ {
			out[r] += float64(w[r*cols+c]) * x[c]
		}
	}
	return out
}

// A model in llama2.c's interleaved layout written to HF and read back gives
// the same attention scores with HF's rotate-half RoPE.
func TestWriteRopePermutation(t *testing.T) {
	c := tinyCfg()
	c.RopeNeoX = false
	c.HeadDim = 8
	c.Heads, c.KVHeads = 4, 2
	c.Dim = 32
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Source: "test"}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, ns := range ir.ExpectedShapes(c) {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		m.Tensors[ns.Name] = ir.NewF32(ns.Name, v, ns.Shape...)
	}
	out := filepath.Join(t.TempDir(), "hf")
	if err := Write(out, m, ir.F32); err != nil {
		t.Fatal(err)
	}
	m2 := mustLoad(t, out)
	if !m2.Config.RopeNeoX {
		t.Fatal("loaded HF model has RopeNeoX false")
	}
	// Un-permuting restores the original bits.
	for _, kind := range []string{ir.AttnQ, ir.AttnK} {
		heads := c.Heads
		if kind == ir.AttnK {
			heads = c.KVHeads
		}
		a, b := m.Tensors[ir.Blk(1, kind)], m2.Tensors[ir.Blk(1, kind)]
		cols := a.Cols()
		for r := 0; r < a.Rows(); r++ {
			s := unpermuteRow(r, a.Rows(), heads)
			if string(a.Data[4*r*cols:4*(r+1)*cols]) != string(b.Data[4*s*cols:4*(s+1)*cols]) {
				t.Fatalf("%s row %d is not row %d of the HF tensor", kind, r, s)
			}
			if permuteRow(s, a.Rows(), heads) != r {
				t.Fatalf("permuteRow is not the inverse of unpermuteRow")
			}
		}
	}
	// Attention scores agree for every head pairing (GQA: q head h uses kv head h/2).
	x, y := make([]float64, c.Dim), make([]float64, c.Dim)
	for i := range x {
		x[i], y[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	hd := c.HeadDim
	for l := 0; l < c.Layers; l++ {
		q1 := matvec(m.Tensors[ir.Blk(l, ir.AttnQ)].F32(), c.QDim(), c.Dim, x)
		k1 := matvec(m.Tensors[ir.Blk(l, ir.AttnK)].F32(), c.KVDim(), c.Dim, y)
		q2 := matvec(m2.Tensors[ir.Blk(l, ir.AttnQ)].F32(), c.QDim(), c.Dim, x)
		k2 := matvec(m2.Tensors[ir.Blk(l, ir.AttnK)].F32(), c.KVDim(), c.Dim, y)
		ropeInterleaved(q1, hd, 7, c.RopeTheta)
		ropeInterleaved(k1, hd, 3, c.RopeTheta)
		ropeNeoX(q2, hd, 7, c.RopeTheta)
		ropeNeoX(k2, hd, 3, c.RopeTheta)
		for h := 0; h < c.Heads; h++ {
			kh := h / (c.Heads / c.KVHeads)
			var s1, s2 float64
			for i := 0; i < hd; i++ {
				s1 += q1[h*hd+i] * k1[kh*hd+i]
				s2 += q2[h*hd+i] * k2[kh*hd+i]
			}
			if math.Abs(s1-s2) > 1e-9*(1+math.Abs(s1)) {
				t.Fatalf("layer %d head %d: score %v interleaved vs %v after HF export", l, h, s1, s2)
			}
		}
	}
	// Non-q/k tensors are untouched.
	if string(m.Tensors["blk.0.attn_v"].Data) != string(m2.Tensors["blk.0.attn_v"].Data) {
		t.Error("attn_v changed")
	}
}

// ---- bad input ---------------------------------------------------------------

func TestCorruptSafetensors(t *testing.T) {
	src := t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, noTok: true}.build(t, src)
	good, _ := os.ReadFile(filepath.Join(src, "model.safetensors"))
	hlen := binary.LittleEndian.Uint64(good)
	hdr := string(good[8 : 8+hlen])
	withHeader := func(h string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), good[8+hlen:]...)
	}
	cases := map[string][]byte{
		"empty":             {},
		"short length":      good[:5],
		"length too big":    binary.LittleEndian.AppendUint64(nil, 1<<40),
		"length past end":   append(binary.LittleEndian.AppendUint64(nil, 1000), "{}"...),
		"truncated data":    good[:len(good)-10],
		"truncated header":  good[:8+hlen/2],
		"bad json":          withHeader(strings.Replace(hdr, "{", "[", 1)),
		"null header":       withHeader("null"),
		"offsets reversed":  withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[64,0]}}`),
		"size mismatch":     withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,60]}}`),
		"negative dim":      withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[-16],"data_offsets":[0,64]}}`),
		"missing offsets":   withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[16]}}`),
		"three offsets":     withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,1,2]}}`),
		"unsupported dtype": withHeader(strings.Replace(hdr, `"F32"`, `"I32"`, 1)),
		"missing tensor":    withHeader(`{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}`),
	}
	for name, data := range cases {
		dir := t.TempDir()
		fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, noTok: true}.build(t, dir)
		os.WriteFile(filepath.Join(dir, "model.safetensors"), data, 0o644)
		_, err := Load(dir)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "model.safetensors") && !strings.Contains(err.Error(), "is missing") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	// The missing-tensor error names the HF tensor.
	dir := t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, noTok: true}.build(t, dir)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), cases["missing tensor"], 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), `"model.embed_tokens.weight"`) {
		t.Errorf("missing tensor error: %v", err)
	}
}

func TestBadIndexAndConfigAndTokenizer(t *testing.T) {
	dir := t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, shards: 2}.build(t, dir)
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map": {"model.norm.weight": "../evil.safetensors"}}`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "weight_map") {
		t.Errorf("index escaping the directory: %v", err)
	}

	cfgCases := map[string]func(map[string]any){
		"unknown arch":      func(c map[string]any) { c["architectures"] = []string{"GPT2LMHeadModel"} },
		"no hidden":         func(c map[string]any) { delete(c, "hidden_size") },
		"rope scaling":      func(c map[string]any) { c["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8} },
		"gelu":              func(c map[string]any) { c["hidden_act"] = "gelu" },
		"attention bias":    func(c map[string]any) { c["attention_bias"] = true },
		"bad heads":         func(c map[string]any) { c["num_key_value_heads"] = 3 },
		"bad eos":           func(c map[string]any) { c["eos_token_id"] = "x" },
		"eos out of vocab":  func(c map[string]any) { c["eos_token_id"] = 100000 },
		"string dim":        func(c map[string]any) { c["hidden_size"] = "16" },
		"zero window":       func(c map[string]any) { c["sliding_window"] = 0 },
		"shape mismatch":    func(c map[string]any) { c["intermediate_size"] = 32 },
		"vocab below tok":   func(c map[string]any) { c["vocab_size"] = 256 },
		"dim not multiple":  func(c map[string]any) { c["num_attention_heads"] = 5; c["num_key_value_heads"] = 5 },
		"tied without head": func(c map[string]any) { c["tie_word_embeddings"] = false },
	}
	for name, edit := range cfgCases {
		dir := t.TempDir()
		f := fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true, cfgEdit: edit}
		if name == "tied without head" {
			f.tied = true
		}
		f.build(t, dir)
		if _, err := Load(dir); err == nil {
			t.Errorf("config %s: no error", name)
		} else if !strings.Contains(err.Error(), "config.json") && !strings.Contains(err.Error(), "tensor") && !strings.Contains(err.Error(), "tokenizer.json") {
			t.Errorf("config %s: error names neither file nor tensor: %v", name, err)
		}
	}
	// Sliding window shorter than the context caps the context.
	dir = t.TempDir()
	fixture{arch: "MistralForCausalLM", dtype: "F32", pad: true, cfgEdit: func(c map[string]any) { c["sliding_window"] = 64 }}.build(t, dir)
	if m := mustLoad(t, dir); m.Config.SeqLen != 64 {
		t.Errorf("sliding window 64: SeqLen %d", m.Config.SeqLen)
	}
	dir = t.TempDir()
	fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true}.build(t, dir)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures": ["LlamaForCausalLM"],`), 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("truncated config.json: %v", err)
	}
	for name, tj := range map[string]string{
		"truncated": `{"model": {"type": "BPE"`,
		"wordpiece": `{"model": {"type": "WordPiece", "vocab": {}}}`,
	} {
		dir := t.TempDir()
		fixture{arch: "LlamaForCausalLM", dtype: "F32", pad: true}.build(t, dir)
		os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(tj), 0o644)
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
			t.Errorf("tokenizer.json %s: %v", name, err)
		}
	}
}
