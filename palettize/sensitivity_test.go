package palettize

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
)

func loadStories(t *testing.T) (*ir.Model, []int) {
	t.Helper()
	m, err := llama2c.Load("../testdata/stories260K/stories260K.bin", "../testdata/stories260K/tok512.bin")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("../testdata/tinystories/calib.txt")
	if err != nil {
		t.Fatal(err)
	}
	return m, m.Tokenizer.Encode(string(text[:4000]), true)
}

// The sensitivity pass's forward must be the runtime's: the per-channel
// input mean squares it collects equal those Calibrate collects through the
// runtime's LinearHook.
func TestSensitivityForwardMatchesRuntime(t *testing.T) {
	m, toks := loadStories(t)
	toks = toks[:300]
	a, err := Calibrate(m, toks, m.Tokenizer.BOS, 64, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CalibrateWith(m, toks, m.Tokenizer.BOS, CalibrateOptions{Ctx: 64, Workers: 2, Sensitivity: true, Gram: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Importance) != len(b.Importance) || a.Positions != b.Positions {
		t.Fatalf("runtime: %d linears, %d positions; sensitivity: %d, %d", len(a.Importance), a.Positions, len(b.Importance), b.Positions)
	}
	for name, va := range a.Importance {
		vb := b.Importance[name]
		for j := range va {
			if d := math.Abs(float64(va[j] - vb[j])); d > 1e-4*math.Abs(float64(va[j]))+1e-7 {
				t.Fatalf("%s[%d]: runtime %g, sensitivity pass %g", name, j, va[j], vb[j])
			}
		}
		g := b.Gram[name]
		n := len(va)
		if len(g) != n*n {
			t.Fatalf("%s: gram has %d values, want %d", name, len(g), n*n)
		}
		for j := range va { // the Gram diagonal is the importance
			if d := math.Abs(g[j*n+j] - float64(vb[j])); d > 1e-5*math.Abs(g[j*n+j])+1e-8 {
				t.Fatalf("%s: gram[%d,%d] = %g, importance %g", name, j, j, g[j*n+j], vb[j])
			}
		}
	}
	if len(b.OutputFisher) != len(b.Importance) {
		t.Fatalf("fisher for %d linears, importance for %d", len(b.OutputFisher), len(b.Importance))
	}
}

// The backward pass's gradients dL/dy of each linear, combined with its
// inputs as dL/dW = sum_t g_t x_t^T, match central finite differences of
// the runtime's loss (cross-entropy of the recorded labels).
func TestSensitivityGradientFiniteDifference(t *testing.T) {
	m, toks := loadStories(t)
	win := slices.Clone(toks[:24])
	win[0] = m.Tokenizer.BOS
	sm, err := newSensModel(m, len(win))
	if err != nil {
		t.Fatal(err)
	}
	acc := newSensAcc()
	acc.trace = &sensTrace{input: map[string][]float32{}, grad: map[string][]float32{}}
	if err := sm.window(win, acc, rand.New(rand.NewPCG(1, 2)), false); err != nil {
		t.Fatal(err)
	}
	labels := acc.trace.labels
	loss := func(mm *ir.Model) float64 {
		rt, err := runtime.New(mm, runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		st := rt.NewState(len(win))
		v := mm.Config.Vocab
		logits := make([]float32, len(win)*v)
		if err := rt.Forward(st, win, logits, true); err != nil {
			t.Fatal(err)
		}
		var l float64
		for i, lab := range labels {
			row := logits[i*v : (i+1)*v]
			mx := slices.Max(row)
			var z float64
			for _, x := range row {
				z += math.Exp(float64(x - mx))
			}
			l += math.Log(z) - float64(row[lab]-mx)
		}
		return l
	}
	n := len(win)
	for _, name := range []string{"blk.0.attn_q", "blk.0.attn_k", "blk.2.attn_v", "blk.4.attn_output", "blk.1.ffn_gate", "blk.3.ffn_up", "blk.0.ffn_down"} {
		w := m.Tensors[name]
		rows, cols := w.Rows(), w.Cols()
		g, x := acc.trace.grad[name], acc.trace.input[name]
		// the weight with the largest predicted gradient
		bi, bj, best := 0, 0, 0.0
		grad := func(i, j int) float64 {
			var s float64
			for p := 0; p < n; p++ {
				s += float64(g[p*rows+i]) * float64(x[p*cols+j])
			}
			return s
		}
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				if v := math.Abs(grad(i, j)); v > best {
					bi, bj, best = i, j, v
				}
			}
		}
		want := grad(bi, bj)
		orig := w.F32()
		const eps = 2e-3
		fd := func(d float32) float64 {
			mod := slices.Clone(orig)
			mod[bi*cols+bj] += d
			mm := *m
			mm.Tensors = map[string]*ir.Tensor{}
			for k, v := range m.Tensors {
				mm.Tensors[k] = v
			}
			mm.Tensors[name] = ir.NewF32(name, mod, rows, cols)
			return loss(&mm)
		}
		got := (fd(eps) - fd(-eps)) / (2 * eps)
		t.Logf("%s: %.5g vs %.5g", name, want, got)
		if math.Abs(got-want) > 0.03*math.Abs(want)+1e-3 {
			t.Errorf("%s[%d,%d]: backward dL/dW = %.5g, finite difference %.5g", name, bi, bj, want, got)
		}
	}
}

// backMul (tiled transposes, no transposed copy) equals the plain
// product dy W, for a weight taller than one row block (2048 rows) whose
// rows are not a multiple of it, as float32 and as float16, whatever the
// number of goroutines.
func TestBackMulTiled(t *testing.T) {
	const rows, cols, n = 2100, 130, 5
	src := randTensor("w", rows, cols, 3)
	w32 := src.F32()
	rng := rand.New(rand.NewPCG(4, 5))
	dy := make([]float32, n*rows)
	for i := range dy {
		dy[i] = float32(rng.NormFloat64())
	}
	want := make([]float64, n*cols)
	for i := 0; i < n; i++ {
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				want[i*cols+c] += float64(dy[i*rows+r]) * float64(w32[r*cols+c])
			}
		}
	}
	f16 := make([]uint16, len(w32))
	for i, v := range w32 {
		f16[i] = ir.F32ToF16(v)
	}
	h := &ir.Tensor{Name: "w16", Shape: []int{rows, cols}, Type: ir.F16, Data: make([]byte, 2*len(f16))}
	for i, v := range f16 {
		h.Data[2*i], h.Data[2*i+1] = byte(v), byte(v>>8)
	}
	for _, tc := range []struct {
		w   *ir.Tensor
		tol float64
	}{{src, 1e-4}, {h, 2e-2}} {
		for _, inner := range []int{1, 2} {
			dx := make([]float32, n*cols)
			transposeOf(tc.w).backMul(dy, dx, n, inner)
			for i, v := range dx {
				if d := math.Abs(float64(v) - want[i]); d > tc.tol*(1+math.Abs(want[i])) {
					t.Fatalf("%s inner %d: dx[%d] = %g, want %g", tc.w.Name, inner, i, v, want[i])
				}
			}
		}
	}
}

// addGram (float32 X^T X per call through the prefill kernel, accumulated
// in float64) matches the float64 brute force on a ragged shape, off the
// diagonal too, and accumulates across calls.
func TestAddGramMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const w, n = 172, 37
	dst := map[string][]float64{}
	want := make([]float64, w*w)
	for call := 0; call < 2; call++ {
		x := make([]float32, n*w)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		addGram(dst, "g", x, n)
		for i := 0; i < n; i++ {
			for a := 0; a < w; a++ {
				for b := 0; b < w; b++ {
					want[a*w+b] += float64(x[i*w+a]) * float64(x[i*w+b])
				}
			}
		}
	}
	got := dst["g"]
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > 1e-5*float64(2*n) {
			t.Fatalf("gram[%d,%d] = %g, brute force %g", i/w, i%w, got[i], want[i])
		}
	}
}

// One window with several workers splits the window's matrix products,
// attention heads (by KV-head group) and element-wise loops over
// goroutines: every statistic must be bit-identical to one worker's.
func TestCalibrateSensWorkersBitIdentical(t *testing.T) {
	m, toks := loadStories(t)
	toks = toks[:200]
	var ref *Calibration
	for _, w := range []int{1, 2, 3} {
		c, err := CalibrateWith(m, toks, m.Tokenizer.BOS, CalibrateOptions{Ctx: 256, Workers: w, Sensitivity: true, Gram: true, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		if c.SensitivityWindows != 1 {
			t.Fatalf("%d windows, want 1 (the test is about one window split over workers)", c.SensitivityWindows)
		}
		if ref == nil {
			ref = c
			continue
		}
		same32 := func(what string, a, b []float32) {
			t.Helper()
			if len(a) != len(b) {
				t.Fatalf("workers %d: %s has %d values, 1 worker %d", w, what, len(b), len(a))
			}
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("workers %d: %s[%d] = %g, 1 worker %g", w, what, i, b[i], a[i])
				}
			}
		}
		for name, v := range ref.Importance {
			same32("importance "+name, v, c.Importance[name])
		}
		for name, v := range ref.OutputFisher {
			same32("fisher "+name, v, c.OutputFisher[name])
		}
		same32("embed row fisher", ref.EmbedRowFisher, c.EmbedRowFisher)
		same32("embed col fisher", ref.EmbedColFisher, c.EmbedColFisher)
		for name, g := range ref.Gram {
			if !slices.Equal(g, c.Gram[name]) {
				t.Fatalf("workers %d: gram %s differs", w, name)
			}
		}
	}
}
