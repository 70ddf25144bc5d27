package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

const (
	f32Path   = "../../testdata/stories260K/gguf/stories260K-f32.gguf"
	q80Path   = "../../testdata/stories260K/gguf/stories260K-Q8_0.gguf"
	l2cPath   = "../../testdata/stories260K/stories260K.bin"
	tok512    = "../../testdata/stories260K/tok512.bin"
	devPath   = "../../testdata/tinystories/dev.txt"
	goldenTok = "Once upon a time"
)

var goldenIDs = []int{1, 403, 407, 261, 378}

func load(t testing.TB, path string) *ir.Model {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadStories260K(t *testing.T) {
	want := ir.Config{Arch: "llama", Dim: 64, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8, FFN: 172,
		Vocab: 512, SeqLen: 128, RopeTheta: 10000, NormEps: 1e-5}
	for _, path := range []string{f32Path, q80Path} {
		m := load(t, path)
		if m.Config != want {
			t.Errorf("%s: config\n got %+v\nwant %+v", path, m.Config, want)
		}
		if m.Format != "gguf" || m.Source != path || m.Meta["general.name"] != "llama" {
			t.Errorf("%s: format %q source %q meta %v", path, m.Format, m.Source, m.Meta)
		}
		// llama-convert-llama2c-to-ggml writes the shared classifier as a
		// separate output.weight, so the file is not tied.
		if len(m.Tensors) != 48 {
			t.Errorf("%s: %d tensors, want 48", path, len(m.Tensors))
		}
		if sh := m.Tensors["blk.2.ffn_down"].Shape; !reflect.DeepEqual(sh, []int{64, 172}) {
			t.Errorf("%s: ffn_down shape %v, want [64 172]", path, sh)
		}
	}
	q := load(t, q80Path)
	for name, want := range map[string]ir.DType{"blk.0.attn_q": ir.Q8_0, "blk.0.ffn_down": ir.F16, "blk.0.attn_norm": ir.F32, "token_embd": ir.Q8_0} {
		if got := q.Tensors[name].Type; got != want {
			t.Errorf("Q8_0 file: %s is %s, want %s", name, encName(got), encName(want))
		}
	}
}

// The f32 file holds the llama2.c checkpoint's tensors bit for bit.
func TestF32MatchesLlama2c(t *testing.T) {
	ref, err := llama2c.Load(l2cPath, tok512)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	m := load(t, f32Path)
	if !ref.Config.TiedEmbed {
		t.Fatal("stories260K.bin should have a shared classifier")
	}
	n := 0
	for name, rt := range ref.Tensors {
		gt, ok := m.Tensors[name]
		if !ok {
			t.Errorf("GGUF lacks %q", name)
			continue
		}
		if !reflect.DeepEqual(gt.Shape, rt.Shape) || gt.Type != ir.F32 || !bytes.Equal(gt.Data, rt.Data) {
			t.Errorf("%s: GGUF %v %s differs from llama2.c %v", name, gt.Shape, encName(gt.Type), rt.Shape)
		}
		n++
	}
	if n != 47 {
		t.Errorf("compared %d tensors, want 47", n)
	}
	if !bytes.Equal(m.Tensors["output"].Data, ref.Tensors["token_embd"].Data) {
		t.Error("GGUF output.weight differs from the llama2.c shared classifier")
	}
}

// Tensors point into the input bytes, at the offset the header gives.
func TestParseIsZeroCopy(t *testing.T) {
	data := readFile(t, f32Path)
	h, err := parseHeader("x", data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse("x", data)
	if err != nil {
		t.Fatal(err)
	}
	if h.dataStart%32 != 0 || h.dataStart != 14176 {
		t.Errorf("data starts at %d, want 14176 (14152 rounded up to 32)", h.dataStart)
	}
	for _, ti := range h.tensors {
		got := m.Tensors[canonicalName(ti.name)]
		if &got.Data[0] != &data[h.dataStart+int64(ti.offset)] {
			t.Errorf("%s is not a view of the file bytes", ti.name)
		}
		v := got.F32()
		if unsafe.Pointer(&v[0]) != unsafe.Pointer(&got.Data[0]) {
			t.Errorf("%s: F32() copied", ti.name)
		}
	}
}

// Q8_0 tensors decode to the f32 ones within Q8_0's error: per 32-block,
// |x - d*q| <= d/2 plus the rounding of d itself to f16 (q is computed with
// the unrounded scale), i.e. <= d*(1/2 + 127*2^-11).
func TestQ8_0WithinError(t *testing.T) {
	f := load(t, f32Path)
	q := load(t, q80Path)
	nq := 0
	for name, qt := range q.Tensors {
		ref := f.Tensors[name].F32()
		got := qt.F32()
		switch qt.Type {
		case ir.F32:
			if !bytes.Equal(qt.Data, f.Tensors[name].Data) {
				t.Errorf("%s: F32 tensor differs", name)
			}
		case ir.F16:
			for i := range ref {
				if got[i] != ir.F16ToF32(ir.F32ToF16(ref[i])) {
					t.Fatalf("%s[%d] = %v, want f16(%v)", name, i, got[i], ref[i])
				}
			}
		case ir.Q8_0:
			nq++
			var maxRel, sumErr float64
			for b := 0; b < len(ref)/32; b++ {
				d := float64(ir.F16ToF32(binary.LittleEndian.Uint16(qt.Data[34*b:])))
				tol := d*(0.5+127.0/2048) + 1e-12
				for i := 32 * b; i < 32*b+32; i++ {
					e := math.Abs(float64(got[i]) - float64(ref[i]))
					sumErr += e
					if e > tol {
						t.Fatalf("%s[%d] = %v, f32 %v: error %g > %g (d = %g)", name, i, got[i], ref[i], e, tol, d)
					}
					if d > 0 {
						maxRel = math.Max(maxRel, e/d)
					}
				}
			}
			if sumErr == 0 || maxRel < 0.3 {
				t.Errorf("%s: errors look too small to be Q8_0 (sum %g, max/d %g)", name, sumErr, maxRel)
			}
		}
	}
	if nq != 32 { // token_embd, output, 6 matrices x 5 layers (ffn_down is f16)
		t.Errorf("%d Q8_0 tensors, want 32", nq)
	}
}

func devText(t testing.TB, n int) string {
	b := readFile(t, devPath)
	if len(b) > n {
		b = b[:n]
	}
	for !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return string(b)
}

// The GGUF vocabulary tokenizes as tok512.bin does.
func TestTokenizerMatchesTok512(t *testing.T) {
	m := load(t, f32Path)
	tok := m.Tokenizer
	if tok == nil || tok.Kind != tokenizer.SentencePiece || !tok.AddSpacePrefix || tok.BOS != 1 || tok.EOS != 2 || tok.UNK != 0 {
		t.Fatalf("tokenizer %+v", tok)
	}
	if got := tok.Encode(goldenTok, true); !reflect.DeepEqual(got, goldenIDs) {
		t.Errorf("Encode(%q) = %v, want %v", goldenTok, got, goldenIDs)
	}
	ref, err := llama2c.LoadTokenizer(tok512, 512)
	if err != nil {
		t.Fatal(err)
	}
	// llama2.c spells BOS and EOS "\n<s>\n" and "\n</s>\n"; llama.cpp's
	// converter writes "<s>" and "</s>". Everything else is the same.
	for i := range ref.Tokens {
		if (tok.Tokens[i] != ref.Tokens[i] && i != 1 && i != 2) || tok.Scores[i] != ref.Scores[i] || tok.Types[i] != ref.Types[i] {
			t.Errorf("token %d: GGUF %q %v %d, tok512.bin %q %v %d", i, tok.Tokens[i], tok.Scores[i], tok.Types[i], ref.Tokens[i], ref.Scores[i], ref.Types[i])
		}
	}
	text := devText(t, 5000)
	ids := tok.Encode(text, false)
	if want := ref.Encode(text, false); !reflect.DeepEqual(ids, want) {
		t.Errorf("dev.txt: GGUF vocabulary gives %d tokens, tok512.bin %d (or different ids)", len(ids), len(want))
	}
	if len(ids) < 1000 {
		t.Errorf("5000 bytes became only %d tokens", len(ids))
	}
	if got := tok.Decode(ids); got != text {
		t.Errorf("round trip differs: got %d bytes, want %d", len(got), len(text))
	}
}

func TestWriteRoundTripF32(t *testing.T) {
	m := load(t, f32Path)
	dir := t.TempDir()
	p1 := filepath.Join(dir, "a.gguf")
	if err := Write(p1, m, ir.F32); err != nil {
		t.Fatal(err)
	}
	r := load(t, p1)
	if r.Config != m.Config {
		t.Errorf("config\n got %+v\nwant %+v", r.Config, m.Config)
	}
	if len(r.Tensors) != len(m.Tensors) {
		t.Errorf("%d tensors, want %d", len(r.Tensors), len(m.Tensors))
	}
	for name, want := range m.Tensors {
		got := r.Tensors[name]
		if got == nil || got.Type != ir.F32 || !reflect.DeepEqual(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s differs after the round trip", name)
		}
	}
	a, b := m.Tokenizer, r.Tokenizer
	if !reflect.DeepEqual(a.Tokens, b.Tokens) || !reflect.DeepEqual(a.Scores, b.Scores) || !reflect.DeepEqual(a.Types, b.Types) ||
		a.BOS != b.BOS || a.EOS != b.EOS || a.UNK != b.UNK || a.AddSpacePrefix != b.AddSpacePrefix || a.Kind != b.Kind {
		t.Error("tokenizer differs after the round trip")
	}
	if got := b.Encode(goldenTok, true); !reflect.DeepEqual(got, goldenIDs) {
		t.Errorf("written vocabulary: Encode = %v, want %v", got, goldenIDs)
	}
	// Same model, same bytes.
	p2 := filepath.Join(dir, "b.gguf")
	if err := Write(p2, r, ir.F32); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, p1), readFile(t, p2)) {
		t.Error("writing the reloaded model gives different bytes")
	}
	checkWrittenLayout(t, readFile(t, p1), m, 0)
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temp files left behind: %d entries", len(ents))
	}
}

// checkWrittenLayout checks the keys, types and alignment llama.cpp needs.
func checkWrittenLayout(t *testing.T, data []byte, m *ir.Model, ftype uint64) {
	t.Helper()
	h, err := parseHeader("written", data)
	if err != nil {
		t.Fatal(err)
	}
	if h.version != 3 {
		t.Errorf("version %d", h.version)
	}
	c := m.Config
	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "llama",
		"general.alignment":                      uint64(32),
		"general.file_type":                      ftype,
		"llama.context_length":                   uint64(c.SeqLen),
		"llama.embedding_length":                 uint64(c.Dim),
		"llama.block_count":                      uint64(c.Layers),
		"llama.feed_forward_length":              uint64(c.FFN),
		"llama.rope.dimension_count":             uint64(c.HeadDim),
		"llama.attention.head_count":             uint64(c.Heads),
		"llama.attention.head_count_kv":          uint64(c.KVHeads),
		"llama.attention.layer_norm_rms_epsilon": 1e-5,
		"llama.rope.freq_base":                   10000.0,
		"llama.vocab_size":                       uint64(c.Vocab),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint64(1),
		"tokenizer.ggml.eos_token_id":            uint64(2),
		"tokenizer.ggml.unknown_token_id":        uint64(0),
		"tokenizer.ggml.add_bos_token":           true,
		"tokenizer.ggml.add_space_prefix":        true,
	}
	for k, w := range want {
		v, ok := h.kv[k]
		if !ok {
			t.Errorf("key %s missing", k)
			continue
		}
		var got any
		switch v.typ {
		case typeString:
			got = v.s
		case typeUint32:
			got = v.u
		case typeFloat32:
			got = v.f
		case typeBool:
			got = v.u == 1
		default:
			t.Errorf("key %s has type %s", k, typeName(v.typ))
			continue
		}
		if got != w {
			t.Errorf("key %s = %v (%T), want %v", k, got, got, w)
		}
	}
	for k, at := range map[string]uint32{"tokenizer.ggml.tokens": typeString, "tokenizer.ggml.scores": typeFloat32, "tokenizer.ggml.token_type": typeInt32} {
		if v := h.kv[k]; v == nil || v.typ != typeArray || v.arrType != at || v.n != c.Vocab {
			t.Errorf("key %s: want array of %d %s", k, c.Vocab, typeName(at))
		}
	}
	if h.dataStart%32 != 0 {
		t.Errorf("data section at %d, not aligned", h.dataStart)
	}
	end := uint64(0)
	for _, ti := range h.tensors {
		if !strings.HasSuffix(ti.name, ".weight") {
			t.Errorf("tensor name %q lacks .weight", ti.name)
		}
		if ti.offset%32 != 0 || ti.offset != end {
			t.Errorf("%s at offset %d, want %d (aligned, packed)", ti.name, ti.offset, end)
		}
		if len(ti.ne) == 1 && ti.typ.id != 0 {
			t.Errorf("vector %s written as %s, want f32", ti.name, ti.typ.name)
		}
		end = alignUp(ti.offset+ti.bytes(), 32)
	}
	if uint64(len(data)) != uint64(h.dataStart)+end {
		t.Errorf("file is %d bytes, want %d", len(data), uint64(h.dataStart)+end)
	}
}

func TestWriteF16(t *testing.T) {
	for _, src := range []string{f32Path, q80Path} {
		m := load(t, src)
		p := filepath.Join(t.TempDir(), "h.gguf")
		if err := Write(p, m, ir.F16); err != nil {
			t.Fatal(err)
		}
		checkWrittenLayout(t, readFile(t, p), m, 1)
		r := load(t, p)
		if r.Config != m.Config {
			t.Errorf("config %+v, want %+v", r.Config, m.Config)
		}
		for name, mt := range m.Tensors {
			rt := r.Tensors[name]
			want := mt.F32()
			got := rt.F32()
			if len(mt.Shape) == 1 {
				if rt.Type != ir.F32 || !reflect.DeepEqual(got, want) {
					t.Errorf("%s: vector not kept exact in f32", name)
				}
				continue
			}
			if rt.Type != ir.F16 {
				t.Errorf("%s written as %s, want f16", name, encName(rt.Type))
			}
			for i := range want {
				if got[i] != ir.F16ToF32(ir.F32ToF16(want[i])) {
					t.Fatalf("%s[%d] = %v, want f16(%v)", name, i, got[i], want[i])
				}
			}
		}
	}
}

// tinyModel makes a small random model of config c.
func tinyModel(c ir.Config, seed uint64) *ir.Model {
	r := rand.New(rand.NewPCG(seed, 7))
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Format: "synthetic", Meta: map[string]string{"general.name": "tiny"}}
	for _, ns := range ir.ExpectedShapes(c) {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * 0.3)
			if len(ns.Shape) == 1 && !strings.HasSuffix(ns.Name, ".bias") {
				v[i] += 1
			}
		}
		m.Tensors[ns.Name] = ir.NewF32(ns.Name, v, ns.Shape...)
	}
	return m
}

func tinyVocab() *tokenizer.Tokenizer {
	t := &tokenizer.Tokenizer{Kind: tokenizer.SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddSpacePrefix: true,
		Tokens: []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab"},
		Scores: []float32{0, 0, 0, -1, -2, -3, -0.5, -0.25}}
	if err := t.Init(); err != nil {
		panic(err)
	}
	return t
}

var tinyConfig = ir.Config{Arch: "llama", Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 8, FFN: 40,
	Vocab: 8, SeqLen: 64, RopeTheta: 10000, NormEps: 1e-6, TiedEmbed: true}

func TestWriteTiedNoVocab(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 3)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "s.gguf")
	if err := Write(p, m, ir.F32); err != nil {
		t.Fatal(err)
	}
	r := load(t, p)
	if r.Config != m.Config || r.Tokenizer != nil {
		t.Errorf("config %+v tokenizer %v, want %+v and none", r.Config, r.Tokenizer, m.Config)
	}
	if _, ok := r.Tensors["output"]; ok {
		t.Error("tied model written with an output tensor")
	}
	for name, mt := range m.Tensors {
		if !bytes.Equal(r.Tensors[name].Data, mt.Data) {
			t.Errorf("%s differs", name)
		}
	}
}

func TestWriteBPEVocab(t *testing.T) {
	m := tinyModel(tinyConfig, 1)
	tok := &tokenizer.Tokenizer{Kind: tokenizer.ByteBPE, BOS: -1, EOS: 7, UNK: -1,
		Tokens: []string{"a", "b", "c", "Ġ", "ab", "Ġa", "abc", "<|endoftext|>"},
		Types:  []tokenizer.TokenType{1, 1, 1, 1, 1, 1, 1, 3},
		Merges: []string{"a b", "Ġ a", "ab c"}}
	if err := tok.Init(); err != nil {
		t.Fatal(err)
	}
	m.Tokenizer = tok
	m.Meta["tokenizer.ggml.pre"] = "qwen2"
	p := filepath.Join(t.TempDir(), "b.gguf")
	if err := Write(p, m, ir.F32); err != nil {
		t.Fatal(err)
	}
	r := load(t, p)
	g := r.Tokenizer
	if g.Kind != tokenizer.ByteBPE || !reflect.DeepEqual(g.Tokens, tok.Tokens) || !reflect.DeepEqual(g.Merges, tok.Merges) ||
		!reflect.DeepEqual(g.Types, tok.Types) || g.BOS != -1 || g.EOS != 7 || g.UNK != -1 || g.AddSpacePrefix {
		t.Errorf("BPE vocabulary differs after the round trip: %+v", g)
	}
	if r.Meta["tokenizer.ggml.pre"] != "qwen2" {
		t.Errorf("tokenizer.ggml.pre = %q", r.Meta["tokenizer.ggml.pre"])
	}
}

// rope rotates x (one head) at position pos: adjacent pairs (x[2i],
// x[2i+1]) or, with neox, halves (x[i], x[i+hd/2]); pair i turns by
// pos * theta^(-2i/hd).
func rope(x []float64, pos int, theta float64, neox bool) []float64 {
	hd := len(x)
	out := make([]float64, hd)
	for i := 0; i < hd/2; i++ {
		a, b := 2*i, 2*i+1
		if neox {
			a, b = i, i+hd/2
		}
		ang := float64(pos) * math.Pow(theta, -2*float64(i)/float64(hd))
		s, c := math.Sincos(ang)
		out[a] = x[a]*c - x[b]*s
		out[b] = x[a]*s + x[b]*c
	}
	return out
}

// project computes W x + b for rows of an F32 tensor.
func project(w, b *ir.Tensor, x []float64) []float64 {
	wv := w.F32()
	out := make([]float64, w.Rows())
	for r := range out {
		for c, xv := range x {
			out[r] += float64(wv[r*len(x)+c]) * xv
		}
		if b != nil {
			out[r] += float64(b.F32()[r])
		}
	}
	return out
}

// A NeoX (Hugging Face layout) model written for llama.cpp's adjacent-pair
// RoPE gives the same attention scores.
func TestWriteRopePermutation(t *testing.T) {
	c := tinyConfig
	c.RopeNeoX, c.QKVBias, c.TiedEmbed = true, true, false
	m := tinyModel(c, 5)
	m.Tokenizer = tinyVocab()
	p := filepath.Join(t.TempDir(), "neox.gguf")
	if err := Write(p, m, ir.F32); err != nil {
		t.Fatal(err)
	}
	r := load(t, p)
	if r.Config.RopeNeoX || !r.Config.QKVBias {
		t.Fatalf("reloaded config %+v: want RopeNeoX false, QKVBias true", r.Config)
	}
	hd := c.HeadDim
	rng := rand.New(rand.NewPCG(9, 9))
	x := make([]float64, c.Dim)
	y := make([]float64, c.Dim)
	for i := range x {
		x[i], y[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	for l := 0; l < c.Layers; l++ {
		// Unchanged tensors stay bit-identical.
		for _, k := range []string{ir.AttnV, ir.AttnOut, ir.FFNGate, ir.AttnVB} {
			if !bytes.Equal(r.Tensors[ir.Blk(l, k)].Data, m.Tensors[ir.Blk(l, k)].Data) {
				t.Errorf("%s changed", ir.Blk(l, k))
			}
		}
		get := func(mm *ir.Model, k string) *ir.Tensor { return mm.Tensors[ir.Blk(l, k)] }
		q0 := project(get(m, ir.AttnQ), get(m, ir.AttnQB), x)
		k0 := project(get(m, ir.AttnK), get(m, ir.AttnKB), y)
		q1 := project(get(r, ir.AttnQ), get(r, ir.AttnQB), x)
		k1 := project(get(r, ir.AttnK), get(r, ir.AttnKB), y)
		if reflect.DeepEqual(q0, q1) {
			t.Fatal("q rows were not permuted")
		}
		for h := 0; h < c.Heads; h++ {
			kh := h / (c.Heads / c.KVHeads)
			for _, pos := range [][2]int{{0, 0}, {5, 2}, {17, 3}} {
				a := rope(q0[h*hd:(h+1)*hd], pos[0], c.RopeTheta, true)
				b := rope(k0[kh*hd:(kh+1)*hd], pos[1], c.RopeTheta, true)
				a1 := rope(q1[h*hd:(h+1)*hd], pos[0], c.RopeTheta, false)
				b1 := rope(k1[kh*hd:(kh+1)*hd], pos[1], c.RopeTheta, false)
				var s0, s1 float64
				for i := range a {
					s0 += a[i] * b[i]
					s1 += a1[i] * b1[i]
				}
				if math.Abs(s0-s1) > 1e-9*(1+math.Abs(s0)) {
					t.Errorf("layer %d head %d pos %v: score %v (NeoX) vs %v (written)", l, h, pos, s0, s1)
				}
			}
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	m := tinyModel(tinyConfig, 2)
	m.Tokenizer = tinyVocab()
	if err := Write(filepath.Join(dir, "x.gguf"), m, ir.Q8_0); err == nil || !strings.Contains(err.Error(), "q8_0") {
		t.Errorf("Q8_0 dtype: %v", err)
	}
	delete(m.Tensors, "blk.0.ffn_norm")
	if err := Write(filepath.Join(dir, "x.gguf"), m, ir.F32); err == nil || !strings.Contains(err.Error(), `tensor "blk.0.ffn_norm" is missing`) {
		t.Errorf("missing tensor: %v", err)
	}
	m = tinyModel(tinyConfig, 2)
	m.Tokenizer = tinyVocab()
	q := m.Tensors["blk.1.ffn_up"]
	m.Tensors["blk.1.ffn_up"] = &ir.Tensor{Name: q.Name, Shape: q.Shape, Type: ir.LUT4,
		Data: make([]byte, ir.PackedBytes(4, q.Elems())), Pal: &ir.Palette{GroupSize: q.Rows(), LUT: make([]uint16, 16)}}
	err := Write(filepath.Join(dir, "p.gguf"), m, ir.F16)
	if err == nil || !strings.Contains(err.Error(), `"blk.1.ffn_up"`) || !strings.Contains(err.Error(), "palettized") {
		t.Errorf("palettized tensor: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %d files", len(ents))
	}
}

// Every truncation of a real file is an error (or, past the last tensor's
// data, a success), never a panic.
func TestTruncated(t *testing.T) {
	for _, path := range []string{f32Path, q80Path} {
		data := readFile(t, path)
		h, err := parseHeader(path, data)
		if err != nil {
			t.Fatal(err)
		}
		var need uint64
		for _, ti := range h.tensors {
			need = max(need, uint64(h.dataStart)+ti.offset+ti.bytes())
		}
		// Every byte of the fixed header and of the tensor infos (the last
		// 2,600 header bytes), every 7th through the vocabulary, then
		// every 1,999th through the data.
		cuts := []int{}
		for n := 0; n < int(h.dataStart)+64; n++ {
			if n < 256 || n >= int(h.dataStart)-2600 || n%7 == 0 {
				cuts = append(cuts, n)
			}
		}
		for n := int(h.dataStart) + 64; n <= len(data); n += 1999 {
			cuts = append(cuts, n)
		}
		cuts = append(cuts, int(need)-1, int(need), len(data))
		for _, n := range cuts {
			m, err := Parse("cut", data[:n])
			if uint64(n) < need && err == nil {
				t.Fatalf("%s cut at %d: no error", path, n)
			}
			if uint64(n) >= need && err != nil {
				t.Fatalf("%s cut at %d (after the data): %v", path, n, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "gguf: cut: ") {
				t.Fatalf("error lacks the file name: %v", err)
			}
			_ = m
		}
	}
}

// patch returns a copy of data with v written little-endian at off.
func patch(data []byte, off int, v any) []byte {
	b := bytes.Clone(data)
	switch x := v.(type) {
	case uint32:
		binary.LittleEndian.PutUint32(b[off:], x)
	case uint64:
		binary.LittleEndian.PutUint64(b[off:], x)
	case string:
		copy(b[off:], x)
	}
	return b
}

// after returns the offset just past the first occurrence of s.
func after(t *testing.T, data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		t.Fatalf("%q not in file", s)
	}
	return i + len(s)
}

func TestCorruptHeader(t *testing.T) {
	data := readFile(t, f32Path)
	size := len(data)
	tokensCount := after(t, data, "tokenizer.ggml.tokens") + 8 // past the value and element types
	q3 := after(t, data, "blk.3.attn_q.weight")                // n_dims, ne[0], ne[1], type, offset
	h, _ := parseHeader("x", data)
	var q3off uint64
	for _, ti := range h.tensors {
		if ti.name == "blk.3.attn_q.weight" {
			q3off = ti.offset
		}
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"magic", patch(data, 0, "GGML"), `not a GGUF file: magic is "GGML"`},
		{"empty", nil, "not a GGUF file"},
		{"version 1", patch(data, 4, uint32(1)), "version 1 is not supported"},
		{"version 9", patch(data, 4, uint32(9)), "GGUF version is 9, expected 2 or 3"},
		{"big-endian", patch(data, 4, uint32(3<<24)), "big-endian"},
		{"tensor count", patch(data, 8, uint64(1)<<62), "tensor count 4,611,686,018,427,387,904 needs at least"},
		{"kv count", patch(data, 16, uint64(1)<<62), "metadata count"},
		{"kv count max", patch(data, 16, uint64(math.MaxUint64)), "metadata count"},
		{"key length", patch(data, 24, uint64(1)<<60), "metadata key 0 of 1,152,921,504,606,846,976 bytes at byte 32 needs"},
		{"array count", patch(data, tokensCount, uint64(1)<<60), `"tokenizer.ggml.tokens": array of 1,152,921,504,606,846,976 strings needs at least`},
		{"string length", patch(data, tokensCount+8, uint64(1)<<60), `"tokenizer.ggml.tokens" element 0 of 1,152,921,504,606,846,976 bytes`},
		{"value type", patch(data, after(t, data, "general.architecture"), uint32(13)), "unknown value type 13"},
		{"array type", patch(data, after(t, data, "tokenizer.ggml.tokens")+4, uint32(99)), "unknown array element type 99"},
		{"arch", patch(data, after(t, data, "general.architecture")+12, "gemma"), `general.architecture is "gemma"`},
		{"missing key", patch(data, after(t, data, "llama.block_count")-5, "COUNT"), "llama.block_count is missing"},
		{"n_dims", patch(data, q3, uint32(5)), `tensor "blk.3.attn_q.weight": n_dims is 5, expected 1..4`},
		{"ne zero", patch(data, q3+4, uint64(0)), `tensor "blk.3.attn_q.weight": ne[0] is 0`},
		{"ne huge", patch(data, q3+12, uint64(1)<<40), `ne[1] is 1,099,511,627,776`},
		{"ne product", patch(patch(data, q3+4, uint64(1)<<31), q3+12, uint64(1)<<31), "more than 2^46 elements"},
		{"q4_0", patch(data, q3+20, uint32(2)), `tensor "blk.3.attn_q.weight": ggml type 2 (q4_0) is not supported`},
		{"type 99", patch(data, q3+20, uint32(99)), `tensor "blk.3.attn_q.weight": unknown ggml type 99`},
		{"misaligned", patch(data, q3+24, q3off+4), `tensor "blk.3.attn_q": offset 807,684 is not a multiple of general.alignment 32`},
		{"past end", patch(data, q3+24, uint64(size)), `tensor "blk.3.attn_q": data ends at byte 1,215,936, file has 1,185,376`},
		{"offset overflow", patch(data, q3+24, uint64(math.MaxUint64)&^31), `data ends at byte beyond 2^64`},
		{"duplicate", patch(data, after(t, data, "blk.3.attn_k.weight")-len("attn_k.weight"), "attn_q"), `tensor "blk.3.attn_q.weight" appears twice`},
		{"shape", patch(data, q3+12, uint64(32)), `tensor "blk.3.attn_q" has shape [32 64], expected [64 64]`},
		{"q8 row", patch(data, after(t, data, "blk.3.ffn_down.weight")+20, uint32(8)), `tensor "blk.3.ffn_down.weight": q8_0 rows of 172 elements are not a multiple of the block size 32`},
	}
	for _, tc := range cases {
		_, err := Parse("bad.gguf", tc.data)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "gguf: bad.gguf: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestCorruptAlignment(t *testing.T) {
	m := tinyModel(tinyConfig, 4)
	m.Tokenizer = tinyVocab()
	p := filepath.Join(t.TempDir(), "t.gguf")
	if err := Write(p, m, ir.F16); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, p)
	if _, err := Parse("ok", data); err != nil {
		t.Fatal(err)
	}
	at := after(t, data, "general.alignment") + 4
	for _, tc := range []struct {
		v    uint32
		want string
	}{
		{0, "general.alignment is 0, expected a power of two"},
		{48, "general.alignment is 48"},
		{1 << 31, "general.alignment is 2147483648"},
		{256, `tensor "blk.0.attn_q": offset 640 is not a multiple of general.alignment 256`},
	} {
		_, err := Parse("bad.gguf", patch(data, at, tc.v))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("alignment %d: error %v, want %q", tc.v, err, tc.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("no/such.gguf")
	if err == nil || !strings.Contains(err.Error(), "gguf: no/such.gguf") {
		t.Errorf("error %v", err)
	}
}

func TestCommas(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 91340800: "91,340,800", -1234567: "-1,234,567"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, path := range []string{f32Path, q80Path} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		for _, n := range []int{3, 24, 100, 1000, 14000, 14300} {
			f.Add(data[:n])
		}
	}
	// A tiny complete model (about 1.5 KB) gives the fuzzer a fast input
	// that reaches every stage of Parse.
	c := ir.Config{Arch: "llama", Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4, FFN: 8,
		Vocab: 8, SeqLen: 16, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true}
	m := tinyModel(c, 6)
	m.Tokenizer = tinyVocab()
	p := filepath.Join(f.TempDir(), "tiny.gguf")
	if err := Write(p, m, ir.F16); err != nil {
		f.Fatal(err)
	}
	tiny, err := os.ReadFile(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tiny)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "gguf: fuzz: ") {
				t.Fatalf("error lacks the file name: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Parse succeeded but Validate fails: %v", err)
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
		for name, tt := range m.Tensors {
			if err := tt.Check(); err != nil {
				t.Fatal(err)
			}
			p := uintptr(unsafe.Pointer(unsafe.SliceData(tt.Data)))
			if p < lo || p+uintptr(len(tt.Data)) > lo+uintptr(len(data)) {
				t.Fatalf("tensor %s outside the input", name)
			}
			if tt.Rows() > 0 {
				row := make([]float32, tt.Cols())
				tt.DecodeRow(tt.Rows()-1, row)
			}
		}
	})
}

// A qwen2 file (same keys under "qwen2.") reads with NeoX RoPE and biases;
// a bf16 tensor reads as bf16.
func TestLoadQwen2AndBF16(t *testing.T) {
	c := tinyConfig
	c.QKVBias = true
	m := tinyModel(c, 8)
	m.Tokenizer = tinyVocab()
	p := filepath.Join(t.TempDir(), "q.gguf")
	if err := Write(p, m, ir.F16); err != nil {
		t.Fatal(err)
	}
	data := bytes.ReplaceAll(readFile(t, p), []byte("llama."), []byte("qwen2."))
	data = patch(data, after(t, data, "general.architecture")+12, "qwen2")
	data = patch(data, after(t, data, "blk.1.ffn_up.weight")+4+16, uint32(30))
	r, err := Parse("q.gguf", data)
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.RopeNeoX = true
	if r.Config != want || r.Meta["general.architecture"] != "qwen2" {
		t.Errorf("config %+v (arch %q), want %+v", r.Config, r.Meta["general.architecture"], want)
	}
	bt := r.Tensors["blk.1.ffn_up"]
	if bt.Type != ir.BF16 {
		t.Fatalf("blk.1.ffn_up is %s, want bf16", encName(bt.Type))
	}
	if got, want := bt.F32()[3], ir.BF16ToF32(binary.LittleEndian.Uint16(bt.Data[6:])); got != want {
		t.Errorf("bf16 decode %v, want %v", got, want)
	}
}
