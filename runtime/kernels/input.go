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
type Input struct {
	x  []float32
	mu sync.Mutex
	// q[0]: lut4 layout, q[1]: lut2/lut3 layout; ok[i] says q[i] holds x
	q  [2]qx
	ok [2]bool
}

// Reset points in at a new vector (the buffers are kept).
func (in *Input) Reset(x []float32) {
	in.x = x
	in.ok = [2]bool{}
}

// X returns the vector.
func (in *Input) X() []float32 { return in.x }

// quantized returns x quantized for the int8 kernels of the given width
// (x[:cols]; every tensor sharing an Input has the same cols).
func (in *Input) quantized(bits, cols int) *qx {
	k := 1
	if bits == 4 {
		k = 0
	}
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
	for _, w := range ws {
		if w.Type == ir.LUTMIX {
			for _, p := range w.Parts {
				in.prepare(p)
			}
			continue
		}
		in.prepare(w)
	}
}

func (in *Input) prepare(w *ir.Tensor) {
	switch w.Type {
	case ir.LUT2, ir.LUT3, ir.LUT4:
		if L, ok := layoutOf(w); ok && i8Aligned(L.bits, w.Cols()) {
			in.quantized(L.bits, w.Cols())
		}
	}
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
