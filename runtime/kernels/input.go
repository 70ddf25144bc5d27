package kernels

import (
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// Input is one activation vector prepared once for several matrix-vector
// products (MatVecInput): decode multiplies the same normed vector by
// q, k and v, and by gate and up, and a linear split across threads runs
// several row ranges against it. In ModeInt8 the vector is quantized and
// laid out for the row kernels on first use (once per layout: lut4, or
// lut2/lut3) instead of once per call, which is what MatVec does. The
// quantization is the one MatVec does, so results are bit-identical to
// MatVec. Safe for concurrent MatVecInput calls; Reset must not run
// concurrently with them.
//
// An Input can also hold a batch of n vectors (ResetBatch: prefill), for
// MatMulInput: PrepareBatch quantizes the batch once, for every linear
// that reads it and every thread, where MatMul quantizes it once per call
// (that is, per row chunk and per linear).
type Input struct {
	x  []float32
	n  int // vectors in x: 1, or a batch (ResetBatch)
	mu sync.Mutex
	// q[0]: lut4 layout, q[1]: lut2/lut3 layout; ok[i] says q[i] holds x
	q  [2]qx
	ok [2]bool
	// n > 1: b[i] the batch in layout i for the tile kernels, once
	// PrepareBatch has filled it (bok[i])
	b   [2]qxBatch
	bok [2]bool
}

// Reset points in at a new vector (the buffers are kept).
func (in *Input) Reset(x []float32) { in.ResetBatch(x, 1) }

// ResetBatch points in at n vectors x[i*cols:(i+1)*cols] (the buffers are
// kept); n == 1 is Reset.
func (in *Input) ResetBatch(x []float32, n int) {
	in.x, in.n = x, n
	in.ok = [2]bool{}
	in.bok = [2]bool{}
}

// layoutIndex is the Input layout (q, b index) of a width's int8 kernels.
func layoutIndex(bits int) int {
	if bits == 4 {
		return 0
	}
	return 1
}

// X returns the vector (a batch's n vectors, one after another).
func (in *Input) X() []float32 { return in.x }

// quantized returns x quantized for the int8 kernels of the given width
// (x[:cols]; every tensor sharing an Input has the same cols).
func (in *Input) quantized(bits, cols int) *qx {
	k := layoutIndex(bits)
	in.mu.Lock()
	defer in.mu.Unlock()
	q := &in.q[k]
	if in.ok[k] && q.n == cols {
		return q
	}
	if o := &in.q[1-k]; in.ok[1-k] && o.n == cols {
		// same quantization, other layout: copy instead of recomputing
		q.copyQuant(o)
	} else {
		q.quantize(in.x[:cols])
	}
	q.permute(bits)
	in.ok[k] = true
	return q
}

// Prepare quantizes in's vector now for the int8 layouts that
// MatVecInput will want for the tensors ws (LUTMIX parts included), so
// that the threads of a parallel section find it ready instead of one
// quantizing while the others block on its lock (and pay a wake-up).
// Outside ModeInt8, or for tensors the int8 kernels do not run, it does
// nothing; results are the same bits either way.
func (in *Input) Prepare(ws ...*ir.Tensor) {
	if CurrentMode() != ModeInt8 || !i8Asm() {
		return
	}
	eachI8(ws, func(bits, cols int) { in.quantized(bits, cols) })
}

// eachI8 calls f with the width and columns of every tensor among ws (and
// LUTMIX parts) that the int8 kernels run.
func eachI8(ws []*ir.Tensor, f func(bits, cols int)) {
	for _, w := range ws {
		if w.Type == ir.LUTMIX {
			eachI8(w.Parts, f)
			continue
		}
		switch w.Type {
		case ir.LUT2, ir.LUT3, ir.LUT4:
			if L, ok := layoutOf(w); ok && i8Aligned(L.bits, w.Cols()) {
				f(L.bits, w.Cols())
			}
		}
	}
}

// batchChunk is the tokens one claim of PrepareBatch quantizes (~2 us
// each at 2048 columns).
const batchChunk = 8

// PrepareBatch readies a batch (ResetBatch, n > 1) for MatMulInput on the
// tensors ws: in ModeInt8 it quantizes the n vectors once per layout the
// int8 tile kernels will run, exactly as MatMul quantizes them (the same
// bits), in chunks of tokens that par runs (par(n, f) calls f(0..n-1),
// possibly on several threads, and returns when all have run: the
// runtime's parallel section). With one vector it is Prepare. Outside
// ModeInt8 or for tensors the tile kernels do not run, it does nothing.
func (in *Input) PrepareBatch(par func(n int, f func(c int)), ws ...*ir.Tensor) {
	if in.n <= 1 {
		in.Prepare(ws...)
		return
	}
	if CurrentMode() != ModeInt8 || !i8Asm() || i8NoTile {
		return
	}
	var want [2]int // bits per layout to quantize (0: none)
	var cols int
	eachI8(ws, func(bits, c int) {
		if !i8TileBits(bits) {
			return
		}
		if k := layoutIndex(bits); !in.bok[k] || in.b[k].cols != c {
			want[k], cols = bits, c
		}
	})
	for k, bits := range want {
		if bits == 0 {
			continue
		}
		b, n := &in.b[k], in.n
		b.alloc(n, cols)
		par((n+batchChunk-1)/batchChunk, func(c int) {
			q := qxPool.Get().(*qx)
			b.quantizeTokens(in.x, c*batchChunk, min((c+1)*batchChunk, n), bits, q)
			qxPool.Put(q)
		})
		in.bok[k] = true
	}
}

// MatMulInput is MatMul(w, in.X(), out, n, r0, r1) for the n vectors of
// in, with the batch PrepareBatch quantized where it did (the same bits);
// a batch it has not prepared is quantized by MatMul, per call. With one
// vector it is MatVecInput. Concurrent calls must follow PrepareBatch
// (the runtime's parallel section does).
func MatMulInput(w *ir.Tensor, in *Input, out []float32, r0, r1 int) {
	if in.n <= 1 {
		MatVecInput(w, in, out, r0, r1)
		return
	}
	if r0 >= r1 {
		return
	}
	if w.Type == ir.LUTMIX {
		matMulInputMixed(w, in, out, r0, r1)
		return
	}
	if CurrentMode() == ModeInt8 && i8Asm() && !i8NoTile {
		switch w.Type {
		case ir.LUT2, ir.LUT3, ir.LUT4:
			if L, ok := layoutOf(w); ok && i8TileBits(L.bits) && i8Aligned(L.bits, w.Cols()) {
				k := layoutIndex(L.bits)
				if b := &in.b[k]; in.bok[k] && b.cols == w.Cols() {
					matMulI8Tiles(w, &L, i8TableOf(w, L.bits), b, out, r0, r1)
					return
				}
			}
		}
	}
	MatMul(w, in.x, out, in.n, r0, r1)
}

// MatVecInput is MatVec(w, in.X(), out, r0, r1), reusing in's quantized
// forms in ModeInt8.
func MatVecInput(w *ir.Tensor, in *Input, out []float32, r0, r1 int) {
	if r0 >= r1 {
		return
	}
	if w.Type == ir.LUTMIX {
		matVecInputMixed(w, in, out, r0, r1)
		return
	}
	if CurrentMode() == ModeInt8 && i8Asm() {
		switch w.Type {
		case ir.LUT2, ir.LUT3, ir.LUT4:
			if L, ok := layoutOf(w); ok && i8Aligned(L.bits, w.Cols()) {
				q := in.quantized(L.bits, w.Cols())
				matVecI8Rows(w, &L, i8TableOf(w, L.bits), q, out, r0, r1)
				return
			}
		}
	}
	MatVec(w, in.x, out, r0, r1)
}
