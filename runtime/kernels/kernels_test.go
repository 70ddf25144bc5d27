package kernels

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// withPaths runs f once with the assembly paths (when this machine has
// them) and once with the pure-Go fast paths.
// The float parity tests run in ModeFloat; int8_test.go covers ModeInt8.
func withPaths(t *testing.T, f func(t *testing.T)) {
	defer SetMode(SetMode(ModeFloat))
	for _, asm := range []bool{true, false} {
		prev := setAsm(asm)
		t.Run(fmt.Sprintf("asm=%v", asm), f)
		setAsm(prev)
	}
}

// close reports whether got is within tol of want relative to scale, the
// sum of |w*x| of the row (the natural size of a dot product's rounding).
func closeTo(got, want, scale float32) bool {
	d := math.Abs(float64(got - want))
	return d <= 1e-5*float64(scale)+1e-6
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// lutTensor makes a random palettized tensor.
func lutTensor(rng *rand.Rand, bits, rows, cols, groupSize int, scales bool) *ir.Tensor {
	dt, _ := ir.LUTType(bits)
	idx := make([]uint8, rows*cols)
	for i := range idx {
		idx[i] = uint8(rng.Intn(1 << bits))
	}
	ng := (rows + groupSize - 1) / groupSize
	pal := &ir.Palette{GroupSize: groupSize, LUT: make([]uint16, ng<<bits)}
	for i := range pal.LUT {
		pal.LUT[i] = ir.F32ToF16(float32(rng.NormFloat64()))
	}
	if scales {
		pal.Scales = make([]uint16, rows)
		for i := range pal.Scales {
			pal.Scales[i] = ir.F32ToF16(0.5 + rng.Float32())
		}
	}
	w := &ir.Tensor{Name: "w", Shape: []int{rows, cols}, Type: dt, Data: ir.PackIndices(bits, idx), Pal: pal}
	if err := w.Check(); err != nil {
		panic(err)
	}
	return w
}

// absScale returns, per row, sum_c |W[r,c] * x[c]|.
func absScale(w *ir.Tensor, x []float32) []float32 {
	rows, cols := w.Rows(), w.Cols()
	row := make([]float32, cols)
	s := make([]float32, rows)
	for r := 0; r < rows; r++ {
		w.DecodeRow(r, row)
		for c, v := range row {
			s[r] += float32(math.Abs(float64(v * x[c])))
		}
	}
	return s
}

func checkMatVec(t *testing.T, w *ir.Tensor, x []float32, r0, r1 int) {
	t.Helper()
	rows := w.Rows()
	got := make([]float32, rows)
	want := make([]float32, rows)
	for i := range got {
		got[i] = -7 // rows outside [r0, r1) must stay untouched
		want[i] = -7
	}
	MatVec(w, x, got, r0, r1)
	matVecRef(w, x, want, r0, r1)
	sc := absScale(w, x)
	for r := range got {
		if !closeTo(got[r], want[r], sc[r]) {
			t.Fatalf("%s %v rows [%d,%d): row %d = %v, reference %v", ir.Encodings[w.Type].Name, w.Shape, r0, r1, r, got[r], want[r])
		}
	}
}

func TestMatVecLUTParity(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		// cols: block-aligned for every width (128, 256), aligned for some
		// widths only (32, 64, 96, 160) and ragged (33, 100) -> fallback.
		for _, bits := range ir.PaletteBits {
			for _, cols := range []int{32, 33, 64, 96, 100, 128, 160, 256} {
				for _, rows := range []int{1, 5, 16, 37} {
					for _, gs := range []int{1, 16, rows, 7} {
						for _, sc := range []bool{false, true} {
							w := lutTensor(rng, bits, rows, cols, gs, sc)
							x := randVec(rng, cols)
							checkMatVec(t, w, x, 0, rows)
							if rows > 16 {
								checkMatVec(t, w, x, 16, rows)
							}
						}
					}
				}
			}
		}
	})
}

func TestMatVecLUTLarge(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(2))
		for _, bits := range ir.PaletteBits {
			w := lutTensor(rng, bits, 48, 2048, 16, true)
			checkMatVec(t, w, randVec(rng, 2048), 0, 48)
			checkMatVec(t, w, randVec(rng, 2048), 32, 48)
		}
	})
}

func floatTensor(rng *rand.Rand, dt ir.DType, rows, cols int) *ir.Tensor {
	v := randVec(rng, rows*cols)
	w := ir.NewF32("w", v, rows, cols)
	if dt == ir.F16 {
		w.Type = ir.F16
		w.Data = make([]byte, 2*len(v))
		for i, f := range v {
			h := ir.F32ToF16(f)
			w.Data[2*i], w.Data[2*i+1] = byte(h), byte(h>>8)
		}
	}
	return w
}

func TestMatVecFloatParity(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(3))
		for _, dt := range []ir.DType{ir.F32, ir.F16} {
			for _, cols := range []int{1, 7, 8, 9, 31, 32, 33, 100, 256, 1000} {
				w := floatTensor(rng, dt, 19, cols)
				x := randVec(rng, cols)
				checkMatVec(t, w, x, 0, 19)
				checkMatVec(t, w, x, 3, 17)
			}
		}
		// bf16 goes through the generic fallback.
		w := floatTensor(rng, ir.F32, 5, 40)
		w.Type, w.Data = ir.BF16, make([]byte, 2*200)
		rng.Read(w.Data)
		for i := 1; i < len(w.Data); i += 2 {
			w.Data[i] = 0x3f &^ 0x40 // finite values
		}
		checkMatVec(t, w, randVec(rng, 40), 0, 5)
	})
}

func TestMatMulParity(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(4))
		var ws []*ir.Tensor
		for _, bits := range ir.PaletteBits {
			ws = append(ws, lutTensor(rng, bits, 21, 256, 4, true), lutTensor(rng, bits, 9, 100, 9, false))
		}
		ws = append(ws, floatTensor(rng, ir.F32, 13, 77), floatTensor(rng, ir.F16, 13, 64))
		for _, w := range ws {
			rows, cols := w.Rows(), w.Cols()
			for _, n := range []int{1, 3, 4, 9} {
				x := randVec(rng, n*cols)
				got := make([]float32, n*rows)
				MatMul(w, x, got, n, 2, rows)
				for i := 0; i < n; i++ {
					xi := x[i*cols : (i+1)*cols]
					want := make([]float32, rows)
					matVecRef(w, xi, want, 2, rows)
					sc := absScale(w, xi)
					for r := 2; r < rows; r++ {
						if g := got[i*rows+r]; !closeTo(g, want[r], sc[r]) {
							t.Fatalf("%s %v n=%d token %d row %d: %v, reference %v", ir.Encodings[w.Type].Name, w.Shape, n, i, r, g, want[r])
						}
					}
					if got[i*rows] != 0 || got[i*rows+1] != 0 {
						t.Fatalf("MatMul wrote outside rows [2,%d)", rows)
					}
				}
			}
		}
	})
}

func TestDotAndSum(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(5))
		for _, n := range []int{0, 1, 7, 8, 15, 64, 65, 1000, 4099, 4160} {
			a, b := randVec(rng, n), randVec(rng, n)
			var sc, s, sref float32
			for i := range a {
				sc += float32(math.Abs(float64(a[i] * b[i])))
				sref += a[i]
				s += float32(math.Abs(float64(a[i])))
			}
			if got, want := Dot(a, b), dotRef(a, b); !closeTo(got, want, sc) {
				t.Fatalf("Dot n=%d: %v, reference %v", n, got, want)
			}
			if got := Sum(a); !closeTo(got, sref, s) {
				t.Fatalf("Sum n=%d: %v, reference %v", n, got, sref)
			}
			if got := Sum2(a); !closeTo(got, sref, s) {
				t.Fatalf("Sum2 n=%d: %v, reference %v", n, got, sref)
			}
			var o4 [4]float32
			if n > 0 {
				x := randVec(rng, 4*n+3)
				dot4(a, x, n+1, &o4)
				for i := 0; i < 4; i++ {
					xi := x[i*(n+1) : i*(n+1)+n]
					if want := dotRef(a, xi); !closeTo(o4[i], want, 4*sc+float32(n)) {
						t.Fatalf("dot4 n=%d i=%d: %v, reference %v", n, i, o4[i], want)
					}
				}
			}
		}
	})
}

// TestFastPathSelected checks that the default build picks the assembly
// kernels on a CPU that has AVX2, FMA and F16C.
func TestFastPathSelected(t *testing.T) {
	if runtime.GOARCH != "amd64" || !asmBuilt {
		t.Skipf("no assembly kernels on %s yet; Impl() = %q", runtime.GOARCH, Impl())
	}
	if !hasAVX2FMA() {
		t.Skip("CPU lacks AVX2/FMA/F16C")
	}
	if Impl() != "avx2" {
		t.Fatalf("Impl() = %q on an AVX2 CPU, want avx2", Impl())
	}
}

// TestMatVecNoAllocs: MatVec allocates nothing in steady state, on the
// float and the int8 path (two-stream row pairs included), for LUT widths
// and f32/f16 rows.
func TestMatVecNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("-race: sync.Pool drops pooled buffers on purpose")
	}
	rng := rand.New(rand.NewSource(6))
	ws := []*ir.Tensor{benchTensor(rng, ir.F32, 64, 256), benchTensor(rng, ir.F16, 64, 256)}
	for _, bits := range []int{4, 3, 2, 8} {
		ws = append(ws, lutTensor(rng, bits, 64, 256, 16, true))
	}
	for _, mode := range []Mode{ModeFloat, ModeInt8} {
		prev := SetMode(mode)
		for _, w := range ws {
			x := randVec(rng, 256)
			out := make([]float32, 64)
			MatVec(w, x, out, 0, 64)
			if a := testing.AllocsPerRun(50, func() { MatVec(w, x, out, 16, 64) }); a > 0.1 {
				t.Errorf("%v %v MatVec allocates %.1f times per call", mode, w.Type, a)
			}
		}
		SetMode(prev)
	}
}

// TestMatVecLUTRaggedSameBits: palettized rows the plane layouts do not
// take (matVecLUTRagged: 33, 100, 172 columns, and 64 for the 3- and 1-bit
// planes) give matVecSlow's results bit for bit, from any first row, without
// allocating; rows wider than its chunk go to matVecSlow.
func TestMatVecLUTRaggedSameBits(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, bits := range ir.PaletteBits {
		for _, cols := range []int{33, 64, 100, 172, raggedChunk + 1} {
			w := lutTensor(rng, bits, 37, cols, 5, true)
			if _, ok := layoutOf(w); ok {
				continue // a plane-layout width: not this path
			}
			x := randVec(rng, cols)
			got, want := make([]float32, 37), make([]float32, 37)
			for _, r0 := range []int{0, 3, 36} {
				clear(got)
				clear(want)
				MatVec(w, x, got, r0, 37)
				matVecSlow(w, x, want, r0, 37)
				for r := range got {
					if got[r] != want[r] {
						t.Fatalf("lut%d cols %d rows [%d,37): row %d = %v, matVecSlow %v", bits, cols, r0, r, got[r], want[r])
					}
				}
			}
			if cols <= raggedChunk {
				if !matVecLUTRagged(w, x, got, 0, 37) {
					t.Fatalf("lut%d cols %d: not served by the ragged path", bits, cols)
				}
				if a := testing.AllocsPerRun(20, func() { MatVec(w, x, got, 1, 37) }); a > 0.1 {
					t.Errorf("lut%d cols %d: MatVec allocates %.1f times per call", bits, cols, a)
				}
			} else if matVecLUTRagged(w, x, got, 0, 37) {
				t.Errorf("cols %d > raggedChunk served by the ragged path", cols)
			}
		}
	}
}

// TestGather8: the AVX2 table gather gives tab[idx[i]] for every index
// value and ragged lengths (tails in Go).
func TestGather8(t *testing.T) {
	var tab [256]float32
	for i := range tab {
		tab[i] = float32(i)*0.5 - 7
	}
	idx := make([]byte, 300)
	for i := range idx {
		idx[i] = byte(255 - i%256)
	}
	for _, n := range []int{8, 13, 256, 300} {
		dst := make([]float32, n)
		if !gather8(idx, &tab, dst) {
			t.Skip("no assembly")
		}
		for i, v := range dst {
			if v != tab[idx[i]] {
				t.Fatalf("n %d element %d: %v, want %v", n, i, v, tab[idx[i]])
			}
		}
	}
}
