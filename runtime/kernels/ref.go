package kernels

import (
	"sync"
	"unsafe"

	"github.com/squeeze-ml/squeeze/ir"
)

// MatVec computes out[r] = sum_c W[r,c] * x[c] for rows r in [r0, r1) of the
// weight tensor w (any encoding). out has len >= r1 (indexed by row), x has
// len w.Cols(). It is single-threaded and allocation-free in steady state;
// callers split row ranges across goroutines.
func MatVec(w *ir.Tensor, x, out []float32, r0, r1 int) {
	if r0 >= r1 {
		return
	}
	switch w.Type {
	case ir.LUTMIX:
		matVecMixed(w, x, out, r0, r1)
		return
	case ir.F32:
		if wf, ok := f32View(w); ok {
			cols := w.Cols()
			x = x[:cols]
			if rowsF32(wf[r0*cols:r1*cols], x, cols, out[r0:r1]) {
				return
			}
			for r := r0; r < r1; r++ {
				out[r] = dotF32(wf[r*cols:(r+1)*cols], x)
			}
			return
		}
	case ir.F16:
		if wh, ok := f16View(w); ok {
			cols := w.Cols()
			x = x[:cols]
			if rowsF16(wh[r0*cols:r1*cols], x, cols, out[r0:r1]) {
				return
			}
			for r := r0; r < r1; r++ {
				out[r] = dotF16(wh[r*cols:(r+1)*cols], x)
			}
			return
		}
	case ir.LUT1, ir.LUT2, ir.LUT3, ir.LUT4, ir.LUT6, ir.LUT8:
		if L, ok := layoutOf(w); ok {
			if CurrentMode() == ModeInt8 && matVecLUTI8(w, &L, x, out, r0, r1) {
				return
			}
			matVecLUT(w, &L, x, out, r0, r1)
			return
		}
		if matVecLUTRagged(w, x, out, r0, r1) {
			return
		}
	}
	matVecSlow(w, x, out, r0, r1)
}

// raggedChunk is how many indices matVecLUTRagged unpacks per call.
const raggedChunk = 4096

// matVecLUTRagged serves palettized rows the plane layouts do not take
// (cols not a multiple of 128/p: stories260K's 172-wide ffn_down, and its
// 64-wide lut3 rows, whose 1-bit plane wants 128): the indices of whole
// rows, up to raggedChunk at a time, are unpacked in one
// ir.UnpackIndexRange call, so nearly every 16-byte block is unpacked
// whole, instead of row by row; each row is then its group's entries times
// the row scale (the values DecodeRow gives) and the same dot product as
// matVecSlow, so the results are bit-identical to it. stories260K decodes
// 3.6x faster than with the per-element decoder (docs/PERF.md, session 8).
// It reports false for tensors it cannot serve.
func matVecLUTRagged(w *ir.Tensor, x, out []float32, r0, r1 int) bool {
	enc, ok := ir.Encodings[w.Type]
	cols, n := w.Cols(), w.Elems()
	if !ok || enc.Bits == 0 || w.Pal == nil || w.Pal.GroupSize <= 0 || cols <= 0 || cols > raggedChunk ||
		int64(len(w.Data)) < ir.PackedBytes(enc.Bits, n) || len(w.Pal.LUT) < w.NumGroups()<<enc.Bits ||
		(w.Pal.Scales != nil && len(w.Pal.Scales) < w.Rows()) {
		return false
	}
	bits, k, gs := enc.Bits, 1<<enc.Bits, w.Pal.GroupSize
	x = x[:cols]
	bp := getBuf(cols)
	defer putBuf(bp)
	row := (*bp)[:cols]
	var idx [raggedChunk]uint8
	var tab [256]float32
	per := raggedChunk / cols
	for r := r0; r < r1; r += per {
		nr := min(per, r1-r)
		ix := idx[:nr*cols]
		ir.UnpackIndexRange(bits, w.Data, n, r*cols, ix)
		for q := 0; q < nr; q++ {
			rr := r + q
			scale := float32(1)
			if w.Pal.Scales != nil {
				scale = f16(w.Pal.Scales[rr])
			}
			g := rr / gs
			for v, h := range w.Pal.LUT[g*k : (g+1)*k] {
				tab[v] = f16(h) * scale
			}
			for i, v := range ix[q*cols : (q+1)*cols] {
				row[i] = tab[v]
			}
			out[rr] = dotF32(row, x)
		}
	}
	return true
}

// MatMul computes, for each of n input vectors x[i*cols:(i+1)*cols], the
// rows [r0, r1) of W x into out[i*rows + r]. Outside the int8 path, weight
// rows are decoded a panel at a time and multiplied by a 3-row x 4-token
// register-tiled kernel (gemm.go); every output is bit-identical whatever
// the row range or the number (>= 2) of inputs; one input goes to MatVec.
func MatMul(w *ir.Tensor, x, out []float32, n, r0, r1 int) {
	if n <= 0 || r0 >= r1 {
		return
	}
	rows, cols := w.Rows(), w.Cols()
	if n == 1 {
		MatVec(w, x[:cols], out[:rows], r0, r1)
		return
	}
	if w.Type == ir.LUTMIX {
		matMulMixed(w, x, out, n, r0, r1)
		return
	}
	_ = x[n*cols-1]
	_ = out[(n-1)*rows+r1-1]
	wf, isF32 := f32View(w)
	var L lutLayout
	isLUT := false
	if !isF32 {
		L, isLUT = layoutOf(w)
	}
	if isLUT && CurrentMode() == ModeInt8 && matMulLUTI8(w, &L, x, out, n, r0, r1) {
		return
	}
	if !isF32 {
		wf = nil
	}
	matMulPanel(w, wf, &L, isLUT, x, out, n, r0, r1)
}

// Dot is the float32 dot product of a and b (len(a) == len(b)). The fast
// paths keep several SIMD accumulators, so the rounding differs from the
// in-order sum (dotRef) by a few ulps of the sum of |a[i]*b[i]|.
func Dot(a, b []float32) float32 { return dotF32(a, b) }

// Axpy sets y[i] += a * x[i] for i < len(y) (len(x) >= len(y)); the SIMD
// path fuses the multiply-add (one rounding instead of two). Attention's
// weighted sum of values is a sequence of these.
func Axpy(a float32, x, y []float32) { axpy(a, x, y) }

// Impl names the kernel family selected on this machine ("avx2", "neon" or "go").
func Impl() string { return archImpl() }

// Sum returns the sum of a (SIMD on the fast paths).
func Sum(a []float32) float32 { return sum(a) }

// Sum2 is Sum with a's first and second half read side by side: two
// streams, which on the build machine read ~20% faster than one (one
// thread: 13.0 against 10.6 GB/s, docs/PERF.md, session 9), as the
// two-stream decode kernels do. The streaming probes take the better of
// Sum and Sum2. Where there is no assembly for it, it is Sum.
func Sum2(a []float32) float32 { return sum2(a) }

// dotRef is the reference dot product: float32, accumulated in order, as
// llama2.c's matmul does.
func dotRef(a, b []float32) float32 {
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// matVecRef is the reference: each row decoded with the encoding's
// reference decoder, then dotRef.
func matVecRef(w *ir.Tensor, x, out []float32, r0, r1 int) {
	bp := getBuf(w.Cols())
	defer putBuf(bp)
	row := (*bp)[:w.Cols()]
	for r := r0; r < r1; r++ {
		w.DecodeRow(r, row)
		out[r] = dotRef(row, x)
	}
}

// matVecSlow serves encodings and layouts without a fast path (bf16, q8_0,
// palettized rows that do not start on a block boundary): the reference
// decoder with the fast dot product.
func matVecSlow(w *ir.Tensor, x, out []float32, r0, r1 int) {
	bp := getBuf(w.Cols())
	defer putBuf(bp)
	row := (*bp)[:w.Cols()]
	for r := r0; r < r1; r++ {
		w.DecodeRow(r, row)
		out[r] = dotF32(row, x)
	}
}

// Pooled row buffers keep the hot paths allocation-free.
var bufPool sync.Pool

func getBuf(n int) *[]float32 {
	if p, ok := bufPool.Get().(*[]float32); ok && cap(*p) >= n {
		return p
	}
	b := make([]float32, n)
	return &b
}

func putBuf(p *[]float32) { bufPool.Put(p) }

// f32View returns the weights of an F32 tensor as a []float32 view when the
// data is 4-byte aligned and complete.
func f32View(w *ir.Tensor) ([]float32, bool) {
	if w.Type != ir.F32 || len(w.Data) < 4*w.Elems() || w.Elems() == 0 ||
		uintptr(unsafe.Pointer(&w.Data[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&w.Data[0])), w.Elems()), true
}

// f16View returns the half-precision bits of an F16 tensor as a []uint16
// view when the data is 2-byte aligned and complete.
func f16View(w *ir.Tensor) ([]uint16, bool) {
	if w.Type != ir.F16 || len(w.Data) < 2*w.Elems() || w.Elems() == 0 ||
		uintptr(unsafe.Pointer(&w.Data[0]))%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[0])), w.Elems()), true
}

func f16(h uint16) float32 { return ir.F16ToF32(h) }

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func dotF16Go(w []uint16, x []float32) float32 {
	var s float32
	for i, h := range w {
		s += f16(h) * x[i]
	}
	return s
}

func dot4Go(w, x []float32, stride int, out *[4]float32) {
	n := len(w)
	for i := 0; i < 4; i++ {
		out[i] = dotGo(w, x[i*stride:i*stride+n])
	}
}
