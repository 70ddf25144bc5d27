package lorarecovery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
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

// loadLlama2c loads a llama2.c checkpoint and its tokenizer with
// formats/llama2c.
func loadLlama2c(t testing.TB, path, tokPath string) *ir.Model {
	t.Helper()
	m, err := llama2c.Load(path, tokPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
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

// evalTuner is a one-thread tuner over model (nothing tuned: it only
// evaluates), cutting tokens into windows of seqLen as TuneLUTs does.
func evalTuner(t *testing.T, teacher, model *ir.Model, tokens []int, seqLen int) *lutTuner {
	t.Helper()
	o := Options{Rank: 1, SeqLen: seqLen, Threads: 1, BOS: 1}
	o.defaults(model.Config, 1)
	tu, err := newLUTTuner(teacher, model, tokens, o, nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return tu
}

// checkStoredKL checks that model (as returned by TuneLUTs) has the
// reported held-out KL.
func checkStoredKL(t *testing.T, teacher, model *ir.Model, tokens []int, seqLen int, want float64) {
	t.Helper()
	tr := evalTuner(t, teacher, model, tokens, seqLen).tr
	tr.cacheTeacher(tr.opt.TeacherCacheBytes)
	if kl := tr.heldOutKL(); math.Abs(kl-want) > 1e-9 {
		t.Errorf("the returned model's held-out KL is %.6f, the report says %.6f", kl, want)
	}
}
