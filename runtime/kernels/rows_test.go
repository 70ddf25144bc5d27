package kernels

import (
	"math"
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// TestRowsSameBits: the many-rows float32 / float16 kernels (rowsF32,
// rowsF16: one assembly call for a row range, two rows at a time) give
// dotF32 / dotF16's bits row by row, for widths with and without a
// 32-element tail, even and odd row counts (two streams, an odd last row
// on its own), and MatVec over a row range uses them without touching
// the rows outside it.
func TestRowsSameBits(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	served := false
	for _, cols := range []int{8, 16, 24, 32, 40, 64, 72, 1000, 2048, 2056} {
		for _, rows := range []int{1, 2, 3, 16, 17} {
			w32 := make([]float32, rows*cols)
			w16 := make([]uint16, rows*cols)
			for i := range w32 {
				w32[i] = float32(rng.NormFloat64())
				w16[i] = ir.F32ToF16(float32(rng.NormFloat64()))
			}
			x := make([]float32, cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			out := make([]float32, rows)
			if rowsF32(w32, x, cols, out) {
				served = true
				for r := range rows {
					if want := dotF32(w32[r*cols:(r+1)*cols], x); math.Float32bits(out[r]) != math.Float32bits(want) {
						t.Fatalf("f32 %dx%d row %d: %v, want %v", rows, cols, r, out[r], want)
					}
				}
			}
			if rowsF16(w16, x, cols, out) {
				for r := range rows {
					if want := dotF16(w16[r*cols:(r+1)*cols], x); math.Float32bits(out[r]) != math.Float32bits(want) {
						t.Fatalf("f16 %dx%d row %d: %v, want %v", rows, cols, r, out[r], want)
					}
				}
			}
		}
	}
	if !served && asmBuilt && archImpl() == "avx2" {
		t.Fatal("rowsF32 served no width on an AVX2 build")
	}
	// MatVec over rows [2, 9) of a 12-row f16 tensor writes those rows only.
	const rows, cols = 12, 48
	w := benchTensor(rng, ir.F16, rows, cols)
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	out := make([]float32, rows)
	for i := range out {
		out[i] = -7
	}
	MatVec(w, x, out, 2, 9)
	ref := make([]float32, rows)
	matVecSlow(w, x, ref, 0, rows)
	for r := range rows {
		if r < 2 || r >= 9 {
			if out[r] != -7 {
				t.Fatalf("row %d outside [2, 9) written: %v", r, out[r])
			}
		} else if d := math.Abs(float64(out[r] - ref[r])); d > 1e-4*(1+math.Abs(float64(ref[r]))) {
			t.Fatalf("row %d: %v, reference %v", r, out[r], ref[r])
		}
	}
}
