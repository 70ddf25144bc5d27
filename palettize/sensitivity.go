package palettize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// This file holds a minimal forward and backward pass of the Llama block
// (the same arithmetic as runtime.Model.Forward, written out with its
// activations kept), used by calibration to measure how sensitive the
// model's output distribution is to each output channel of each linear.
//
// For a linear y = W x at every position t, the gradient g_t = dL/dy_t of
// the summed next-token log-loss, with each label drawn from the model's own
// predictive distribution, has E[g g^T] = the Fisher information of the
// output distribution with respect to y, which is the Hessian of
// KL(p_original || p_perturbed) at the original weights. With the
// Kronecker-factored, diagonal approximation
//
//	KL ≈ 1/2 sum_t (g_t^T dW x_t)^2 / N ≈ 1/2 sum_i F_i (dW_i H dW_i^T)
//
// where F_i = mean_t g_ti^2 (OutputFisher) and H = mean_t x_t x_t^T (the
// Gram matrix, whose diagonal is the per-input-channel importance). That
// is the damage palettize uses when calibration measured F: it is in
// nats of KL divergence per position (times 2), so it is comparable across
// tensors, which the input-only importance is not.
//
// The token embedding is also a lookup: an error in row v moves the
// residual stream at every position whose token is v. EmbedRowFisher[v] is
// (1/N) sum_{t: token_t = v} |dL/dx0_t|^2 / dim and EmbedColFisher[j] is
// mean_t (dL/dx0_tj)^2 normalised to mean 1: their product approximates
// the diagonal Fisher of the lookup.

// wT gives the backward products dX = dY W of one linear weight without
// keeping a transposed copy of it (that would be a second full-precision
// model in memory): backMul transposes one small tile at a time (a few
// rows-blocks x columns, ~128 KiB) and takes dot products against it, so
// the weight streams through the cache once per window and the extra
// memory is one tile (plus, for a weight stored other than as float32, one
// decoded block of rows).
type wT struct {
	w          *ir.Tensor
	rows, cols int
	view       []float32 // the weight itself when it is float32 and aligned
}

func transposeOf(t *ir.Tensor) *wT {
	w := &wT{w: t, rows: t.Rows(), cols: t.Cols()}
	if t.Type == ir.F32 && len(t.Data) > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
		w.view = t.F32()
	}
	return w
}

// backMul adds dy (n x rows) W (rows x cols) to dx (n x cols), with the
// columns split over inner goroutines (each dx element is computed the same
// way whatever inner is).
func (w *wT) backMul(dy, dx []float32, n, inner int) {
	parts := max(1, min(inner, w.cols/64))
	if parts == 1 {
		w.backCols(dy, dx, n, 0, w.cols, &backScratch{})
		return
	}
	// A float32 weight is cut into about four column ranges per goroutine,
	// taken in turn (a goroutine the OS deschedules holds up less); a weight
	// decoded a block of whole rows at a time is cut in one range per
	// goroutine, not to decode it more often.
	chunk := (w.cols + parts - 1) / parts
	if w.view != nil {
		c := (w.cols + 4*parts - 1) / (4 * parts)
		chunk = max(64, (c+63)&^63)
	}
	scr := make([]backScratch, parts)
	inChunks(w.cols, chunk, parts, func(p, c0, c1 int) { w.backCols(dy, dx, n, c0, c1, &scr[p]) })
}

// backScratch is one goroutine's buffers for backCols.
type backScratch struct{ dyb, tile, ob, blk []float32 }

// grow returns b with length n, reallocated when its capacity is short.
func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	return (*b)[:n]
}

// inChunks runs f(worker, lo, hi) over [0, total) cut in ranges of chunk,
// on workers goroutines (the caller is one of them) that take the ranges
// in turn. For work whose results do not depend on how it is cut.
func inChunks(total, chunk, workers int, f func(worker, lo, hi int)) {
	nc := (total + chunk - 1) / chunk
	workers = max(1, min(workers, nc))
	if workers == 1 {
		f(0, 0, total)
		return
	}
	var next atomic.Int64
	run := func(w int) {
		for {
			c := int(next.Add(1)) - 1
			if c >= nc {
				return
			}
			f(w, c*chunk, min((c+1)*chunk, total))
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(w)
		}()
	}
	run(0)
	wg.Wait()
}

// backCols is backMul for the columns [cA, cB): per block of rows, it
// gathers dy's block contiguously, transposes ~128 KiB tiles of W (columns
// x rows) and multiplies them with kernels.MatMul (the forward's kernel:
// four tokens per weight row).
func (w *wT) backCols(dy, dx []float32, n, cA, cB int, sc *backScratch) {
	rows, cols := w.rows, w.cols
	// 512-row blocks and 64-column tiles: the transpose reads 256
	// contiguous bytes of each row (few cache lines and pages per tile),
	// and a tile is 128 KiB.
	rb := min(rows, 512)
	if w.view == nil {
		rb = min(rows, max(64, (1<<20)/cols))
	}
	dyb := grow(&sc.dyb, n*rb)
	cbMax := max(4, 32768/rb)
	tile := grow(&sc.tile, cbMax*rb)
	ob := grow(&sc.ob, n*cbMax)
	tt := &ir.Tensor{Name: "backward tile", Type: ir.F32}
	for r0 := 0; r0 < rows; r0 += rb {
		r1 := min(r0+rb, rows)
		nr := r1 - r0
		var blk []float32
		if w.view != nil {
			blk = w.view[r0*cols : r1*cols]
		} else {
			blk = grow(&sc.blk, rb*cols)[:nr*cols]
			for r := r0; r < r1; r++ {
				w.w.DecodeRow(r, blk[(r-r0)*cols:(r-r0+1)*cols])
			}
		}
		for i := 0; i < n; i++ {
			copy(dyb[i*nr:(i+1)*nr], dy[i*rows+r0:i*rows+r1])
		}
		cb := cbMax
		for c0 := cA; c0 < cB; c0 += cb {
			c1 := min(c0+cb, cB)
			nc := c1 - c0
			t := tile[:nc*nr]
			r := 0
			for ; r+4 <= nr; r += 4 { // four rows at a time: 16-byte writes
				a0 := blk[r*cols+c0 : r*cols+c1]
				a1 := blk[(r+1)*cols+c0 : (r+1)*cols+c1][:len(a0)]
				a2 := blk[(r+2)*cols+c0 : (r+2)*cols+c1][:len(a0)]
				a3 := blk[(r+3)*cols+c0 : (r+3)*cols+c1][:len(a0)]
				for c, v := range a0 {
					o := t[c*nr+r : c*nr+r+4 : c*nr+r+4]
					o[0], o[1], o[2], o[3] = v, a1[c], a2[c], a3[c]
				}
			}
			for ; r < nr; r++ {
				for c, v := range blk[r*cols+c0 : r*cols+c1] {
					t[c*nr+r] = v
				}
			}
			tt.Shape = []int{nc, nr}
			tt.Data = unsafe.Slice((*byte)(unsafe.Pointer(&t[0])), 4*len(t))
			o := ob[:n*nc]
			kernels.MatMul(tt, dyb[:n*nr], o, n, 0, nc)
			for i := 0; i < n; i++ {
				dxi := dx[i*cols+c0 : i*cols+c1]
				for c, v := range o[i*nc : (i+1)*nc] {
					dxi[c] += v
				}
			}
		}
	}
}

// sensModel is the model prepared for the forward/backward pass. It is
// read-only and shared by workers.
type sensModel struct {
	m       *ir.Model
	c       ir.Config
	norms   [][2][]float32 // per layer: attn_norm, ffn_norm
	outNorm []float32
	qb      [][3][]float32
	w       map[string]*ir.Tensor // linear name -> weight (output: the classifier)
	wt      map[string]*wT
	ropeCos []float32 // [pos][headDim/2]
	ropeSin []float32
	inner   int // goroutines per matrix product (see calibrateSens)
}

func newSensModel(m *ir.Model, maxPos int) (*sensModel, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	c := m.Config
	s := &sensModel{m: m, c: c, w: map[string]*ir.Tensor{}, wt: map[string]*wT{}}
	f32 := func(name string) []float32 {
		t := m.Tensors[name]
		if t == nil {
			return nil
		}
		v := make([]float32, t.Elems())
		t.DecodeRow(0, v)
		return v
	}
	for l := 0; l < c.Layers; l++ {
		s.norms = append(s.norms, [2][]float32{f32(ir.Blk(l, ir.AttnNorm)), f32(ir.Blk(l, ir.FFNNorm))})
		if c.QKVBias {
			s.qb = append(s.qb, [3][]float32{f32(ir.Blk(l, ir.AttnQB)), f32(ir.Blk(l, ir.AttnKB)), f32(ir.Blk(l, ir.AttnVB))})
		}
		for _, k := range ir.LinearKinds {
			n := ir.Blk(l, k)
			s.w[n] = m.Tensors[n]
			s.wt[n] = transposeOf(m.Tensors[n])
		}
	}
	s.outNorm = f32(ir.NameOutputNorm)
	s.w[ir.NameOutput] = m.Classifier()
	s.wt[ir.NameOutput] = transposeOf(m.Classifier())
	half := c.HeadDim / 2
	s.ropeCos = make([]float32, maxPos*half)
	s.ropeSin = make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			freq := 1.0 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
			val := float64(float32(p) * float32(freq))
			s.ropeCos[p*half+i] = float32(math.Cos(val))
			s.ropeSin[p*half+i] = float32(math.Sin(val))
		}
	}
	return s, nil
}

// rope rotates (sign = +1) or un-rotates (sign = -1, the transpose, used
// for gradients) the n x width vectors at positions 0..n-1.
func (s *sensModel) rope(v []float32, n, width int, sign float32) {
	hd, half := s.c.HeadDim, s.c.HeadDim/2
	for p := 0; p < n; p++ {
		vec := v[p*width : (p+1)*width]
		for h := 0; h+hd <= width; h += hd {
			for i := 0; i < half; i++ {
				fcr, fci := s.ropeCos[p*half+i], sign*s.ropeSin[p*half+i]
				a, b := h+2*i, h+2*i+1
				if s.c.RopeNeoX {
					a, b = h+i, h+i+half
				}
				v0, v1 := vec[a], vec[b]
				vec[a] = v0*fcr - v1*fci
				vec[b] = v0*fci + v1*fcr
			}
		}
	}
}

// sensAcc accumulates one worker's statistics (sums, not means).
type sensAcc struct {
	positions int
	sumSq     map[string][]float64 // per linear: sum_t x_tj^2
	gram      map[string][]float64 // per input site (first linear name): sum_t x x^T
	fisher    map[string][]float64 // per linear: sum_t g_ti^2
	embRow    []float64            // per token: sum |dL/dx0|^2
	embCol    []float64            // per dim: sum (dL/dx0_j)^2
	trace     *sensTrace           // tests: keep the raw gradients
}

// sensTrace keeps one window's labels and, per linear, its input and
// output gradient (tests check them against finite differences).
type sensTrace struct {
	labels      []int
	input, grad map[string][]float32
}

func newSensAcc() *sensAcc {
	return &sensAcc{sumSq: map[string][]float64{}, gram: map[string][]float64{}, fisher: map[string][]float64{}}
}

func (a *sensAcc) fish(name string, g []float32, n int) {
	addSq(a.fisher, name, g, n)
	if a.trace != nil {
		a.trace.grad[name] = append([]float32(nil), g...)
	}
}

func addSq(dst map[string][]float64, name string, x []float32, n int) {
	w := len(x) / n
	s := dst[name]
	if s == nil {
		s = make([]float64, w)
		dst[name] = s
	}
	for i := 0; i < n; i++ {
		for j, v := range x[i*w : (i+1)*w] {
			s[j] += float64(v) * float64(v)
		}
	}
}

var gramPool sync.Pool

func addGram(dst map[string][]float64, name string, x []float32, n int) {
	w := len(x) / n
	g := dst[name]
	if g == nil {
		g = make([]float64, w*w)
		dst[name] = g
	}
	// X^T X of this window in float32 through the prefill kernel (X^T as a
	// w x n matrix times its own rows), then accumulated in float64.
	bp, _ := gramPool.Get().(*[]float32)
	if bp == nil || cap(*bp) < w*n+w*w {
		b := make([]float32, w*n+w*w)
		bp = &b
	}
	defer gramPool.Put(bp)
	xt, gw := (*bp)[:w*n], (*bp)[w*n:w*n+w*w]
	for i := 0; i < n; i++ {
		for a, v := range x[i*w : (i+1)*w] {
			xt[a*n+i] = v
		}
	}
	kernels.MatMulF32(xt, w, n, xt, gw, w)
	for i, v := range gw {
		g[i] += float64(v)
	}
}

type layerActs struct {
	xin, xa, q, k, v, att, xmid, xf, g, u, a []float32
	ra, rf                                   []float32 // rms inverse per position
}

func rmsFwd(o, x, w []float32, eps float32, rinv []float32, n int) {
	d := len(w)
	for i := 0; i < n; i++ {
		xi := x[i*d : (i+1)*d]
		var ss float32
		for _, v := range xi {
			ss += v * v
		}
		ss /= float32(d)
		ss += eps
		r := 1 / float32(math.Sqrt(float64(ss)))
		rinv[i] = r
		oi := o[i*d : (i+1)*d]
		for j := range oi {
			oi[j] = w[j] * (r * xi[j])
		}
	}
}

// rmsBack adds to dx the gradient through o = w * x * r(x).
func rmsBack(dx, dy, x, w, rinv []float32, n int) {
	d := len(w)
	for i := 0; i < n; i++ {
		xi, dyi, dxi := x[i*d:(i+1)*d], dy[i*d:(i+1)*d], dx[i*d:(i+1)*d]
		r := rinv[i]
		var dot float32
		for j := range xi {
			dot += w[j] * dyi[j] * xi[j]
		}
		c := r * r * r * dot / float32(d)
		for j := range xi {
			dxi[j] += r*w[j]*dyi[j] - c*xi[j]
		}
	}
}

// lin computes out = W x for n positions, rows split over s.inner
// goroutines (each output is computed the same way whatever the split).
func (s *sensModel) lin(name string, x, out []float32, n int) {
	w := s.w[name]
	rows := w.Rows()
	parts := max(1, min(s.inner, rows/64))
	// About four row ranges per goroutine, taken in turn, in multiples of
	// 24 rows (the kernel's panel): every output is the same whatever the
	// ranges (kernels.MatMul).
	chunk := max(48, ((rows+4*parts-1)/(4*parts)+23)/24*24)
	inChunks(rows, chunk, parts, func(_, r0, r1 int) { kernels.MatMul(w, x, out, n, r0, r1) })
}

// window runs forward and backward on one window and adds its statistics
// to acc. gram selects whether Gram matrices are collected.
func (s *sensModel) window(tokens []int, acc *sensAcc, rng *rand.Rand, gram bool) error {
	c := s.c
	n := len(tokens)
	dim, qd, kvd, ffn := c.Dim, c.QDim(), c.KVDim(), c.FFN
	eps := float32(c.NormEps)
	for _, t := range tokens {
		if t < 0 || t >= c.Vocab {
			return fmt.Errorf("token id %d outside vocabulary of %d", t, c.Vocab)
		}
	}
	x := make([]float32, n*dim)
	for i, t := range tokens {
		s.m.Tensors[ir.NameTokenEmbd].DecodeRow(t, x[i*dim:(i+1)*dim])
	}
	acts := make([]layerActs, c.Layers)
	scr := s.headScratch(n) // per-goroutine attention probabilities, recomputed per head
	stat := func(name string, site string, in []float32) {
		addSq(acc.sumSq, name, in, n)
		if acc.trace != nil {
			acc.trace.input[name] = append([]float32(nil), in...)
		}
		if gram && site != "" {
			addGram(acc.gram, site, in, n)
		}
	}
	hd := c.HeadDim
	simdHead := hd >= 32 // as the runtime: SIMD dot and axpy over a head from 32 lanes
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	for l := 0; l < c.Layers; l++ {
		a := &acts[l]
		a.xin = append([]float32(nil), x...)
		a.xa, a.ra = make([]float32, n*dim), make([]float32, n)
		rmsFwd(a.xa, x, s.norms[l][0], eps, a.ra, n)
		a.q, a.k, a.v = make([]float32, n*qd), make([]float32, n*kvd), make([]float32, n*kvd)
		nq, nk, nv := ir.Blk(l, ir.AttnQ), ir.Blk(l, ir.AttnK), ir.Blk(l, ir.AttnV)
		stat(nq, nq, a.xa)
		stat(nk, "", a.xa)
		stat(nv, "", a.xa)
		s.lin(nq, a.xa, a.q, n)
		s.lin(nk, a.xa, a.k, n)
		s.lin(nv, a.xa, a.v, n)
		if c.QKVBias {
			addBias(a.q, s.qb[l][0], n)
			addBias(a.k, s.qb[l][1], n)
			addBias(a.v, s.qb[l][2], n)
		}
		s.rope(a.q, n, qd, 1)
		s.rope(a.k, n, kvd, 1)
		a.att = make([]float32, n*qd)
		s.perHead(group, scr, n, func(h int, probs, _ []float32) {
			s.attnProbs(a, h, probs, n, scale, group)
			kh := (h / group) * hd
			for i := 0; i < n; i++ {
				o := a.att[i*qd+h*hd : i*qd+(h+1)*hd]
				for t := 0; t <= i; t++ {
					p := probs[i*n+t]
					vt := a.v[t*kvd+kh : t*kvd+kh+hd]
					if simdHead {
						kernels.Axpy(p, vt, o)
						continue
					}
					for j := range o {
						o[j] += p * vt[j]
					}
				}
			}
		})
		no := ir.Blk(l, ir.AttnOut)
		stat(no, no, a.att)
		tmp := make([]float32, n*dim)
		s.lin(no, a.att, tmp, n)
		for i := range x {
			x[i] += tmp[i]
		}
		a.xmid = append([]float32(nil), x...)
		a.xf, a.rf = make([]float32, n*dim), make([]float32, n)
		rmsFwd(a.xf, x, s.norms[l][1], eps, a.rf, n)
		ng, nu, nd := ir.Blk(l, ir.FFNGate), ir.Blk(l, ir.FFNUp), ir.Blk(l, ir.FFNDown)
		stat(ng, ng, a.xf)
		stat(nu, "", a.xf)
		a.g, a.u, a.a = make([]float32, n*ffn), make([]float32, n*ffn), make([]float32, n*ffn)
		s.lin(ng, a.xf, a.g, n)
		s.lin(nu, a.xf, a.u, n)
		s.split(len(a.g), func(i0, i1 int) {
			for i, g := range a.g[i0:i1] {
				a.a[i0+i] = g * (1 / (1 + runtime.Expf(-g))) * a.u[i0+i]
			}
		})
		stat(nd, nd, a.a)
		s.lin(nd, a.a, tmp, n)
		for i := range x {
			x[i] += tmp[i]
		}
	}
	xo, ro := make([]float32, n*dim), make([]float32, n)
	rmsFwd(xo, x, s.outNorm, eps, ro, n)
	stat(ir.NameOutput, ir.NameOutput, xo)
	logits := make([]float32, n*c.Vocab)
	s.lin(ir.NameOutput, xo, logits, n)
	// dL/dlogits = p - onehot(label), label ~ p. The softmaxes are
	// independent rows (split over goroutines); the labels are drawn in
	// position order.
	s.split(n*c.Vocab, func(i0, i1 int) {
		for i := (i0 + c.Vocab - 1) / c.Vocab; i < (i1+c.Vocab-1)/c.Vocab; i++ {
			runtime.Softmax(logits[i*c.Vocab : (i+1)*c.Vocab])
		}
	})
	for i := 0; i < n; i++ {
		row := logits[i*c.Vocab : (i+1)*c.Vocab]
		u := rng.Float64()
		lab := len(row) - 1
		for j, p := range row {
			u -= float64(p)
			if u < 0 {
				lab = j
				break
			}
		}
		row[lab]--
		if acc.trace != nil {
			acc.trace.labels = append(acc.trace.labels, lab)
		}
	}
	acc.fish(ir.NameOutput, logits, n)
	dxo := make([]float32, n*dim)
	bs := s.inner
	s.wt[ir.NameOutput].backMul(logits, dxo, n, bs)
	dx := make([]float32, n*dim)
	rmsBack(dx, dxo, x, s.outNorm, ro, n)
	dxf := make([]float32, n*dim)
	da := make([]float32, n*ffn)
	dg, du := make([]float32, n*ffn), make([]float32, n*ffn)
	dxa := make([]float32, n*dim)
	datt := make([]float32, n*qd)
	dq, dk, dv := make([]float32, n*qd), make([]float32, n*kvd), make([]float32, n*kvd)
	for l := c.Layers - 1; l >= 0; l-- {
		a := &acts[l]
		ng, nu, nd := ir.Blk(l, ir.FFNGate), ir.Blk(l, ir.FFNUp), ir.Blk(l, ir.FFNDown)
		acc.fish(nd, dx, n)
		clear(da)
		s.wt[nd].backMul(dx, da, n, bs)
		s.split(len(a.g), func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				g := a.g[i]
				sg := 1 / (1 + runtime.Expf(-g))
				du[i] = da[i] * g * sg
				dg[i] = da[i] * a.u[i] * sg * (1 + g*(1-sg))
			}
		})
		acc.fish(ng, dg, n)
		acc.fish(nu, du, n)
		clear(dxf)
		s.wt[ng].backMul(dg, dxf, n, bs)
		s.wt[nu].backMul(du, dxf, n, bs)
		rmsBack(dx, dxf, a.xmid, s.norms[l][1], a.rf, n) // dx is now dL/dxmid
		no := ir.Blk(l, ir.AttnOut)
		acc.fish(no, dx, n)
		clear(datt)
		s.wt[no].backMul(dx, datt, n, bs)
		clear(dq)
		clear(dk)
		clear(dv)
		s.perHead(group, scr, n, func(h int, probs, dp []float32) {
			s.attnProbs(a, h, probs, n, scale, group)
			kh := (h / group) * hd
			for i := 0; i < n; i++ {
				do := datt[i*qd+h*hd : i*qd+(h+1)*hd]
				var sum float32
				for t := 0; t <= i; t++ {
					p := probs[i*n+t]
					vt := a.v[t*kvd+kh : t*kvd+kh+hd]
					dvt := dv[t*kvd+kh : t*kvd+kh+hd]
					var d float32
					if simdHead {
						d = kernels.Dot(do, vt)
						kernels.Axpy(p, do, dvt)
					} else {
						for j, g := range do {
							d += g * vt[j]
							dvt[j] += p * g
						}
					}
					dp[t] = d
					sum += p * d
				}
				qi := a.q[i*qd+h*hd : i*qd+(h+1)*hd]
				dqi := dq[i*qd+h*hd : i*qd+(h+1)*hd]
				for t := 0; t <= i; t++ {
					ds := probs[i*n+t] * (dp[t] - sum) * scale
					if ds == 0 {
						continue
					}
					kt := a.k[t*kvd+kh : t*kvd+kh+hd]
					dkt := dk[t*kvd+kh : t*kvd+kh+hd]
					if simdHead {
						kernels.Axpy(ds, kt, dqi)
						kernels.Axpy(ds, qi, dkt)
						continue
					}
					for j := range dqi {
						dqi[j] += ds * kt[j]
						dkt[j] += ds * qi[j]
					}
				}
			}
		})
		s.rope(dq, n, qd, -1)
		s.rope(dk, n, kvd, -1)
		nq, nk, nv := ir.Blk(l, ir.AttnQ), ir.Blk(l, ir.AttnK), ir.Blk(l, ir.AttnV)
		acc.fish(nq, dq, n)
		acc.fish(nk, dk, n)
		acc.fish(nv, dv, n)
		clear(dxa)
		s.wt[nq].backMul(dq, dxa, n, bs)
		s.wt[nk].backMul(dk, dxa, n, bs)
		s.wt[nv].backMul(dv, dxa, n, bs)
		rmsBack(dx, dxa, a.xin, s.norms[l][0], a.ra, n) // dx is now dL/dxin
	}
	if acc.embRow == nil {
		acc.embRow = make([]float64, c.Vocab)
		acc.embCol = make([]float64, dim)
	}
	for i, t := range tokens {
		var ss float64
		for j, v := range dx[i*dim : (i+1)*dim] {
			f := float64(v) * float64(v)
			ss += f
			acc.embCol[j] += f
		}
		acc.embRow[t] += ss / float64(dim)
	}
	acc.positions += n
	return nil
}

// perHead runs f for every attention head h, with scratch probs (n x n)
// and dp (n) for the goroutine it runs on (scr: headScratch(n)). Heads are split over s.inner
// goroutines by whole KV-head groups (group query heads share one), each
// in ascending order, so the heads that add into the same K and V
// gradients run one after another in the same order as on one thread:
// the results do not depend on s.inner.
func (s *sensModel) perHead(group int, scr [][]float32, n int, f func(h int, probs, dp []float32)) {
	kv := s.c.KVHeads
	parts := max(1, min(s.inner, kv))
	inChunks(kv, (kv+parts-1)/parts, parts, func(w, g0, g1 int) {
		probs, dp := scr[w][:n*n], scr[w][n*n:n*n+n]
		for h := g0 * group; h < g1*group; h++ {
			f(h, probs, dp)
		}
	})
}

// headScratch allocates perHead's scratch for windows of n positions.
func (s *sensModel) headScratch(n int) [][]float32 {
	scr := make([][]float32, max(1, min(s.inner, s.c.KVHeads)))
	for i := range scr {
		scr[i] = make([]float32, n*n+n)
	}
	return scr
}

// split runs f over [0, n) cut in s.inner contiguous ranges, in parallel
// (for element-wise loops, whose results do not depend on the split).
func (s *sensModel) split(n int, f func(i0, i1 int)) {
	parts := max(1, min(s.inner, n/4096))
	inChunks(n, (n+parts-1)/parts, parts, func(_, i0, i1 int) { f(i0, i1) })
}

// attnProbs fills probs (n x n, row i valid for t <= i) with head h's
// attention probabilities.
func (s *sensModel) attnProbs(a *layerActs, h int, probs []float32, n int, scale float32, group int) {
	hd, qd, kvd := s.c.HeadDim, s.c.QDim(), s.c.KVDim()
	kh := (h / group) * hd
	for i := 0; i < n; i++ {
		qh := a.q[i*qd+h*hd : i*qd+(h+1)*hd]
		sc := probs[i*n : i*n+i+1]
		for t := 0; t <= i; t++ {
			sc[t] = kernels.Dot(qh, a.k[t*kvd+kh:t*kvd+kh+hd]) * scale
		}
		runtime.Softmax(sc)
	}
}

func addBias(x, b []float32, n int) {
	d := len(b)
	for i := 0; i < n; i++ {
		for j, v := range b {
			x[i*d+j] += v
		}
	}
}
