package kernels

import "github.com/squeeze-ml/squeeze/ir"

// A LUTMIX tensor (per-group bit allocation) is a stack of ordinary
// palettized parts; every product runs each part's own fast path on the
// rows of [r0, r1) that fall in it. The arithmetic of a row is the same as
// if its part were a tensor of its own, so results do not depend on the
// row split.

// eachPart calls f for every part of w that overlaps rows [r0, r1), with
// the part's first row in w (off) and the overlap in the part's rows.
func eachPart(w *ir.Tensor, r0, r1 int, f func(p *ir.Tensor, off, p0, p1 int)) {
	off := 0
	for _, p := range w.Parts {
		n := p.Rows()
		if a, b := max(r0, off), min(r1, off+n); a < b {
			f(p, off, a-off, b-off)
		}
		off += n
		if off >= r1 {
			return
		}
	}
}

func matVecMixed(w *ir.Tensor, x, out []float32, r0, r1 int) {
	eachPart(w, r0, r1, func(p *ir.Tensor, off, p0, p1 int) { MatVec(p, x, out[off:], p0, p1) })
}

func matVecInputMixed(w *ir.Tensor, in *Input, out []float32, r0, r1 int) {
	eachPart(w, r0, r1, func(p *ir.Tensor, off, p0, p1 int) { MatVecInput(p, in, out[off:], p0, p1) })
}

// matMulInputMixed is matMulMixed with MatMulInput on the parts.
func matMulInputMixed(w *ir.Tensor, in *Input, out []float32, r0, r1 int) {
	mixedBatch(w, out, in.n, r0, r1, func(p *ir.Tensor, tmp []float32, p0, p1 int) { MatMulInput(p, in, tmp, p0, p1) })
}

// matMulMixed multiplies part by part: a part's MatMul writes its outputs
// with the part's row stride into a pooled buffer, scattered into out
// (stride w.Rows()).
func matMulMixed(w *ir.Tensor, x, out []float32, n, r0, r1 int) {
	mixedBatch(w, out, n, r0, r1, func(p *ir.Tensor, tmp []float32, p0, p1 int) { MatMul(p, x, tmp, n, p0, p1) })
}

// mixedBatch runs mul on each part's rows of [r0, r1) into a pooled
// buffer of the part's row stride and scatters them into out.
func mixedBatch(w *ir.Tensor, out []float32, n, r0, r1 int, mul func(p *ir.Tensor, tmp []float32, p0, p1 int)) {
	rows := w.Rows()
	eachPart(w, r0, r1, func(p *ir.Tensor, off, p0, p1 int) {
		pr := p.Rows()
		bp := getBuf(n * pr)
		defer putBuf(bp)
		tmp := (*bp)[:n*pr]
		mul(p, tmp, p0, p1)
		for i := 0; i < n; i++ {
			copy(out[i*rows+off+p0:i*rows+off+p1], tmp[i*pr+p0:i*pr+p1])
		}
	})
}
