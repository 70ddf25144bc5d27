package kernels

import (
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// TestMatMulPanelBlocks holds the float-mode MatMul to the reference on
// shapes that cross every boundary of gemm.go: several row panels with a
// last panel that is not a multiple of 3, several column blocks with a
// cols%8 tail, and token counts that leave partial quads.
func TestMatMulPanelBlocks(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(11))
		ws := []*ir.Tensor{
			floatTensor(rng, ir.F32, 53, 1100),
			floatTensor(rng, ir.F16, 29, 1030),
			lutTensor(rng, 4, 53, 1024, 16, true),
			lutTensor(rng, 3, 31, 640, 7, false),
		}
		for _, w := range ws {
			rows, cols := w.Rows(), w.Cols()
			for _, n := range []int{2, 5, 8} {
				x := randVec(rng, n*cols)
				got := make([]float32, n*rows)
				MatMul(w, x, got, n, 1, rows)
				for i := 0; i < n; i++ {
					xi := x[i*cols : (i+1)*cols]
					want := make([]float32, rows)
					matVecRef(w, xi, want, 1, rows)
					sc := absScale(w, xi)
					for r := 1; r < rows; r++ {
						if g := got[i*rows+r]; !closeTo(g, want[r], sc[r]) {
							t.Fatalf("%s %v n=%d token %d row %d: %v, reference %v", ir.Encodings[w.Type].Name, w.Shape, n, i, r, g, want[r])
						}
					}
					if got[i*rows] != 0 {
						t.Fatalf("%s: MatMul wrote row 0, outside [1,%d)", ir.Encodings[w.Type].Name, rows)
					}
				}
			}
		}
	})
}

// TestMatMulSplitInvariant checks the promise the runtime's threading and
// calibration's determinism rest on: every output of MatMul is the same bits
// whatever row range it was computed in and whatever batch of (two or more)
// tokens it came with.
func TestMatMulSplitInvariant(t *testing.T) {
	withPaths(t, func(t *testing.T) {
		rng := rand.New(rand.NewSource(12))
		for _, w := range []*ir.Tensor{floatTensor(rng, ir.F32, 50, 1036), lutTensor(rng, 3, 50, 520, 16, true)} {
			rows, cols := w.Rows(), w.Cols()
			const n = 7
			x := randVec(rng, n*cols)
			full := make([]float32, n*rows)
			MatMul(w, x, full, n, 0, rows)
			// Rows in uneven pieces.
			split := make([]float32, n*rows)
			for _, rr := range [][2]int{{0, 1}, {1, 11}, {11, 26}, {26, 50}} {
				MatMul(w, x, split, n, rr[0], rr[1])
			}
			// Tokens in batches of 2 and 5.
			batched := make([]float32, n*rows)
			MatMul(w, x[:2*cols], batched[:2*rows], 2, 0, rows)
			MatMul(w, x[2*cols:], batched[2*rows:], 5, 0, rows)
			for i := range full {
				if split[i] != full[i] || batched[i] != full[i] {
					t.Fatalf("%s token %d row %d: full %v, row split %v, token batches %v",
						ir.Encodings[w.Type].Name, i/rows, i%rows, full[i], split[i], batched[i])
				}
			}
		}
	})
}
