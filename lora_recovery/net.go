package lorarecovery

import (
	"fmt"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// Kind indices of a layer's linear weights, in ir.LinearKinds order.
const (
	kQ = iota
	kK
	kV
	kO
	kGate
	kUp
	kDown
	nKinds
)

// layerW holds one decoder layer's weights as float32.
type layerW struct {
	attnNorm, ffnNorm []float32
	lins              [nKinds]*lin
}

// net is a Llama-family decoder in float32 for training: frozen base
// weights, optional adapters on the linears (lin.A != nil).
type net struct {
	cfg       ir.Config
	emb       []float32 // (V,D)
	cls, clsT []float32 // (V,D) and its transpose (D,V)
	outNorm   []float32
	layers    []layerW
	eps       float32
	lowest    int // lowest layer holding an adapter or a tuned weight (backward stops there)
	// embGrad makes backward run down to the embedding output and hand its
	// gradient to the weight sink (tuning of token_embd or the norms).
	embGrad bool
	// normGrad hands every RMSNorm's output gradient to the weight sink.
	normGrad   bool
	withGrad   bool
	ropeMu     sync.Mutex // guards ropeTables: workers share the net
	ropeTables map[int]*ropeTable
}

// decodeF32 decodes a tensor of the model to float32 (a private copy).
func decodeF32(m *ir.Model, name string, shape ...int) ([]float32, error) {
	t, err := m.Tensor(name)
	if err != nil {
		return nil, err
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if t.Elems() != n || len(t.Shape) != len(shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, expected %v", m.Source, name, t.Shape, shape)
	}
	if err := t.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Source, err)
	}
	return append([]float32(nil), t.F32()...), nil
}

// newNet decodes m's weights to float32 once, with their transposes (the
// forward products run from W^T, the input gradients from W: matmul.go);
// withGrad marks the net that backward runs on.
func newNet(m *ir.Model, withGrad bool) (*net, error) {
	c := m.Config
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Source, err)
	}
	if c.QKVBias {
		return nil, fmt.Errorf("%s: qkv biases (qwen2) are not supported by the LoRA trainer yet", m.Source)
	}
	n := &net{cfg: c, eps: float32(c.NormEps), withGrad: withGrad, ropeTables: map[int]*ropeTable{}}
	var err error
	if n.emb, err = decodeF32(m, ir.NameTokenEmbd, c.Vocab, c.Dim); err != nil {
		return nil, err
	}
	if n.outNorm, err = decodeF32(m, ir.NameOutputNorm, c.Dim); err != nil {
		return nil, err
	}
	if c.TiedEmbed || m.Tensors[ir.NameOutput] == nil {
		n.cls = n.emb
	} else if n.cls, err = decodeF32(m, ir.NameOutput, c.Vocab, c.Dim); err != nil {
		return nil, err
	}
	n.clsT = transpose(n.cls, c.Vocab, c.Dim)
	n.layers = make([]layerW, c.Layers)
	for l := range n.layers {
		lw := &n.layers[l]
		if lw.attnNorm, err = decodeF32(m, ir.Blk(l, ir.AttnNorm), c.Dim); err != nil {
			return nil, err
		}
		if lw.ffnNorm, err = decodeF32(m, ir.Blk(l, ir.FFNNorm), c.Dim); err != nil {
			return nil, err
		}
		for k, kind := range ir.LinearKinds {
			out, in := linShape(c, k)
			W, err := decodeF32(m, ir.Blk(l, kind), out, in)
			if err != nil {
				return nil, err
			}
			li := &lin{W: W, WT: transpose(W, out, in), in: in, out: out}
			lw.lins[k] = li
		}
	}
	return n, nil
}

// linShape is (out, in) of linear kind k.
func linShape(c ir.Config, k int) (out, in int) {
	switch k {
	case kQ:
		return c.QDim(), c.Dim
	case kK, kV:
		return c.KVDim(), c.Dim
	case kO:
		return c.Dim, c.QDim()
	case kGate, kUp:
		return c.FFN, c.Dim
	default:
		return c.Dim, c.FFN
	}
}

func (n *net) rope(T int) *ropeTable {
	n.ropeMu.Lock()
	defer n.ropeMu.Unlock()
	rt, ok := n.ropeTables[T]
	if !ok {
		rt = newRopeTable(T, n.cfg.HeadDim, n.cfg.RopeTheta)
		n.ropeTables[T] = rt
	}
	return rt
}

// acts is one worker's activations and gradient scratch for a sequence of
// up to T tokens.
type acts struct {
	T     int
	x     [][]float32 // residual stream: x[l] enters layer l, x[L] leaves the last
	xn1   [][]float32
	rstd1 [][]float32
	q, k  [][]float32 // after RoPE
	v     [][]float32
	att   [][]float32
	ao    [][]float32
	x2    [][]float32
	xn2   [][]float32
	rstd2 [][]float32
	g, up [][]float32
	h     [][]float32
	u     [][nKinds][]float32 // A x of each adapted linear
	br    []float32           // branch output (attn_output / ffn_down)
	xnF   []float32
	rstdF []float32
	log   []float32 // logits, then log-probabilities, then dlogits

	// backward scratch
	dres, dx2, dbr, dxn, dq, dk, dv, dao, dg, dup, dh []float32
	du                                                []float32

	// sink, when set, receives what the gradients of tuned frozen
	// weights need during backward (lut_tune.go).
	sink weightSink
}

// weightSink receives, during backward, the quantities from which the
// gradient of a frozen weight follows (dW = dout^T inp): for every linear
// marked lin.tuned, its output gradient and input; the classifier's
// dlogits and input; and, when net.embGrad is set, the gradient of the
// embedding output x[0]. The slices are scratch: use them before
// returning.
type weightSink interface {
	linear(layer, kind int, dout, inp []float32, T int)
	classifier(dlogits, inp []float32, T int)
	embedding(dx0 []float32, tokens []int, T int)
	// norm: RMSNorm id (2l: blk.l.attn_norm, 2l+1: blk.l.ffn_norm,
	// 2L: output_norm), its output gradient, input and saved 1/rms.
	norm(id int, dout, inp, rstd []float32, T int)
}

func newActs(n *net, T int, maxRank int, withGrad bool) *acts {
	c := n.cfg
	L, D, F, V := c.Layers, c.Dim, c.FFN, c.Vocab
	QC, KC := c.QDim(), c.KVDim()
	f := func(k int) []float32 { return make([]float32, k) }
	a := &acts{T: T}
	a.x = make([][]float32, L+1)
	for l := range a.x {
		a.x[l] = f(T * D)
	}
	mk := func(k int) [][]float32 {
		s := make([][]float32, L)
		for l := range s {
			s[l] = f(k)
		}
		return s
	}
	a.xn1, a.rstd1 = mk(T*D), mk(T)
	a.q, a.k, a.v = mk(T*QC), mk(T*KC), mk(T*KC)
	a.att, a.ao = mk(c.Heads*T*T), mk(T*QC)
	a.x2, a.xn2, a.rstd2 = mk(T*D), mk(T*D), mk(T)
	a.g, a.up, a.h = mk(T*F), mk(T*F), mk(T*F)
	a.u = make([][nKinds][]float32, L)
	for l := range a.u {
		for k := 0; k < nKinds; k++ {
			if n.layers[l].lins[k].A != nil {
				a.u[l][k] = f(T * n.layers[l].lins[k].rank)
			}
		}
	}
	a.br = f(T * max(D, QC))
	a.xnF, a.rstdF, a.log = f(T*D), f(T), f(T*V)
	if withGrad {
		a.dres, a.dx2, a.dbr, a.dxn = f(T*D), f(T*D), f(T*D), f(T*D)
		a.dq, a.dk, a.dv, a.dao = f(T*QC), f(T*KC), f(T*KC), f(T*QC)
		a.dg, a.dup, a.dh = f(T*F), f(T*F), f(T*F)
		a.du = f(T * max(maxRank, 1))
	}
	return a
}

func zero(s []float32) {
	for i := range s {
		s[i] = 0
	}
}

// forward runs tokens (len T) through the net and leaves the logits in
// a.log[:T*V].
func (n *net) forward(a *acts, tokens []int) {
	c := n.cfg
	T := len(tokens)
	D, F, QC, KC := c.Dim, c.FFN, c.QDim(), c.KVDim()
	rt := n.rope(T)
	ad := attnDims{c.Heads, c.KVHeads, c.HeadDim}
	embeddingForward(a.x[0], tokens, n.emb, T, D)
	for l := range n.layers {
		lw := &n.layers[l]
		x := a.x[l][:T*D]
		rmsnormForward(a.xn1[l], a.rstd1[l], x, lw.attnNorm, T, D, n.eps)
		linearForward(a.q[l], a.u[l][kQ], a.xn1[l], lw.lins[kQ], T)
		linearForward(a.k[l], a.u[l][kK], a.xn1[l], lw.lins[kK], T)
		linearForward(a.v[l], a.u[l][kV], a.xn1[l], lw.lins[kV], T)
		ropeForward(a.q[l][:T*QC], rt, T, c.Heads, c.HeadDim, c.RopeNeoX)
		ropeForward(a.k[l][:T*KC], rt, T, c.KVHeads, c.HeadDim, c.RopeNeoX)
		attentionForward(a.ao[l], a.att[l], a.q[l], a.k[l], a.v[l], T, ad)
		linearForward(a.br, a.u[l][kO], a.ao[l], lw.lins[kO], T)
		residualForward(a.x2[l], x, a.br, T*D)
		rmsnormForward(a.xn2[l], a.rstd2[l], a.x2[l], lw.ffnNorm, T, D, n.eps)
		linearForward(a.g[l], a.u[l][kGate], a.xn2[l], lw.lins[kGate], T)
		linearForward(a.up[l], a.u[l][kUp], a.xn2[l], lw.lins[kUp], T)
		swigluForward(a.h[l], a.g[l], a.up[l], T*F)
		linearForward(a.br, a.u[l][kDown], a.h[l], lw.lins[kDown], T)
		residualForward(a.x[l+1], a.x2[l], a.br, T*D)
	}
	rmsnormForward(a.xnF, a.rstdF, a.x[c.Layers], n.outNorm, T, D, n.eps)
	classifierForward(a.log, a.xnF, n.cls, n.clsT, T, D, c.Vocab)
}

// backward propagates dlogits (in a.log) back to the adapters, adding
// their gradients into grads (laid out as the net's params, see
// adapterParams.bind).
func (n *net) backward(a *acts, tokens []int, grads []*linGrad) {
	c := n.cfg
	T := len(tokens)
	D, F, QC, KC := c.Dim, c.FFN, c.QDim(), c.KVDim()
	rt := n.rope(T)
	ad := attnDims{c.Heads, c.KVHeads, c.HeadDim}
	zero(a.dres[:T*D])
	if a.sink != nil {
		a.sink.classifier(a.log[:T*c.Vocab], a.xnF[:T*D], T)
	}
	classifierBackward(a.dres, a.log, a.xnF, n.cls, T, D, c.Vocab)
	zero(a.dx2[:T*D])
	n.sinkNorm(a, 2*c.Layers, a.dres, a.x[c.Layers], a.rstdF, T)
	rmsnormBackward(a.dx2, a.dres, a.x[c.Layers], a.rstdF, n.outNorm, T, D)
	a.dres, a.dx2 = a.dx2, a.dres
	for l := c.Layers - 1; l >= n.lowest; l-- {
		lw := &n.layers[l]
		g := grads[l*nKinds : (l+1)*nKinds]
		// x[l+1] = x2 + ffn_down(...)
		zero(a.dx2[:T*D])
		zero(a.dbr[:T*D])
		residualBackward(a.dx2, a.dbr, a.dres, T*D)
		zero(a.dh[:T*F])
		linBack(a.dh, g[kDown], a.dbr, a.h[l], a.u[l][kDown], lw.lins[kDown], T, a.du)
		n.sinkLinear(a, l, kDown, a.dbr, a.h[l], T)
		zero(a.dg[:T*F])
		zero(a.dup[:T*F])
		swigluBackward(a.dg, a.dup, a.dh, a.g[l], a.up[l], T*F)
		zero(a.dxn[:T*D])
		linBack(a.dxn, g[kGate], a.dg, a.xn2[l], a.u[l][kGate], lw.lins[kGate], T, a.du)
		linBack(a.dxn, g[kUp], a.dup, a.xn2[l], a.u[l][kUp], lw.lins[kUp], T, a.du)
		n.sinkLinear(a, l, kGate, a.dg, a.xn2[l], T)
		n.sinkLinear(a, l, kUp, a.dup, a.xn2[l], T)
		n.sinkNorm(a, 2*l+1, a.dxn, a.x2[l], a.rstd2[l], T)
		rmsnormBackward(a.dx2, a.dxn, a.x2[l], a.rstd2[l], lw.ffnNorm, T, D)
		last := l == n.lowest && !n.embGrad
		if last && !lw.lins[kQ].needsGrad() && !lw.lins[kK].needsGrad() && !lw.lins[kV].needsGrad() && !lw.lins[kO].needsGrad() {
			break
		}
		// x2 = x + attn_output(...)
		zero(a.dres[:T*D])
		zero(a.dbr[:T*D])
		residualBackward(a.dres, a.dbr, a.dx2, T*D)
		zero(a.dao[:T*QC])
		linBack(a.dao, g[kO], a.dbr, a.ao[l], a.u[l][kO], lw.lins[kO], T, a.du)
		n.sinkLinear(a, l, kO, a.dbr, a.ao[l], T)
		zero(a.dq[:T*QC])
		zero(a.dk[:T*KC])
		zero(a.dv[:T*KC])
		attentionBackward(a.dq, a.dk, a.dv, a.dao, a.att[l], a.q[l], a.k[l], a.v[l], T, ad)
		ropeBackward(a.dq[:T*QC], rt, T, c.Heads, c.HeadDim, c.RopeNeoX)
		ropeBackward(a.dk[:T*KC], rt, T, c.KVHeads, c.HeadDim, c.RopeNeoX)
		var dxn []float32
		if !last {
			dxn = a.dxn
			zero(dxn[:T*D])
		}
		linBack(dxn, g[kQ], a.dq, a.xn1[l], a.u[l][kQ], lw.lins[kQ], T, a.du)
		linBack(dxn, g[kK], a.dk, a.xn1[l], a.u[l][kK], lw.lins[kK], T, a.du)
		linBack(dxn, g[kV], a.dv, a.xn1[l], a.u[l][kV], lw.lins[kV], T, a.du)
		n.sinkLinear(a, l, kQ, a.dq, a.xn1[l], T)
		n.sinkLinear(a, l, kK, a.dk, a.xn1[l], T)
		n.sinkLinear(a, l, kV, a.dv, a.xn1[l], T)
		if !last {
			n.sinkNorm(a, 2*l, a.dxn, a.x[l], a.rstd1[l], T)
			rmsnormBackward(a.dres, a.dxn, a.x[l], a.rstd1[l], lw.attnNorm, T, D)
		}
	}
	// a.dres now holds the gradient of x[lowest] (x[0] when embGrad).
	if n.embGrad && a.sink != nil {
		a.sink.embedding(a.dres[:T*D], tokens, T)
	}
}

// sinkNorm hands an RMSNorm's output gradient, input and 1/rms to the
// weight sink when the norms are tuned.
func (n *net) sinkNorm(a *acts, id int, dout, inp, rstd []float32, T int) {
	if a.sink == nil || !n.normGrad {
		return
	}
	D := n.cfg.Dim
	a.sink.norm(id, dout[:T*D], inp[:T*D], rstd[:T], T)
}

// sinkLinear hands a tuned linear's output gradient and input to the
// weight sink.
func (n *net) sinkLinear(a *acts, l, k int, dout, inp []float32, T int) {
	li := n.layers[l].lins[k]
	if a.sink == nil || !li.tuned {
		return
	}
	out, in := linShape(n.cfg, k)
	a.sink.linear(l, k, dout[:T*out], inp[:T*in], T)
}

// linGrad points at the gradient slices of one adapter (nil when the
// linear has none).
type linGrad struct{ dA, dB []float32 }

func linBack(dinp []float32, g *linGrad, dout, inp, u []float32, l *lin, T int, du []float32) {
	var dA, dB []float32
	if g != nil {
		dA, dB = g.dA, g.dB
	}
	if l.A == nil && dinp == nil {
		return
	}
	linearBackward(dinp, dA, dB, du, dout, inp, u, l, T)
}
