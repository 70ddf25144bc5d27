package lorarecovery

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

const (
	stories260K = "../testdata/stories260K/stories260K.bin"
	tok512      = "../testdata/stories260K/tok512.bin"
	calibText   = "../testdata/tinystories/calib.txt"
)

// randomModel builds a model of config c with N(0, sd) weights and norm
// weights near 1.
func randomModel(c ir.Config, seed uint64, sd float64) *ir.Model {
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Format: "test", Source: fmt.Sprintf("random:%d", seed)}
	rng := rand.New(rand.NewPCG(seed, 77))
	for _, ns := range ir.ExpectedShapes(c) {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if len(ns.Shape) == 1 {
				v[i] = float32(1 + 0.2*rng.NormFloat64())
			} else {
				v[i] = float32(rng.NormFloat64() * sd)
			}
		}
		m.Tensors[ns.Name] = ir.NewF32(ns.Name, v, ns.Shape...)
	}
	return m
}

// palettize2 is a crude stand-in for the real palettizer (package
// palettize): every linear weight gets a per-row LUT of 4 uniform levels
// between the row's min and max (a genuine LUT2 tensor, decoded by the ir
// reference decoder); other tensors are shared with m.
func palettize2(m *ir.Model) *ir.Model {
	out := &ir.Model{Config: m.Config, Tensors: map[string]*ir.Tensor{}, Format: m.Format, Source: m.Source + "+lut2", Tokenizer: m.Tokenizer}
	isLinear := map[string]bool{}
	for l := 0; l < m.Config.Layers; l++ {
		for _, k := range ir.LinearKinds {
			isLinear[ir.Blk(l, k)] = true
		}
	}
	for name, t := range m.Tensors {
		if !isLinear[name] {
			out.Tensors[name] = t
			continue
		}
		rows, cols := t.Rows(), t.Cols()
		w := t.F32()
		idx := make([]uint8, rows*cols)
		lut := make([]uint16, rows*4)
		for r := 0; r < rows; r++ {
			row := w[r*cols : (r+1)*cols]
			lo, hi := row[0], row[0]
			for _, v := range row {
				lo, hi = min(lo, v), max(hi, v)
			}
			var lv [4]float32
			for k := range lv {
				lv[k] = ir.F16ToF32(ir.F32ToF16(lo + (hi-lo)*float32(k)/3))
				lut[r*4+k] = ir.F32ToF16(lv[k])
			}
			for c, v := range row {
				best := 0
				for k := range lv {
					if math.Abs(float64(v-lv[k])) < math.Abs(float64(v-lv[best])) {
						best = k
					}
				}
				idx[r*cols+c] = uint8(best)
			}
		}
		out.Tensors[name] = &ir.Tensor{Name: name, Shape: append([]int(nil), t.Shape...), Type: ir.LUT2,
			Data: ir.PackIndices(2, idx), Pal: &ir.Palette{GroupSize: 1, LUT: lut}}
	}
	return out
}

// loadLlama2c is a test-only reader of llama2.c checkpoints (the real one
// is formats/llama2c). Header: dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size (negative: separate classifier), seq_len; then
// float32 weights.
func loadLlama2c(t testing.TB, path, tokPath string) *ir.Model {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h [7]int32
	for i := range h {
		h[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	shared := h[5] > 0
	vocab := int(h[5])
	if !shared {
		vocab = -vocab
	}
	c := ir.Config{Arch: "llama", Dim: int(h[0]), FFN: int(h[1]), Layers: int(h[2]), Heads: int(h[3]), KVHeads: int(h[4]),
		Vocab: vocab, SeqLen: int(h[6]), RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: shared}
	c.HeadDim = c.Dim / c.Heads
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Format: "llama2c", Source: path}
	off := 28
	next := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[off+4*i:]))
		}
		off += 4 * n
		return v
	}
	put := func(name string, v []float32, shape ...int) { m.Tensors[name] = ir.NewF32(name, v, shape...) }
	D, F, L, KV := c.Dim, c.FFN, c.Layers, c.KVDim()
	put(ir.NameTokenEmbd, next(vocab*D), vocab, D)
	perLayer := func(kind string, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		for l := 0; l < L; l++ {
			put(ir.Blk(l, kind), next(n), shape...)
		}
	}
	perLayer(ir.AttnNorm, D)
	perLayer(ir.AttnQ, D, D)
	perLayer(ir.AttnK, KV, D)
	perLayer(ir.AttnV, KV, D)
	perLayer(ir.AttnOut, D, D)
	perLayer(ir.FFNNorm, D)
	perLayer(ir.FFNGate, F, D)
	perLayer(ir.FFNDown, D, F)
	perLayer(ir.FFNUp, F, D)
	put(ir.NameOutputNorm, next(D), D)
	off += 4 * c.SeqLen * c.HeadDim // freq_cis real and imaginary halves
	if !shared {
		put(ir.NameOutput, next(vocab*D), vocab, D)
	}
	if tokPath != "" {
		tb, err := os.ReadFile(tokPath)
		if err != nil {
			t.Fatal(err)
		}
		tk := &tokenizer.Tokenizer{Kind: tokenizer.SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddSpacePrefix: true}
		p := 4
		for i := 0; i < vocab; i++ {
			score := math.Float32frombits(binary.LittleEndian.Uint32(tb[p:]))
			n := int(binary.LittleEndian.Uint32(tb[p+4:]))
			s := string(tb[p+8 : p+8+n])
			p += 8 + n
			tk.Tokens = append(tk.Tokens, strings.ReplaceAll(s, " ", "▁"))
			tk.Scores = append(tk.Scores, score)
		}
		if err := tk.Init(); err != nil {
			t.Fatal(err)
		}
		m.Tokenizer = tk
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// calibTokens tokenizes the TinyStories calibration text as one stream and
// returns its first n tokens.
func calibTokens(t testing.TB, m *ir.Model, n int) []int {
	t.Helper()
	b, err := os.ReadFile(calibText)
	if err != nil {
		t.Fatal(err)
	}
	ids := m.Tokenizer.Encode(string(b), false)
	if len(ids) < n {
		t.Fatalf("%s: %d tokens, need %d", calibText, len(ids), n)
	}
	return ids[:n]
}
