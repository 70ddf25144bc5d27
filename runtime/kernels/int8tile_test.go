package kernels

import (
	"math"
	"math/rand"
	"testing"
)

// TestMatMulInt8Tile holds MatMul in ModeInt8 (the lut4 tile kernel; the
// per-token row kernel for lut2/lut3) to the scalar reference of the same
// integer arithmetic (i8RowRef, token by token) within float rounding and
// to the float reference within the int8 path's quantization bound, for
// ragged token counts, odd row counts, row ranges starting at multiples
// of 16 and elsewhere, group sizes that split the 2-row tiles, and row
// scales on and off. Rows outside [r0, r1) must stay untouched.
func TestMatMulInt8Tile(t *testing.T) {
	if !i8Asm() {
		t.Skip("no int8 kernels in this build or on this CPU")
	}
	defer SetMode(SetMode(ModeInt8))
	rng := rand.New(rand.NewSource(21))
	type shape struct{ bits, rows, cols int }
	shapes := []shape{{4, 37, 64}, {4, 48, 192}, {4, 33, 2048}, {4, 2, 128}, {4, 1, 64}, {2, 37, 256}, {3, 21, 128}, {4, 19, 2304}, {2, 17, 2176}, {3, 17, 2176}}
	for _, sh := range shapes {
		for gi, gs := range []int{1, 7, 16, sh.rows} {
			for _, scales := range []bool{false, true} {
				w := lutTensor(rng, sh.bits, sh.rows, sh.cols, gs, scales)
				rows, cols := sh.rows, sh.cols
				ns := []int{1, 3, 5}
				if gi == 2 && scales && cols <= 192 {
					ns = append(ns, 128)
				}
				for _, n := range ns {
					x := randVec(rng, n*cols)
					// per token: int8 reference, its rounding scale, the
					// quantization bound and the float reference, all rows
					want := make([][4][]float32, n)
					for i := 0; i < n; i++ {
						xi := x[i*cols : (i+1)*cols]
						e := &want[i]
						e[0], e[1], e[2] = i8Expect(w, xi, 0, rows)
						e[3] = make([]float32, rows)
						matVecRef(w, xi, e[3], 0, rows)
					}
					for _, rr := range [][2]int{{0, rows}, {16, rows}, {16, 17}, {32, rows}, {3, rows - 1}} {
						r0, r1 := rr[0], min(rr[1], rows)
						if r0 < 0 || r0 >= r1 {
							continue
						}
						got := make([]float32, n*rows)
						for i := range got {
							got[i] = -7
						}
						MatMul(w, x, got, n, r0, r1)
						for i := 0; i < n; i++ {
							ref8, ref, quant, fl := want[i][0], want[i][1], want[i][2], want[i][3]
							for r := 0; r < rows; r++ {
								g := got[i*rows+r]
								if r < r0 || r >= r1 {
									if g != -7 {
										t.Fatalf("lut%d %dx%d n %d token %d: row %d outside [%d,%d) written", sh.bits, rows, cols, n, i, r, r0, r1)
									}
									continue
								}
								if d := math.Abs(float64(g - ref8[r])); d > 1e-5*float64(ref[r])+1e-6 {
									t.Fatalf("lut%d %dx%d gs %d scales %v n %d rows [%d,%d) token %d row %d: %v, int8 reference %v (tol %g)",
										sh.bits, rows, cols, gs, scales, n, r0, r1, i, r, g, ref8[r], 1e-5*ref[r])
								}
								if d := math.Abs(float64(g - fl[r])); d > 1.001*float64(quant[r])+1e-5*float64(ref[r])+1e-6 {
									t.Fatalf("lut%d %dx%d n %d token %d row %d: int8 %v vs float %v: error %g above the quantization bound %g",
										sh.bits, rows, cols, n, i, r, g, fl[r], d, quant[r])
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulInt8TileDeterministic checks that the tile kernel gives the
// same bits whatever the row range split (as the runtime's threads cut
// it) and from one call to the next.
func TestMatMulInt8TileDeterministic(t *testing.T) {
	if !i8Asm() {
		t.Skip("no int8 kernels")
	}
	defer SetMode(SetMode(ModeInt8))
	rng := rand.New(rand.NewSource(22))
	const rows, cols, n = 96, 256, 7
	w := lutTensor(rng, 4, rows, cols, 16, true)
	x := randVec(rng, n*cols)
	a := make([]float32, n*rows)
	b := make([]float32, n*rows)
	MatMul(w, x, a, n, 0, rows)
	MatMul(w, x, b, n, 0, 48)
	MatMul(w, x, b, n, 48, 80)
	MatMul(w, x, b, n, 80, rows)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("element %d: %v over all rows, %v split at 48 and 80", i, a[i], b[i])
		}
	}
}

// TestMatMulInt8TileAllocs checks the tile path is allocation-free once
// its pools are warm.
func TestMatMulInt8TileAllocs(t *testing.T) {
	if !i8Asm() {
		t.Skip("no int8 kernels")
	}
	if raceEnabled {
		t.Skip("-race: sync.Pool drops pooled buffers on purpose")
	}
	defer SetMode(SetMode(ModeInt8))
	rng := rand.New(rand.NewSource(23))
	const rows, cols, n = 64, 512, 9
	for _, bits := range []int{2, 3, 4} {
		w := lutTensor(rng, bits, rows, cols, 16, true)
		x := randVec(rng, n*cols)
		out := make([]float32, n*rows)
		MatMul(w, x, out, n, 0, rows)
		if a := testing.AllocsPerRun(20, func() { MatMul(w, x, out, n, 0, rows) }); a > 0 {
			t.Fatalf("lut%d MatMul int8 tile path: %v allocations per call", bits, a)
		}
	}
}

// TestAxpy holds Axpy to the scalar loop within one rounding per element
// (the SIMD path fuses the multiply-add), for lengths around the 8- and
// 32-element steps, on the assembly and the pure-Go path.
func TestAxpy(t *testing.T) {
	rng := rand.New(rand.NewSource(24))
	for _, asm := range []bool{true, false} {
		prev := setAsm(asm)
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 100} {
			x, y := randVec(rng, n+3), randVec(rng, n)
			a := float32(rng.NormFloat64())
			want := make([]float32, n)
			for i := range want {
				want[i] = float32(float64(y[i]) + float64(a)*float64(x[i]))
			}
			Axpy(a, x, y)
			for i := range y {
				tol := 1e-6 * (math.Abs(float64(want[i])) + math.Abs(float64(a*x[i])))
				if d := math.Abs(float64(y[i] - want[i])); d > tol {
					t.Fatalf("asm %v n %d element %d: %v, want %v", asm, n, i, y[i], want[i])
				}
			}
		}
		setAsm(prev)
	}
}
