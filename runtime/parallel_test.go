package runtime

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// TestParallel checks that parallel runs every chunk exactly once and
// returns only after all have finished, also from several goroutines at
// once.
func TestParallel(t *testing.T) {
	check := func(nt int) {
		var hits [8]atomic.Int32
		parallel(min(nt, 3), nt, func(i int) {
			time.Sleep(time.Duration(i) * 10 * time.Microsecond)
			hits[i].Add(1)
		})
		for i := range hits {
			want := int32(0)
			if i < nt {
				want = 1
			}
			if got := hits[i].Load(); got != want {
				t.Errorf("nt=%d: index %d ran %d times, want %d", nt, i, got, want)
			}
		}
	}
	for rep := 0; rep < 200; rep++ {
		check(1 + rep%4)
	}
	for nt := 1; nt <= 8; nt++ {
		check(nt)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 100; rep++ {
				check(2 + rep%3)
			}
		}()
	}
	wg.Wait()
}

// TestLinearSplit holds the chunked row split to the single-thread result
// (bit-identical: each row is computed by the same kernel either way) for
// ragged row counts and several thread counts, decode (n=1) and prefill.
func TestLinearSplit(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, rows := range []int{1, 17, 100, 1000} {
		const cols = 512
		w := &ir.Tensor{Name: "w", Shape: []int{rows, cols}, Type: ir.F32, Data: make([]byte, 4*rows*cols)}
		for i := 0; i < rows*cols; i++ {
			binary.LittleEndian.PutUint32(w.Data[4*i:], math.Float32bits(float32(rng.NormFloat64())))
		}
		for _, n := range []int{1, 3} {
			x := make([]float32, n*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			want := make([]float32, n*rows)
			(&Model{threads: 1}).linear("w", w, x, want, n, nil)
			for _, nt := range []int{2, 3, 5} {
				got := make([]float32, n*rows)
				(&Model{threads: nt}).linear("w", w, x, got, n, nil)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("rows %d n %d threads %d: out[%d] = %v, want %v", rows, n, nt, i, got[i], want[i])
					}
				}
			}
		}
	}
	for _, c := range []struct{ nt, work, max, want int }{
		{2, 1 << 30, 1 << 20, 8}, {2, 1 << 18, 100, 2}, {2, 1 << 30, 1, 1}, {3, 1 << 19, 100, 3},
	} {
		if got := chunks(c.nt, c.work, c.max); got != c.want {
			t.Errorf("chunks(%d, %d, %d) = %d, want %d", c.nt, c.work, c.max, got, c.want)
		}
	}
}

// BenchmarkDecodeInt8 times decode on the synthetic TinyLlama-1.1B shape
// at 3.7 bpw with the int8 kernels, 1 and 2 threads (for profiles:
// go test -run '^$' -bench DecodeInt8 -benchtime 16x -cpuprofile cpu.out ./runtime/;
// SQUEEZE_BPW sets the rate).
func BenchmarkDecodeInt8(b *testing.B) {
	m := benchDecodeModel(b)
	logits := make([]float32, m.Config.Vocab)
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) { benchDecodeSteps(b, rt, logits) })
	}
}

// BenchmarkParallelAB compares decode on the synthetic TinyLlama-1.1B
// shape (3.7 bpw, int8 kernels, 2 threads) with parallel on the helper
// pool and with a goroutine per call, alternating in one process:
// go test -run '^$' -bench ParallelAB -benchtime 64x -count 3 ./runtime/
func BenchmarkParallelAB(b *testing.B) {
	m := benchDecodeModel(b)
	logits := make([]float32, m.Config.Vocab)
	rt, err := New(m, Options{Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer kernels.SetMode(kernels.SetMode(kernels.ModeInt8))
	prev := usePool
	defer func() { usePool = prev }()
	for _, on := range []bool{false, true, false, true} {
		name := "goroutines"
		if on {
			name = "pool"
		}
		usePool = on
		b.Run(name, func(b *testing.B) { benchDecodeSteps(b, rt, logits) })
	}
}

// benchDecodeSteps decodes b.N tokens one at a time, restarting the cache
// every 64, and reports tokens/s.
func benchDecodeSteps(b *testing.B, rt *Model, logits []float32) {
	s := rt.NewState(64)
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			s.Reset()
		}
		if err := rt.Forward(s, []int{1 + i%64}, logits, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// TestLinearsFused: a fused section (linears: q, k, v or gate, up as one
// parallel section, with a shared kernels.Input for n == 1) gives the bits
// of separate linear calls on 1 thread, for 1-3 threads, n = 1 and 3,
// int8 and float kernels, palettized (lut4, lut2, ragged rows) and f32
// weights.
func TestLinearsFused(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	const cols = 256
	lut := func(bits, rows int) *ir.Tensor {
		dt, _ := ir.LUTType(bits)
		data := make([]byte, ir.PackedBytes(bits, rows*cols))
		rng.Read(data)
		ng := (rows + 15) / 16
		pal := &ir.Palette{GroupSize: 16, LUT: make([]uint16, ng<<bits)}
		for i := range pal.LUT {
			pal.LUT[i] = ir.F32ToF16(float32(rng.NormFloat64()))
		}
		return &ir.Tensor{Name: "w", Shape: []int{rows, cols}, Type: dt, Data: data, Pal: pal}
	}
	f32 := &ir.Tensor{Name: "f", Shape: []int{300, cols}, Type: ir.F32, Data: make([]byte, 4*300*cols)}
	for i := 0; i < 300*cols; i++ {
		binary.LittleEndian.PutUint32(f32.Data[4*i:], math.Float32bits(float32(rng.NormFloat64())))
	}
	ws := []*ir.Tensor{lut(4, 1000), lut(2, 37), lut(4, 300), f32}
	for _, mode := range []kernels.Mode{kernels.ModeInt8, kernels.ModeFloat} {
		prev := kernels.SetMode(mode)
		for _, n := range []int{1, 3} {
			x := make([]float32, n*cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			want := make([][]float32, len(ws))
			for i, w := range ws {
				want[i] = make([]float32, n*w.Rows())
				(&Model{threads: 1}).linear("w", w, x, want[i], n, nil)
			}
			for _, nt := range []int{1, 2, 3} {
				var ops []linOp
				for _, w := range ws {
					ops = append(ops, linOp{"w", w, make([]float32, n*w.Rows())})
				}
				var b buffers
				in := b.input(&b.inXB, x, n)
				(&Model{threads: nt}).linears(x, n, in, ops...)
				for i, op := range ops {
					for j := range op.out {
						if math.Float32bits(op.out[j]) != math.Float32bits(want[i][j]) {
							t.Fatalf("%v n %d threads %d tensor %d: out[%d] = %v, want %v", mode, n, nt, i, j, op.out[j], want[i][j])
						}
					}
				}
			}
		}
		kernels.SetMode(prev)
	}
}

// TestGuidedCut: guided pieces cover every row of every linear once, in
// order, start on 16-row boundaries, never grow, respect the least work
// per piece, fit the 64 pieces the callers keep on the stack for the
// shapes of a 1.1B decode step, and depend on nothing but the shapes.
func TestGuidedCut(t *testing.T) {
	for _, c := range []struct {
		rows []int
		cols int
	}{
		{[]int{2048, 256, 256}, 2048}, {[]int{5632, 5632}, 2048}, {[]int{2048}, 5632},
		{[]int{32000}, 2048}, {[]int{37, 5, 300}, 64}, {[]int{16}, 4096}, {[]int{100000}, 64},
	} {
		for _, nt := range []int{2, 3, 8} {
			var got [][3]int
			total := 0
			for _, r := range c.rows {
				total += r
			}
			left := total
			for i, rows := range c.rows {
				left = guidedCut(rows, left, c.cols, nt, func(r0, r1 int) { got = append(got, [3]int{i, r0, r1}) })
			}
			if left != 0 {
				t.Fatalf("%v x %d, %d threads: %d rows left uncut", c.rows, c.cols, nt, left)
			}
			next := make([]int, len(c.rows))
			prev := -1
			for k, p := range got {
				op, r0, r1 := p[0], p[1], p[2]
				if r0 != next[op] || r1 <= r0 || r0%16 != 0 {
					t.Fatalf("%v x %d, %d threads: piece %d = %v (op %d should start at %d)", c.rows, c.cols, nt, k, p, op, next[op])
				}
				size := r1 - r0
				if r1 < c.rows[op] { // an op's last piece may be cut short
					if prev >= 0 && size > prev && k > 0 && got[k-1][0] == op {
						t.Fatalf("%v x %d, %d threads: piece %d grew: %d after %d", c.rows, c.cols, nt, k, size, prev)
					}
					if size*c.cols < minChunkWork && size > 16 {
						t.Fatalf("%v x %d: piece %d of %d rows below the least work", c.rows, c.cols, k, size)
					}
				}
				prev = size
				next[op] = r1
			}
			for i, r := range c.rows {
				if next[i] != r {
					t.Fatalf("%v: op %d cut to %d of %d rows", c.rows, i, next[i], r)
				}
			}
			if c.cols == 2048 && nt == 2 && len(got) > 64 {
				t.Fatalf("%v x %d: %d pieces, more than the 64 kept on the stack", c.rows, c.cols, len(got))
			}
		}
	}
}

// BenchmarkGuidedAB compares decode and prefill on the synthetic
// TinyLlama-1.1B shape (3.7 bpw, int8, 2 threads) with guided pieces and
// with equal chunks per linear, alternating round by round (medians of
// the per-round ratios: "speedup"):
// go test -run '^$' -bench GuidedAB -benchtime 31x ./runtime/
func BenchmarkGuidedAB(b *testing.B) {
	m := benchDecodeModel(b)
	logits := make([]float32, m.Config.Vocab)
	rt, err := New(m, Options{Threads: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer func(v bool) { guidedPieces = v }(guidedPieces)
	s := rt.NewState(160)
	prompt := make([]int, 128)
	for i := range prompt {
		prompt[i] = 1 + i
	}
	b.Run("decode", func(b *testing.B) {
		reportAB(b, func(legacy bool) float64 {
			guidedPieces = !legacy
			s.Reset()
			t0 := time.Now()
			for i := 0; i < 8; i++ {
				if err := rt.Forward(s, []int{1 + i}, logits, false); err != nil {
					b.Fatal(err)
				}
			}
			return float64(time.Since(t0).Microseconds()) / 8e3
		})
	})
	b.Run("prefill", func(b *testing.B) {
		reportAB(b, func(legacy bool) float64 {
			guidedPieces = !legacy
			s.Reset()
			t0 := time.Now()
			if err := rt.Forward(s, prompt, logits, false); err != nil {
				b.Fatal(err)
			}
			return float64(time.Since(t0).Microseconds()) / 1e3
		})
	})
}
