package runtime

import (
	"fmt"
	"math"
	goruntime "runtime"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// Options configure a runtime model.
type Options struct {
	// Threads splits matrix products by output rows; 0 means all CPUs.
	Threads int
	// LinearHook, when set, sees the input of every linear op before it
	// runs: x holds n rows of the weight's input width. Calibration uses it.
	LinearHook func(weight string, x []float32, n int)
	// Adapters are applied unmerged on top of the base weights.
	Adapters *ir.AdapterSet
	// OpTimer, when set, receives the wall time of every op of the forward
	// pass under its ir op name (ir.Config.Ops), for measured profiling.
	OpTimer func(op string, d time.Duration)
}

type layer struct {
	names                      [14]string // op names, in ir.Config.Ops order within a block
	attnNorm, ffnNorm          []float32
	q, k, v, o, gate, up, down *ir.Tensor
	qb, kb, vb                 []float32
}

// Model is a model prepared for inference. It does not copy weights: f32
// tensors stay views of their (mapped) files.
type Model struct {
	Cfg      ir.Config
	IR       *ir.Model
	embed    *ir.Tensor
	cls      *ir.Tensor
	outNorm  []float32
	layers   []layer
	threads  int
	hook     func(string, []float32, int)
	timer    func(string, time.Duration)
	adapters map[string]*ir.Adapter
}

// New prepares m for inference.
func New(m *ir.Model, opt Options) (*Model, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	c := m.Config
	r := &Model{Cfg: c, IR: m, embed: m.Tensors[ir.NameTokenEmbd], cls: m.Classifier(),
		outNorm: vec(m.Tensors[ir.NameOutputNorm]), threads: opt.Threads, hook: opt.LinearHook, timer: opt.OpTimer}
	if r.threads <= 0 {
		r.threads = goruntime.NumCPU()
	}
	for l := 0; l < c.Layers; l++ {
		t := func(k string) *ir.Tensor { return m.Tensors[ir.Blk(l, k)] }
		ly := layer{attnNorm: vec(t(ir.AttnNorm)), ffnNorm: vec(t(ir.FFNNorm)),
			q: t(ir.AttnQ), k: t(ir.AttnK), v: t(ir.AttnV), o: t(ir.AttnOut),
			gate: t(ir.FFNGate), up: t(ir.FFNUp), down: t(ir.FFNDown)}
		if c.QKVBias {
			ly.qb, ly.kb, ly.vb = vec(t(ir.AttnQB)), vec(t(ir.AttnKB)), vec(t(ir.AttnVB))
		}
		for i, k := range opKinds {
			ly.names[i] = ir.Blk(l, k)
		}
		r.layers = append(r.layers, ly)
	}
	if err := r.SetAdapters(opt.Adapters); err != nil {
		return nil, err
	}
	// The int8 tables of the palettized weights (kernels.ModeInt8) are
	// fitted on every CPU in the background, beside the first forward pass
	// (which waits for any table it needs that is not ready), instead of
	// one tensor at a time inside it: the 1.1B bundle's first token took
	// 276-355 ms against 130-147 ms with the float kernels (docs/PERF.md).
	if kernels.EffectiveMode() == kernels.ModeInt8 {
		go r.WarmI8()
	}
	return r, nil
}

// WarmI8 fits, on every CPU, the int8 tables of the model's palettized
// weights that the int8 kernels will run, and returns when they are all
// built (kernels.WarmI8; a no-op outside ModeInt8). runtime.New already
// starts it in the background; a caller that times forward passes calls it
// to wait for the fitting first.
func (r *Model) WarmI8() {
	ws := make([]*ir.Tensor, 0, len(r.IR.Tensors))
	for _, t := range r.IR.Tensors {
		ws = append(ws, t)
	}
	kernels.WarmI8(ws)
}

// SetAdapters swaps the adapter set (nil removes adapters) without
// reloading the base. A set whose shapes do not match is refused.
func (r *Model) SetAdapters(s *ir.AdapterSet) error {
	if s == nil {
		r.adapters = nil
		return nil
	}
	for name, a := range s.Adapters {
		w, ok := r.IR.Tensors[name]
		if !ok || len(w.Shape) != 2 {
			return fmt.Errorf("adapter set %q: target %q is not a linear weight of this model", s.Name, name)
		}
		if a.Out != w.Rows() || a.In != w.Cols() || len(a.A) != a.Rank*a.In || len(a.B) != a.Out*a.Rank {
			return fmt.Errorf("adapter set %q: adapter %q is %dx%d rank %d (A %d, B %d values), weight is %dx%d",
				s.Name, name, a.Out, a.In, a.Rank, len(a.A), len(a.B), w.Rows(), w.Cols())
		}
	}
	r.adapters = s.Adapters
	return nil
}

// opKinds are the per-block op name suffixes; the indices below name them.
var opKinds = [14]string{ir.AttnNorm, ir.AttnQ, ir.AttnK, ir.AttnV, "rope", "attention", ir.AttnOut,
	"attn_residual", ir.FFNNorm, ir.FFNGate, ir.FFNUp, "swiglu", ir.FFNDown, "ffn_residual"}

const (
	nAttnNorm = iota
	nQ
	nK
	nV
	nRope
	nAttention
	nAttnOut
	nAttnResidual
	nFFNNorm
	nGate
	nUp
	nSwiGLU
	nDown
	nFFNResidual
)

func vec(t *ir.Tensor) []float32 {
	if t == nil {
		return nil
	}
	return t.F32()
}

// State is one sequence's KV cache and scratch buffers.
type State struct {
	Pos    int // tokens already in the cache
	MaxSeq int
	keys   [][]float32 // per layer, MaxSeq x KVDim values (layout below)
	vals   [][]float32
	buf    buffers
	// KV cache layout: KV head g of position t starts at g*kvHeadOff +
	// t*kvStride. Head-major (kvHeadOff = MaxSeq*HeadDim, kvStride =
	// HeadDim): each KV head's cached keys (values) are one contiguous
	// stream that attention reads front to back. Position-major
	// (kvHeadOff = HeadDim, kvStride = KVDim) is the layout before
	// attnLegacy's change, kept for BenchmarkAttnAB.
	kvHeadOff, kvStride int
}

type buffers struct {
	n                                 int
	x, xb, q, k, v, att, hb, hb2, tmp []float32
	scores                            []float32
	rope                              []float32 // per token: cos, sin tables (ropeTable)
	// decode (n == 1): the inputs of the linears, each quantized once for
	// all the linears (and threads) that read it
	inXB, inAtt, inHB kernels.Input
}

// NewState allocates a KV cache for maxSeq positions.
func (r *Model) NewState(maxSeq int) *State {
	if maxSeq <= 0 || maxSeq > r.Cfg.SeqLen {
		maxSeq = r.Cfg.SeqLen
	}
	s := &State{MaxSeq: maxSeq, kvHeadOff: maxSeq * r.Cfg.HeadDim, kvStride: r.Cfg.HeadDim}
	if attnLegacy {
		s.kvHeadOff, s.kvStride = r.Cfg.HeadDim, r.Cfg.KVDim()
	}
	kv := r.Cfg.KVDim()
	for l := 0; l < r.Cfg.Layers; l++ {
		s.keys = append(s.keys, make([]float32, maxSeq*kv))
		s.vals = append(s.vals, make([]float32, maxSeq*kv))
	}
	return s
}

// Reset empties the cache.
func (s *State) Reset() { s.Pos = 0 }

func (s *State) ensure(c ir.Config, n int) *buffers {
	b := &s.buf
	if b.n >= n {
		return b
	}
	b.n = n
	b.x = make([]float32, n*c.Dim)
	b.xb = make([]float32, n*max(c.Dim, c.QDim()))
	b.q = make([]float32, n*c.QDim())
	b.k = make([]float32, n*c.KVDim())
	b.v = make([]float32, n*c.KVDim())
	b.att = make([]float32, n*c.QDim())
	b.hb = make([]float32, n*c.FFN)
	b.hb2 = make([]float32, n*c.FFN)
	b.tmp = make([]float32, n*max(c.Dim, c.FFN))
	b.scores = make([]float32, c.Heads*s.MaxSeq*n)
	b.rope = make([]float32, n*2*(c.HeadDim/2))
	return b
}

// Forward runs tokens (at positions s.Pos, s.Pos+1, ...) through the model,
// appending to the cache. With all, logits receives len(tokens) x vocab
// values; otherwise only the last token's vocab logits.
func (r *Model) Forward(s *State, tokens []int, logits []float32, all bool) error {
	c := r.Cfg
	n := len(tokens)
	if n == 0 {
		return nil
	}
	if s.Pos+n > s.MaxSeq {
		return fmt.Errorf("runtime: %d tokens at position %d exceed the context of %d", n, s.Pos, s.MaxSeq)
	}
	want := c.Vocab
	if all {
		want *= n
	}
	if len(logits) < want {
		return fmt.Errorf("runtime: logits buffer holds %d values, need %d", len(logits), want)
	}
	for _, t := range tokens {
		if t < 0 || t >= c.Vocab {
			return fmt.Errorf("runtime: token id %d outside vocabulary of %d", t, c.Vocab)
		}
	}
	b := s.ensure(c, n)
	dim, qd, kvd := c.Dim, c.QDim(), c.KVDim()
	// lap reports the time since the previous lap under an op name.
	var t0 time.Time
	lap := func(string) {}
	if r.timer != nil {
		t0 = time.Now()
		lap = func(op string) {
			now := time.Now()
			r.timer(op, now.Sub(t0))
			t0 = now
		}
	}
	x := b.x[:n*dim]
	for i, t := range tokens {
		r.embed.DecodeRow(t, x[i*dim:(i+1)*dim])
	}
	lap(ir.NameTokenEmbd)
	for l := range r.layers {
		ly := &r.layers[l]
		xb := b.xb[:n*dim]
		rmsnormRows(xb, x, ly.attnNorm, float32(c.NormEps), n, dim)
		lap(ly.names[nAttnNorm])
		q, k, v := b.q[:n*qd], b.k[:n*kvd], b.v[:n*kvd]
		in := b.input(&b.inXB, xb, n)
		if r.fuse() {
			r.linears(xb, n, in, linOp{ly.names[nQ], ly.q, q}, linOp{ly.names[nK], ly.k, k}, linOp{ly.names[nV], ly.v, v})
		} else {
			r.linear(ly.names[nQ], ly.q, xb, q, n, in)
		}
		if c.QKVBias {
			addBias(q, ly.qb, n)
		}
		lap(ly.names[nQ])
		if !r.fuse() {
			r.linear(ly.names[nK], ly.k, xb, k, n, in)
		}
		if c.QKVBias {
			addBias(k, ly.kb, n)
		}
		lap(ly.names[nK])
		if !r.fuse() {
			r.linear(ly.names[nV], ly.v, xb, v, n, in)
		}
		if c.QKVBias {
			addBias(v, ly.vb, n)
		}
		lap(ly.names[nV])
		half := c.HeadDim / 2
		for i := 0; i < n; i++ {
			pos := s.Pos + i
			cr, ci := b.rope[2*i*half:(2*i+1)*half], b.rope[(2*i+1)*half:(2*i+2)*half]
			if l == 0 || decodeLegacy {
				ropeTable(cr, ci, c.HeadDim, pos, c.RopeTheta)
			}
			ropeApply(q[i*qd:(i+1)*qd], c.HeadDim, cr, ci, c.RopeNeoX)
			ropeApply(k[i*kvd:(i+1)*kvd], c.HeadDim, cr, ci, c.RopeNeoX)
			if c.RopeNeoX {
				// Keep q and the cached k in interleaved-pair order: q.k is
				// then summed in the same order as for the same model stored
				// with llama.cpp's layout, so both give identical bits.
				interleaveHeads(q[i*qd:(i+1)*qd], c.HeadDim, b.tmp)
				interleaveHeads(k[i*kvd:(i+1)*kvd], c.HeadDim, b.tmp)
			}
			for g := 0; g < c.KVHeads; g++ {
				o := g*s.kvHeadOff + pos*s.kvStride
				copy(s.keys[l][o:o+c.HeadDim], k[i*kvd+g*c.HeadDim:i*kvd+(g+1)*c.HeadDim])
				copy(s.vals[l][o:o+c.HeadDim], v[i*kvd+g*c.HeadDim:i*kvd+(g+1)*c.HeadDim])
			}
		}
		lap(ly.names[nRope])
		att := b.att[:n*qd]
		r.attention(s, l, q, att, n, b.scores)
		lap(ly.names[nAttention])
		tmp := b.tmp[:n*dim]
		r.linear(ly.names[nAttnOut], ly.o, att, tmp, n, b.input(&b.inAtt, att, n))
		lap(ly.names[nAttnOut])
		for i := range x {
			x[i] += tmp[i]
		}
		lap(ly.names[nAttnResidual])
		rmsnormRows(xb, x, ly.ffnNorm, float32(c.NormEps), n, dim)
		lap(ly.names[nFFNNorm])
		hb, hb2 := b.hb[:n*c.FFN], b.hb2[:n*c.FFN]
		in = b.input(&b.inXB, xb, n)
		if r.fuse() {
			r.linears(xb, n, in, linOp{ly.names[nGate], ly.gate, hb}, linOp{ly.names[nUp], ly.up, hb2})
		} else {
			r.linear(ly.names[nGate], ly.gate, xb, hb, n, in)
		}
		lap(ly.names[nGate])
		if !r.fuse() {
			r.linear(ly.names[nUp], ly.up, xb, hb2, n, in)
		}
		lap(ly.names[nUp])
		if decodeLegacy || !kernels.SwiGLU(hb, hb2) { // the same arithmetic, 8 lanes at a time
			for i, g := range hb {
				hb[i] = g * (1 / (1 + expf(-g))) * hb2[i]
			}
		}
		lap(ly.names[nSwiGLU])
		r.linear(ly.names[nDown], ly.down, hb, tmp, n, b.input(&b.inHB, hb, n))
		lap(ly.names[nDown])
		for i := range x {
			x[i] += tmp[i]
		}
		lap(ly.names[nFFNResidual])
	}
	first := 0
	if !all {
		first = n - 1
	}
	xb := b.xb[:n*dim]
	for i := first; i < n; i++ {
		rmsnorm(xb[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], r.outNorm, float32(c.NormEps))
	}
	lap(ir.NameOutputNorm)
	r.linear(ir.NameOutput, r.cls, xb[first*dim:n*dim], logits[:(n-first)*c.Vocab], n-first, b.input(&b.inXB, xb[first*dim:n*dim], n-first))
	lap(ir.NameOutput)
	s.Pos += n
	return nil
}

// decodeLegacy makes the forward pass run as before this session's decode
// work: each linear quantizes its input (per thread chunk), one parallel
// section per linear, scalar SwiGLU and softmax exponentials, the RoPE
// table per layer. Results are the same bits (TestDecodeSameBits);
// benchmarks set it to compare the two in one process (BenchmarkDecodeAB).
var decodeLegacy bool

// prefillPerCall makes prefill's linears quantize their batch per call (per
// row chunk and per linear, in MatMul) instead of once per input
// (PrepareBatch); the same bits. BenchmarkPrefillAB compares the two.
var prefillPerCall bool

// input prepares x (n vectors) as the shared input of the linears that
// read it: decode's MatVecInput quantizes a vector once for all of them
// and all threads, prefill's MatMulInput a batch (PrepareInput).
func (b *buffers) input(in *kernels.Input, x []float32, n int) *kernels.Input {
	if decodeLegacy || (n > 1 && prefillPerCall) {
		return nil
	}
	in.ResetBatch(x, n)
	return in
}

// PrepareInput quantizes in (n vectors) for the int8 kernels of ws as the
// runtime's linears do before their parallel section, not inside it: a
// vector (decode) on this thread, since the other threads would wait for
// it on the Input's lock; a batch (prefill) in chunks of tokens across
// threads threads. Talaria's host probes call it, to run a linear as a
// forward pass does.
func PrepareInput(threads int, in *kernels.Input, n int, ws ...*ir.Tensor) {
	if n == 1 {
		in.Prepare(ws...)
		return
	}
	in.PrepareBatch(func(k int, f func(c int)) { parallel(threads, k, f) }, ws...)
}

// linear computes out (n x rows) = x (n x cols) W^T (+ adapter), split by
// output rows across threads. in, when not nil, is x prepared for several
// linears (n == 1): kernels.MatVecInput quantizes it once for all of them
// and all threads (bit-identical to quantizing it per call).
func (r *Model) linear(name string, w *ir.Tensor, x, out []float32, n int, in *kernels.Input) {
	if r.hook != nil {
		r.hook(name, x, n)
	}
	mul := func(r0, r1 int) {
		if in != nil {
			kernels.MatMulInput(w, in, out, r0, r1)
		} else {
			kernels.MatMul(w, x, out, n, r0, r1)
		}
	}
	if in != nil {
		PrepareInput(r.threads, in, n, w)
	}
	SplitRows(r.threads, w.Rows(), w.Rows()*w.Cols()*n, mul)
	if a, ok := r.adapters[name]; ok {
		applyAdapter(a, x, out, n)
	}
}

// fuse reports whether linears that read the same input (q, k, v; gate,
// up) run as one parallel section (linears): always, except under an
// OpTimer, which times each linear on its own, and under decodeLegacy.
func (r *Model) fuse() bool { return r.timer == nil && !decodeLegacy }

// linOp is one linear of a fused section: out = x W^T.
type linOp struct {
	name string
	w    *ir.Tensor
	out  []float32
}

// linears runs several linears that read the same input x (n rows) as one
// parallel section: the row chunks of all of them (cut as linear cuts
// them) are claimed from one counter, so there is one fork/join instead
// of one per linear, and a thread that finishes q's rows goes on with k's
// and v's. Row results do not depend on the split, so outputs are the
// bits of separate linear calls (TestLinearsFused).
func (r *Model) linears(x []float32, n int, in *kernels.Input, ops ...linOp) {
	type piece struct{ op, r0, r1 int }
	var buf [64]piece
	pieces := buf[:0]
	nt := r.threads
	if r.hook != nil {
		for _, op := range ops {
			r.hook(op.name, x, n)
		}
	}
	if guidedPieces && nt > 1 && n == 1 && sameCols(ops) {
		guided(ops, n, nt, func(i, r0, r1 int) { pieces = append(pieces, piece{i, r0, r1}) })
	} else {
		for i, op := range ops {
			rows := op.w.Rows()
			work := rows * op.w.Cols() * n
			if nt <= 1 || work < 1<<16 {
				pieces = append(pieces, piece{i, 0, rows})
				continue
			}
			nc := chunks(nt, work, (rows+15)/16)
			chunk := ((rows+nc-1)/nc + 15) &^ 15
			for r0 := 0; r0 < rows; r0 += chunk {
				pieces = append(pieces, piece{i, r0, min(r0+chunk, rows)})
			}
		}
	}
	if in != nil {
		var wb [4]*ir.Tensor
		ws := wb[:0]
		for _, op := range ops {
			ws = append(ws, op.w)
		}
		PrepareInput(r.threads, in, n, ws...)
	}
	run := func(p piece) {
		op := ops[p.op]
		if in != nil {
			kernels.MatMulInput(op.w, in, op.out, p.r0, p.r1)
		} else {
			kernels.MatMul(op.w, x, op.out, n, p.r0, p.r1)
		}
	}
	if nt <= 1 {
		for _, p := range pieces {
			run(p)
		}
	} else {
		parallel(nt, len(pieces), func(c int) { run(pieces[c]) })
	}
	for _, op := range ops {
		if a, ok := r.adapters[op.name]; ok {
			applyAdapter(a, x, op.out, n)
		}
	}
}

// guidedPieces selects guided cutting of a decode section's rows (tests
// and benchmarks compare it with equal chunks per linear; prefill keeps
// equal chunks: guided pieces measured 1% slower there).
var guidedPieces = true

func sameCols(ops []linOp) bool {
	for _, op := range ops[1:] {
		if op.w.Cols() != ops[0].w.Cols() {
			return false
		}
	}
	return true
}

// guided cuts the rows of ops (one input, so one cost per row: the same
// cols) into pieces for nt threads that claim them in order: each piece
// is 1/(2 nt) of the rows still to be cut (whole 16-row groups, at least
// minChunkWork multiply-adds), so pieces shrink towards the end and the
// last one a thread takes is small; with equal chunks per linear the
// other thread waited up to a whole chunk at the end of every section.
// Pieces stay within one linear. The cut depends only on the shapes and
// nt, and a row's result not at all (TestLinearsFused).
func guided(ops []linOp, n, nt int, emit func(op, r0, r1 int)) {
	cols := ops[0].w.Cols()
	total := 0
	for _, op := range ops {
		total += op.w.Rows()
	}
	if total*cols*n < 1<<16 {
		for i, op := range ops {
			emit(i, 0, op.w.Rows())
		}
		return
	}
	left := total
	for i, op := range ops {
		left = guidedCut(op.w.Rows(), left, cols*n, nt, func(r0, r1 int) { emit(i, r0, r1) })
	}
}

// guidedRows is guided for one product of rows rows, perRow multiply-adds
// each.
func guidedRows(rows, perRow, nt int, emit func(r0, r1 int)) {
	guidedCut(rows, rows, perRow, nt, emit)
}

// guidedCut cuts rows rows (of left still to cut in the section,
// perRow multiply-adds each) into guided pieces and returns what is left
// after them.
func guidedCut(rows, left, perRow, nt int, emit func(r0, r1 int)) int {
	minRows := max(16, (minChunkWork/max(1, perRow)+15)&^15)
	for r0 := 0; r0 < rows; {
		r1 := min(rows, r0+max(minRows, (left/(2*nt)+15)&^15))
		emit(r0, r1)
		left -= r1 - r0
		r0 = r1
	}
	return left
}

// applyAdapter adds Scale * B (A x) to each of the n outputs.
func applyAdapter(a *ir.Adapter, x, out []float32, n int) {
	ax := make([]float32, a.Rank)
	for i := 0; i < n; i++ {
		xi := x[i*a.In : (i+1)*a.In]
		for j := 0; j < a.Rank; j++ {
			ax[j] = kernels.Dot(a.A[j*a.In:(j+1)*a.In], xi) * a.Scale
		}
		oi := out[i*a.Out : (i+1)*a.Out]
		for o := range oi {
			oi[o] += kernels.Dot(a.B[o*a.Rank:(o+1)*a.Rank], ax)
		}
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

// rmsnorm: o = w * x / sqrt(mean(x^2) + eps), in llama2.c's order.
// rmsnormRows is rmsnorm over the n rows of dim of x into o: four rows at
// a time with their sums of squares interleaved (each still summed in
// order, so every row's bits are rmsnorm's), which runs the four add
// chains in parallel where one row's chain is latency-bound.
func rmsnormRows(o, x, w []float32, eps float32, n, dim int) {
	i := 0
	for ; i+4 <= n; i += 4 {
		x0, x1, x2, x3 := x[i*dim:(i+1)*dim], x[(i+1)*dim:(i+2)*dim], x[(i+2)*dim:(i+3)*dim], x[(i+3)*dim:(i+4)*dim]
		x1, x2, x3 = x1[:len(x0)], x2[:len(x0)], x3[:len(x0)]
		var s0, s1, s2, s3 float32
		for j, v := range x0 {
			s0 += v * v
			v1, v2, v3 := x1[j], x2[j], x3[j]
			s1 += v1 * v1
			s2 += v2 * v2
			s3 += v3 * v3
		}
		for k, ss := range [4]float32{s0, s1, s2, s3} {
			r := i + k
			rmsnormScale(o[r*dim:(r+1)*dim], x[r*dim:(r+1)*dim], w, ss, eps)
		}
	}
	for ; i < n; i++ {
		rmsnorm(o[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], w, eps)
	}
}

// rmsnormScale finishes rmsnorm from the row's sum of squares ss.
func rmsnormScale(o, x, w []float32, ss, eps float32) {
	ss /= float32(len(x))
	ss += eps
	ss = 1 / float32(math.Sqrt(float64(ss)))
	for j := range o {
		o[j] = w[j] * (ss * x[j])
	}
}

func rmsnorm(o, x, w []float32, eps float32) {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	rmsnormScale(o, x, w, ss, eps)
}

// rope rotates each head of vec at position pos. Interleaved: pairs
// (2i, 2i+1) with frequency theta^(-2i/headDim) (llama2.c, GGUF llama).
// NeoX: pairs (i, i+headDim/2) (Hugging Face checkpoints, qwen2).
func rope(vec []float32, headDim, pos int, theta float64, neox bool) {
	half := headDim / 2
	var buf [512]float32
	cr, ci := buf[:256], buf[256:]
	if half > 256 {
		cr, ci = make([]float32, half), make([]float32, half)
	}
	ropeTable(cr[:half], ci[:half], headDim, pos, theta)
	ropeApply(vec, headDim, cr, ci, neox)
}

// ropeTable fills the rotation of position pos: cr[i], ci[i] = cos, sin of
// pos * theta^(-2i/headDim), i < headDim/2. It depends on (pos, i) only, so
// Forward computes it once per token for every layer's q and k.
func ropeTable(cr, ci []float32, headDim, pos int, theta float64) {
	for i := range cr {
		freq := 1.0 / math.Pow(theta, float64(2*i)/float64(headDim))
		val := float64(float32(pos) * float32(freq))
		cr[i], ci[i] = float32(math.Cos(val)), float32(math.Sin(val))
	}
}

// ropeApply rotates each head of vec by the table of ropeTable. Every
// product is rounded on its own (the float32 conversions forbid fused
// multiply-adds, which the arm64 compiler would otherwise choose per
// expression), so the bits are the same on every architecture.
func ropeApply(vec []float32, headDim int, cr, ci []float32, neox bool) {
	half := headDim / 2
	cr, ci = cr[:half], ci[:half]
	for h := 0; h+headDim <= len(vec); h += headDim {
		head := vec[h : h+headDim]
		if neox {
			lo, hi := head[:half], head[half:]
			for i, fcr := range cr {
				fci := ci[i]
				v0, v1 := lo[i], hi[i]
				lo[i] = float32(v0*fcr) - float32(v1*fci)
				hi[i] = float32(v0*fci) + float32(v1*fcr)
			}
			continue
		}
		for i, fcr := range cr {
			fci := ci[i]
			v0, v1 := head[2*i], head[2*i+1]
			head[2*i] = float32(v0*fcr) - float32(v1*fci)
			head[2*i+1] = float32(v0*fci) + float32(v1*fcr)
		}
	}
}

// interleaveHeads reorders each head of vec from halves (x_0..x_{h/2-1},
// y_0..y_{h/2-1}) to pairs (x_0, y_0, x_1, y_1, ...), using tmp as scratch.
func interleaveHeads(vec []float32, headDim int, tmp []float32) {
	half := headDim / 2
	t := tmp[:headDim]
	for h := 0; h+headDim <= len(vec); h += headDim {
		head := vec[h : h+headDim]
		for i := 0; i < half; i++ {
			t[2*i], t[2*i+1] = head[i], head[i+half]
		}
		copy(head, t)
	}
}

// attention: for token i at position Pos+i and each head, softmax-weighted
// sum of cached values over positions 0..Pos+i. GQA: head h reads KV head
// h / (heads/kvHeads).
// attend8 is one head's attention for head dimension 8 (stories260K and
// other tiny models, where the per-key loop overhead and one dependent
// chain of adds per score dominated): four keys' dot products are summed
// side by side, each in the order of the general loop (j = 0..7), and the
// weighted values accumulate in eight locals in the general loop's order
// over t, so the results are the bits of the general path.
func attend8(qh, keys, vals, o, sc []float32, kh, kvd, pos int, scale float32) {
	q := (*[8]float32)(qh[:8])
	dot := func(t int) float32 {
		k := (*[8]float32)(keys[t*kvd+kh : t*kvd+kh+8])
		var d float32
		d += q[0] * k[0]
		d += q[1] * k[1]
		d += q[2] * k[2]
		d += q[3] * k[3]
		d += q[4] * k[4]
		d += q[5] * k[5]
		d += q[6] * k[6]
		d += q[7] * k[7]
		return d
	}
	t := 0
	for ; t+4 <= pos+1; t += 4 {
		d0, d1, d2, d3 := dot(t), dot(t+1), dot(t+2), dot(t+3)
		sc[t], sc[t+1], sc[t+2], sc[t+3] = d0*scale, d1*scale, d2*scale, d3*scale
	}
	for ; t <= pos; t++ {
		sc[t] = dot(t) * scale
	}
	softmax(sc[:pos+1])
	var o0, o1, o2, o3, o4, o5, o6, o7 float32
	for t := 0; t <= pos; t++ {
		a := sc[t]
		v := (*[8]float32)(vals[t*kvd+kh : t*kvd+kh+8])
		o0 += a * v[0]
		o1 += a * v[1]
		o2 += a * v[2]
		o3 += a * v[3]
		o4 += a * v[4]
		o5 += a * v[5]
		o6 += a * v[6]
		o7 += a * v[7]
	}
	oo := (*[8]float32)(o[:8])
	oo[0], oo[1], oo[2], oo[3], oo[4], oo[5], oo[6], oo[7] = o0, o1, o2, o3, o4, o5, o6, o7
}

func (r *Model) attention(s *State, l int, q, out []float32, n int, scores []float32) {
	c := r.Cfg
	hd, qd, kvd := c.HeadDim, c.QDim(), s.kvStride
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	keys, vals := s.keys[l], s.vals[l]
	job := func(i, h int) {
		pos := s.Pos + i
		qh := q[i*qd+h*hd : i*qd+(h+1)*hd]
		sc := scores[(i*c.Heads+h)*s.MaxSeq : (i*c.Heads+h)*s.MaxSeq+pos+1]
		kh := (h / group) * s.kvHeadOff // KV head h/group at position 0
		if hd == 8 && !decodeLegacy {
			attend8(qh, keys, vals, out[i*qd+h*hd:i*qd+(h+1)*hd], sc, kh, kvd, pos, scale)
			return
		}
		if hd%64 == 0 && !decodeLegacy && !attnLegacy && attendKernels(qh, keys[kh:], vals[kh:], out[i*qd+h*hd:i*qd+(h+1)*hd], sc, kvd, scale) {
			return
		}
		for t := 0; t <= pos; t++ {
			kt := keys[t*kvd+kh : t*kvd+kh+hd]
			if hd < 32 { // a call into the SIMD kernel costs more than it saves
				var d float32
				for j, qv := range qh {
					d += qv * kt[j]
				}
				sc[t] = d * scale
			} else {
				sc[t] = kernels.Dot(qh, kt) * scale
			}
		}
		softmax(sc)
		o := out[i*qd+h*hd : i*qd+(h+1)*hd]
		for j := range o {
			o[j] = 0
		}
		for t := 0; t <= pos; t++ {
			a := sc[t]
			vt := vals[t*kvd+kh : t*kvd+kh+hd]
			if hd < 32 {
				for j := range o {
					o[j] += a * vt[j]
				}
			} else {
				kernels.Axpy(a, vt, o)
			}
		}
	}
	total := n * c.Heads
	work := total * (s.Pos + n) * hd
	if r.threads <= 1 || work < 1<<15 {
		for i := 0; i < n; i++ {
			for h := 0; h < c.Heads; h++ {
				job(i, h)
			}
		}
		return
	}
	nt := min(r.threads, total)
	// chunk ch takes jobs ch, ch+nc, ...: later tokens (longer causal
	// context) are spread over all chunks
	nc := chunks(nt, work, total)
	if n == 1 && !attnLegacy && !decodeLegacy {
		// decode: every head has the same context, so chunk ch takes a
		// run of adjacent heads instead, and the heads that share a KV
		// head mostly run on one thread, which reads that KV head's cache
		// from memory once rather than once per thread
		parallel(nt, nc, func(ch int) {
			for h := ch * total / nc; h < (ch+1)*total/nc; h++ {
				job(0, h)
			}
		})
		return
	}
	parallel(nt, nc, func(ch int) {
		for j := ch; j < total; j += nc {
			job(j/c.Heads, j%c.Heads)
		}
	})
}

// Softmax is softmax for other packages (calibration's backward pass), the
// same arithmetic as the forward pass.
func Softmax(x []float32) { softmax(x) }

// softmax in place, max-subtracted, float32 as llama2.c.
func softmax(x []float32) {
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	sum := softmaxExp(x, mx)
	for i := range x {
		x[i] /= sum
	}
}

// softmaxExp is the middle of softmax: x[i] = expf(x[i] - mx), and the
// sum of the exponentials in index order. attendKernels divides by the sum
// in its value kernel.
func softmaxExp(x []float32, mx float32) float32 {
	var sum float32
	if !decodeLegacy && kernels.ExpShift(x, mx) { // the same expf, 8 lanes at a time
		for _, e := range x {
			sum += e
		}
	} else {
		for i, v := range x {
			e := expf(v - mx)
			x[i] = e
			sum += e
		}
	}
	return sum
}
