package kernels

import (
	"math"
	"math/rand"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/squeeze-ml/squeeze/ir"
)

// TestMatVecInputParity: MatVecInput with one Input shared by tensors of
// several widths (lut4, lut2, lut3, f32; the second width copies the first
// width's quantization) and by concurrent row ranges gives exactly
// MatVec's bits, in both modes, on ragged row counts and cols that do and
// do not suit the int8 kernels, with and without Input.Prepare.
func TestMatVecInputParity(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, mode := range []Mode{ModeInt8, ModeFloat} {
		prev := SetMode(mode)
		for _, cols := range []int{64, 128, 384, 2048, 200} {
			var ws []*ir.Tensor
			for _, bits := range []int{4, 2, 3, 4} {
				ws = append(ws, lutTensor(rng, bits, 37, cols, 16, bits == 2))
			}
			ws = append(ws, f32Tensor(rng, 5, cols))
			var in Input
			for rep := 0; rep < 2; rep++ {
				x := randVec(rng, cols)
				in.Reset(x)
				if rep == 1 {
					// Prepare quantizes up front, for exactly the layouts the
					// int8 kernels will run, and changes no bits
					in.Prepare(ws...)
					int8 := mode == ModeInt8 && i8Asm()
					want := [2]bool{int8 && cols%64 == 0, int8 && cols%128 == 0}
					if in.ok != want {
						t.Fatalf("%v cols %d: after Prepare layouts ready %v, want %v", mode, cols, in.ok, want)
					}
				}
				for _, w := range ws {
					rows := w.Rows()
					want := make([]float32, rows)
					MatVec(w, x, want, 0, rows)
					got := make([]float32, rows)
					concurrentRanges(rows, 3, func(r0, r1 int) { MatVecInput(w, &in, got, r0, r1) })
					for r := range got {
						if math.Float32bits(got[r]) != math.Float32bits(want[r]) {
							t.Fatalf("%v cols %d %v row %d: MatVecInput %v, MatVec %v", mode, cols, w.Type, r, got[r], want[r])
						}
					}
				}
			}
		}
		SetMode(prev)
	}
}

// concurrentRanges runs f over rows [0, cut), [cut, 17), [17, rows) (each
// clipped to rows) on concurrent goroutines and waits for them.
func concurrentRanges(rows, cut int, f func(r0, r1 int)) {
	var wg sync.WaitGroup
	for _, rr := range [][2]int{{0, cut}, {cut, 17}, {17, rows}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(min(rr[0], rows), min(rr[1], rows))
		}()
	}
	wg.Wait()
}

func f32Tensor(rng *rand.Rand, rows, cols int) *ir.Tensor {
	w := &ir.Tensor{Name: "w", Shape: []int{rows, cols}, Type: ir.F32, Data: make([]byte, 4*rows*cols)}
	for i := 0; i < rows*cols; i++ {
		v := math.Float32bits(float32(rng.NormFloat64()))
		w.Data[4*i], w.Data[4*i+1], w.Data[4*i+2], w.Data[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return w
}

// TestI8FastCache: the address-keyed front of the int8 table cache returns
// the same tables as the weak-keyed cache, does not serve another width,
// and its entry goes when the palette is collected. It looks at its own
// palette's entry only: other tests' palettes are collected (and their
// entries removed) at times of the garbage collector's choosing, so a
// count of all entries is not stable.
func TestI8FastCache(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	var addr uintptr
	var entry *i8Entry
	func() {
		w := lutTensor(rng, 4, 32, 128, 8, false)
		addr = uintptr(unsafe.Pointer(w.Pal))
		a := i8TableOf(w, 4)
		if b := i8TableOf(w, 4); a != b {
			t.Fatal("fast lookup returned other tables")
		}
		v, ok := i8Fast.Load(addr)
		if !ok || v.(*i8Entry).get() != a {
			t.Fatal("the fast cache has no entry for the palette's 4-bit tables")
		}
		if c := i8TableOf(w, 2); c == a {
			t.Fatal("a lookup for another width got the 4-bit tables")
		}
		v, ok = i8Fast.Load(addr)
		if !ok || v.(*i8Entry).bits != 2 {
			t.Fatal("the fast cache does not hold the palette's latest (2-bit) entry")
		}
		entry = v.(*i8Entry)
	}()
	gone := func() bool {
		v, ok := i8Fast.Load(addr)
		return !ok || v.(*i8Entry) != entry // removed, or the address reused by a new palette
	}
	deadline := time.Now().Add(2 * time.Second)
	for !gone() && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if !gone() {
		t.Fatal("the fast cache kept the entry of a collected palette")
	}
}

// TestF16ToF32Exact: the vector float16 conversion (VCVTPH2PS on amd64)
// gives f16's bits for every half value but NaNs (which stay NaN), so
// the int8 rows' scale epilogue (f16ToF32 in blocks of 64) is
// bit-identical to the per-row f16 it replaced.
func TestF16ToF32Exact(t *testing.T) {
	src := make([]uint16, 1<<16+5)
	for i := range src {
		src[i] = uint16(i)
	}
	dst := make([]float32, len(src))
	f16ToF32(src, dst)
	for i, h := range src {
		want := f16(h)
		if want != want {
			if dst[i] == dst[i] {
				t.Fatalf("%#04x: got %v, want NaN", h, dst[i])
			}
			continue
		}
		if math.Float32bits(dst[i]) != math.Float32bits(want) {
			t.Fatalf("%#04x: f16ToF32 %v, f16 %v", h, dst[i], want)
		}
	}
}

// TestMatMulInputParity: MatMulInput on a batch that PrepareBatch
// quantized once (in token chunks on concurrent goroutines) gives exactly
// MatMul's bits, for tensors of every width sharing the Input (a LUTMIX
// among them), concurrent row ranges, batches that do and do not fill the
// tile's 4 tokens, and cols that do and do not suit the int8 kernels;
// PrepareBatch readies exactly the layouts the tile kernels run, and
// without it MatMulInput falls back to MatMul's own quantization.
func TestMatMulInputParity(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	par := func(n int, f func(c int)) {
		var wg sync.WaitGroup
		for c := 0; c < n; c++ {
			wg.Add(1)
			go func() { defer wg.Done(); f(c) }()
		}
		wg.Wait()
	}
	for _, mode := range []Mode{ModeInt8, ModeFloat} {
		prev := SetMode(mode)
		for _, cols := range []int{128, 384, 2048, 200} {
			var ws []*ir.Tensor
			for _, bits := range []int{4, 2, 3} {
				ws = append(ws, lutTensor(rng, bits, 37, cols, 16, bits == 2))
			}
			ws = append(ws, mixedTensor(rng, cols), f32Tensor(rng, 5, cols))
			var in Input
			for _, n := range []int{2, 5, 8, 19} {
				x := randVec(rng, n*cols)
				in.ResetBatch(x, n)
				prepared := n != 5 // n = 5: MatMulInput quantizes per call
				if prepared {
					in.PrepareBatch(par, ws...)
				}
				int8 := mode == ModeInt8 && i8Asm() && i8TileBits(4) && prepared
				want := [2]bool{int8 && cols%64 == 0, int8 && cols%128 == 0}
				if in.bok != want {
					t.Fatalf("%v cols %d n %d: after PrepareBatch layouts ready %v, want %v", mode, cols, n, in.bok, want)
				}
				for _, w := range ws {
					rows := w.Rows()
					wantOut := make([]float32, n*rows)
					MatMul(w, x, wantOut, n, 0, rows)
					got := make([]float32, n*rows)
					concurrentRanges(rows, 6, func(r0, r1 int) { MatMulInput(w, &in, got, r0, r1) })
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(wantOut[i]) {
							t.Fatalf("%v cols %d n %d %v: out[%d] MatMulInput %v, MatMul %v", mode, cols, n, w.Type, i, got[i], wantOut[i])
						}
					}
				}
			}
		}
		SetMode(prev)
	}
}
