package kernels

import (
	"github.com/squeeze-ml/squeeze/ir"
)

// MatVec computes out[r] = sum_c W[r,c] * x[c] for rows r in [r0, r1) of the
// weight tensor w (any encoding). out has len >= r1 (indexed by row), x has
// len w.Cols().
func MatVec(w *ir.Tensor, x, out []float32, r0, r1 int) {
	if w.Type == ir.F32 {
		cols := w.Cols()
		wf := w.F32()
		for r := r0; r < r1; r++ {
			out[r] = Dot(wf[r*cols:(r+1)*cols], x)
		}
		return
	}
	matVecRef(w, x, out, r0, r1)
}

// MatMul computes, for each of n input vectors x[i*cols:(i+1)*cols], the
// rows [r0, r1) of W x into out[i*rows + r].
func MatMul(w *ir.Tensor, x, out []float32, n, r0, r1 int) {
	rows, cols := w.Rows(), w.Cols()
	for i := 0; i < n; i++ {
		MatVec(w, x[i*cols:(i+1)*cols], out[i*rows:(i+1)*rows], r0, r1)
	}
}

// matVecRef decodes one row at a time with the encoding's reference decoder.
func matVecRef(w *ir.Tensor, x, out []float32, r0, r1 int) {
	row := make([]float32, w.Cols())
	for r := r0; r < r1; r++ {
		w.DecodeRow(r, row)
		out[r] = Dot(row, x)
	}
}

// Dot is the float32 dot product, accumulated in float32 in order (as
// llama2.c's matmul does), which the golden tests rely on.
func Dot(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}
