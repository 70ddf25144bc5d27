package lorarecovery

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
)

// Palette tuning ("zero-byte recovery"): the indices of every palettized
// tensor stay frozen and the values they point at -- the float16 LUT
// entries and, where present, the per-row scales -- are trained by the same
// distillation as the adapters. The bundle keeps its size and layout.
//
// With W[r][c] = LUT[g(r)][idx[r][c]] * s[r] and G = dL/dW (out x in):
//
//	dL/dLUT[g][k] = sum over rows r of group g, columns c with idx[r][c] = k of G[r][c] * s[r]
//	dL/ds[r]      = sum_c G[r][c] * LUT[g(r)][idx[r][c]]
//
// G is materialised one linear at a time per sequence (G = dout^T inp, the
// cost of one more forward matmul; memory one out x in float32 scratch per
// worker) and reduced to the palette at once. For the tied token embedding
// G is the classifier's dlogits^T x plus the embedding lookup's scatter of
// dx[0]; both are (vocab x dim) per sequence, which for a 32k x 4096
// vocabulary is 512 MiB per worker and T*V*D multiply-adds per window: on big
// models tune the embedding separately or leave it out (TuneOptions.Tensors).

// TuneOptions configure TuneLUTs. Zero values take the defaults in brackets.
type TuneOptions struct {
	Steps int // optimizer steps [200]
	// LR is the peak step relative to magnitude: Adam moves an entry by
	// about LR x the RMS of its block (one tensor's LUT entries, or one
	// tensor's row scales) per step [2e-3].
	LR                float64
	WarmupSteps       int     // linear warmup [Steps/20]
	MinLRFrac         float64 // cosine decays to LR*MinLRFrac [0.1]
	Batch             int     // sequences per step [8]
	SeqLen            int     // tokens per window, BOS first [128, at most the model's seq_len]
	CEWeight          float64 // weight of cross-entropy on the text beside the KL [0]
	HeldOutFrac       float64 // last fraction of windows held out [0.1]
	EvalEvery         int     // held-out evaluation period in steps [max(1, Steps/10)]
	BOS               int     // put first in every window [the student's tokenizer BOS, else 1]
	Seed              uint64
	Threads           int   // worker goroutines [GOMAXPROCS]
	TeacherCacheBytes int64 // as Options.TeacherCacheBytes [512 MiB]
	// Tensors names the palettized tensors to tune [every palettized
	// tensor of the student: linears, token_embd, output].
	Tensors []string
	// FreezeScales keeps the per-row scales and tunes the LUT entries only.
	FreezeScales bool
	// Norms also tunes the RMSNorm weights (attn_norm, ffn_norm,
	// output_norm) stored as float32: they are per-input-channel scales of
	// the linears (and classifier) after them, zero bytes too.
	Norms bool
	// Adapters, with QAT, also trains LoRA adapters in the same run
	// (joint.go); TuneReport.AdapterSet returns them. Nil: none.
	Adapters *JointAdapters
	// QAT, when set, also re-assigns the indices (palettization-aware
	// training, qat.go): latent float32 weights are trained through the
	// straight-through estimator and every index follows the nearest LUT
	// entry of its latent weight. Nil: indices frozen.
	QAT *QATOptions
	// Progress is called after every step with the step number (1-based),
	// the step's training loss and the most recent held-out KL.
	Progress func(step int, loss, heldoutKL float64)
}

// TuneReport summarises a TuneLUTs run.
type TuneReport struct {
	Tensors        int `json:"tensors"`
	LUTEntries     int `json:"lut_entries"`
	Scales         int `json:"scales"` // row scales tuned
	NormWeights    int `json:"norm_weights"`
	SeqLen         int `json:"seq_len"`
	Batch          int `json:"batch"`
	Steps          int `json:"steps"`
	Threads        int `json:"threads"`
	TrainWindows   int `json:"train_windows"`
	HeldOutWindows int `json:"heldout_windows"`
	// BaseHeldOutKL is the held-out KL of the student as given (joint
	// runs: without the adapters),
	// BestHeldOutKL that of the returned palettes (float16-rounded, as
	// stored), chosen at BestStep (0: the student's own, unchanged).
	BaseHeldOutKL   float64       `json:"base_heldout_kl"`
	BestHeldOutKL   float64       `json:"best_heldout_kl"`
	BestStep        int           `json:"best_step"`
	FinalLoss       float64       `json:"final_loss"`
	TrainTokens     int64         `json:"train_tokens"`
	StepTime        time.Duration `json:"step_time_ns"`
	Duration        time.Duration `json:"duration_ns"`
	SecondsPerToken float64       `json:"seconds_per_token"`
	History         []Point       `json:"history"`
	// QAT reports the index re-assignment (nil without TuneOptions.QAT).
	QAT *QATReport `json:"qat,omitempty"`
	// AdapterSet holds the adapters of a joint run (TuneOptions.Adapters),
	// trained on the returned model (set their BaseSHA256 once it is
	// stored); AdapterRank is their rank.
	AdapterSet  *ir.AdapterSet `json:"-"`
	AdapterRank int            `json:"adapter_rank,omitempty"`
}

// palParam is one tuned palettized tensor: its LUT entries (and row scales,
// unless fixed) live in the tuner's theta. A plain palettized tensor is one
// segment; a lutmix tensor has one segment per part, each with its own
// width, group size and scales.
type palParam struct {
	name       string
	t          *ir.Tensor
	rows, cols int
	idx        []uint8 // unpacked indices, row-major, all rows
	segs       []palSeg
	// W is the student net's decoded weight (rows x cols), WT its
	// transpose when the net keeps one (nil otherwise).
	W, WT []float32
	// qat is the offset of this tensor's dL/dW (rows x cols) in the
	// gradient vector when QAT trains its latent weights (after theta, so
	// > 0); 0 when off.
	qat int
}

// palSeg is rows [r0, r1) of a tuned tensor that share one encoding: the
// whole tensor, or one part of a lutmix tensor (src).
type palSeg struct {
	src       *ir.Tensor
	r0, r1    int
	bits      int
	K, G      int // entries per LUT (1 << bits), rows per LUT group
	lut, nLUT int // offset and count of the LUT entries in theta
	scl       int // offset of the segment's row scales in theta; -1 when fixed or none
	fixed     []float32
	codes     bool // scales are stored as one-byte codes (ir.ScaleCode), not float16
}

// roundScales rounds tuned scales to what the segment stores: the
// float16 of their nearest code, or float16.
func (s *palSeg) roundScales(v []float32) {
	if !s.codes {
		roundF16(v)
		return
	}
	for i, x := range v {
		v[i] = ir.F16ToF32(ir.ScaleCodeF16(ir.ScaleCode(x)))
	}
}

// scale is row r's scale (r a row of the tensor, in the segment) under
// parameters theta.
//
// Scales stored as one-byte codes are used at their code's value (the
// tuned value moves freely, its gradient passes straight through the
// rounding): the 2.2% grid is coarse enough that training on unrounded
// scales and rounding at the end measured worse (stories260K 3.7 bpw
// per-group QAT: dev KLD 0.0927 rounding at the end).
func (s *palSeg) scale(theta []float32, r int) float32 {
	switch {
	case s.scl >= 0:
		if s.codes {
			return ir.F16ToF32(ir.ScaleCodeF16(ir.ScaleCode(theta[s.scl+r-s.r0])))
		}
		return theta[s.scl+r-s.r0]
	case s.fixed != nil:
		return s.fixed[r-s.r0]
	}
	return 1
}

// lutOf returns the LUT of row r (a row of the tensor, in the segment).
func (s *palSeg) lutOf(v []float32, r int) []float32 {
	g := (r - s.r0) / s.G
	return v[s.lut+g*s.K : s.lut+(g+1)*s.K]
}

// decode writes W (and WT) from theta.
func (p *palParam) decode(theta []float32) {
	for i := range p.segs {
		sg := &p.segs[i]
		for r := sg.r0; r < sg.r1; r++ {
			lut := sg.lutOf(theta, r)
			s := sg.scale(theta, r)
			w := p.W[r*p.cols : (r+1)*p.cols]
			for c, k := range p.idx[r*p.cols : (r+1)*p.cols] {
				w[c] = lut[k] * s
			}
		}
	}
	if p.WT != nil {
		for r := 0; r < p.rows; r++ {
			for c, v := range p.W[r*p.cols : (r+1)*p.cols] {
				p.WT[c*p.rows+r] = v
			}
		}
	}
}

// accumulate adds the palette gradient of dL/dW = dW (rows x cols) to g.
func (p *palParam) accumulate(dW, theta, g []float32) {
	for i := range p.segs {
		sg := &p.segs[i]
		for r := sg.r0; r < sg.r1; r++ {
			lut := sg.lutOf(theta, r)
			gl := sg.lutOf(g, r)
			s := sg.scale(theta, r)
			row := dW[r*p.cols : (r+1)*p.cols]
			var ds float32
			for c, k := range p.idx[r*p.cols : (r+1)*p.cols] {
				d := row[c]
				gl[k] += d * s
				ds += d * lut[k]
			}
			if sg.scl >= 0 {
				g[sg.scl+r-sg.r0] += ds
			}
		}
	}
	if p.qat > 0 {
		axpy(g[p.qat:p.qat+p.rows*p.cols], 1, dW[:p.rows*p.cols])
	}
}

// lutTuner holds the state of one TuneLUTs call.
type lutTuner struct {
	tr     *trainer
	params []*palParam
	lin    []*palParam // by layer*nKinds+kind; nil when not tuned
	emb    *palParam   // token_embd (also the classifier when tied)
	cls    *palParam   // the classifier: emb when tied, output when untied
	theta  []float32
	mag    []float32 // per-parameter step scale (RMS of its block)
	nLUT   int
	nScl   int
	sinks  []*lutSink
	norms  []*normParam // by norm id (see weightSink.norm); nil when not tuned
	nNorm  int
	// adOff is the offset of the adapters' gradients in the gradient
	// vector of a joint run (joint.go); 0 without adapters.
	adOff int
}

// normParam is one tuned RMSNorm weight (float32), theta[off:off+len(w)].
type normParam struct {
	name string
	w    []float32 // the student net's weight
	off  int
}

// lutSink is one worker's weightSink: it reduces dL/dW of each tuned
// tensor into the palette gradient g of the current sequence.
type lutSink struct {
	tu     *lutTuner
	g      []float32
	dW, dE []float32 // scratch: a linear's dW; the embedding/classifier's
}

func (s *lutSink) linear(layer, kind int, dout, inp []float32, T int) {
	p := s.tu.lin[layer*nKinds+kind]
	dW := s.dW[:p.rows*p.cols]
	gemmTN(dW, dout, inp, T, p.rows, p.cols)
	p.accumulate(dW, s.tu.theta, s.g)
}

func (s *lutSink) classifier(dlogits, inp []float32, T int) {
	p := s.tu.cls
	if p == nil {
		return
	}
	dW := s.dE[:p.rows*p.cols]
	gemmTN(dW, dlogits, inp, T, p.rows, p.cols)
	if p == s.tu.emb {
		return // tied: the lookup's gradient is added in embedding
	}
	p.accumulate(dW, s.tu.theta, s.g)
}

func (s *lutSink) norm(id int, dout, inp, rstd []float32, T int) {
	p := s.tu.norms[id]
	if p == nil {
		return
	}
	D := len(p.w)
	g := s.g[p.off : p.off+D]
	for t := 0; t < T; t++ {
		r := rstd[t]
		x := inp[t*D : (t+1)*D]
		for i, d := range dout[t*D : (t+1)*D] {
			g[i] += d * x[i] * r
		}
	}
}

func (s *lutSink) embedding(dx0 []float32, tokens []int, T int) {
	p := s.tu.emb
	if p == nil {
		return
	}
	D := p.cols
	dW := s.dE[:p.rows*D]
	if p != s.tu.cls {
		zero(dW)
	}
	for t := 0; t < T; t++ {
		axpy(dW[tokens[t]*D:(tokens[t]+1)*D], 1, dx0[t*D:(t+1)*D])
	}
	p.accumulate(dW, s.tu.theta, s.g)
}

// roundF16 rounds every value to float16 precision.
func roundF16(v []float32) {
	for i, x := range v {
		v[i] = ir.F16ToF32(ir.F32ToF16(x))
	}
}

// roundStored rounds the palette values of theta to float16, as stored
// (the float32 norm weights stay as they are).
func (tu *lutTuner) roundStored(theta []float32) {
	for _, p := range tu.params {
		for _, sg := range p.segs {
			roundF16(theta[sg.lut : sg.lut+sg.nLUT])
			if sg.scl >= 0 {
				sg.roundScales(theta[sg.scl : sg.scl+sg.r1-sg.r0])
			}
		}
	}
}

// heldOutStored returns the held-out KL of the palettes as stored
// (theta rounded to float16 into rounded, with the current indices) and
// leaves the net decoded from theta again.
func (tu *lutTuner) heldOutStored(rounded []float32) float64 {
	copy(rounded, tu.theta)
	tu.roundStored(rounded)
	tu.decode(rounded)
	kl := tu.tr.heldOutKL()
	tu.decode(tu.theta)
	return kl
}

// decode writes every tuned weight of the student net from theta.
func (tu *lutTuner) decode(theta []float32) {
	// each tensor writes its own weights: on the workers
	tu.tr.parallel(len(tu.params), func(_, i int) { tu.params[i].decode(theta) })
	for _, p := range tu.norms {
		if p != nil {
			copy(p.w, theta[p.off:p.off+len(p.w)])
		}
	}
}

// newLUTTuner checks the inputs, cuts the windows, decodes both models and
// lays out the palette parameters; opt must have its defaults applied.
// Teacher log-probabilities are not computed yet.
func newLUTTuner(teacher, student *ir.Model, tokens []int, opt Options, names []string, freezeScales, norms bool) (*lutTuner, error) {
	c := student.Config
	tr := &trainer{opt: opt, T: opt.SeqLen, V: c.Vocab}
	if _, err := tr.cutWindows(tokens, opt.HeldOutFrac, opt.BOS); err != nil {
		return nil, err
	}
	var err error
	if tr.teacher, err = newNet(teacher, false); err != nil {
		return nil, err
	}
	if tr.student, err = newNet(student, true); err != nil {
		return nil, err
	}
	n := tr.student
	tu := &lutTuner{tr: tr, lin: make([]*palParam, c.Layers*nKinds)}
	// Which tensors.
	tied := &n.cls[0] == &n.emb[0]
	if len(names) == 0 {
		for _, name := range student.TensorNames() {
			if name == ir.NameOutput && tied {
				continue // unused: the classifier is token_embd
			}
			if t := student.Tensors[name]; t.IsPalettized() {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("lut tuning: %s has no palettized tensors to tune", student.Source)
		}
	}
	n.lowest = c.Layers
	for _, name := range names {
		t, err := student.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("lut tuning: %w", err)
		}
		if !t.IsPalettized() {
			return nil, fmt.Errorf("lut tuning: %s: tensor %q is %s, not palettized", student.Source, name, ir.Encodings[t.Type].Name)
		}
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("lut tuning: %s: %w", student.Source, err)
		}
		if slices.ContainsFunc(tu.params, func(p *palParam) bool { return p.name == name }) {
			continue
		}
		p := &palParam{name: name, t: t, rows: t.Rows(), cols: t.Cols()}
		parts := []*ir.Tensor{t}
		if t.Type == ir.LUTMIX {
			parts = t.Parts
		}
		r0 := 0
		for _, pt := range parts {
			bits := ir.Encodings[pt.Type].Bits
			p.segs = append(p.segs, palSeg{src: pt, r0: r0, r1: r0 + pt.Rows(), bits: bits, K: 1 << bits, G: pt.Pal.GroupSize, scl: -1,
				codes: pt.Pal.ScaleCodes != nil})
			p.idx = append(p.idx, ir.UnpackIndices(bits, pt.Data, pt.Elems())...)
			r0 += pt.Rows()
		}
		switch {
		case name == ir.NameTokenEmbd:
			p.W = n.emb
			if tied {
				p.WT = n.clsT
				tu.cls = p
			}
			tu.emb = p
			n.embGrad = true
			n.lowest = 0
		case name == ir.NameOutput && !tied:
			p.W, p.WT = n.cls, n.clsT
			tu.cls = p
		default:
			found := false
			for l := 0; l < c.Layers && !found; l++ {
				for k, kind := range ir.LinearKinds {
					if ir.Blk(l, kind) == name {
						li := n.layers[l].lins[k]
						p.W, p.WT = li.W, li.WT
						li.tuned = true
						tu.lin[l*nKinds+k] = p
						n.lowest = min(n.lowest, l)
						found = true
						break
					}
				}
			}
			if !found {
				return nil, fmt.Errorf("lut tuning: %s: tensor %q is palettized but is not a weight the trainer uses (token_embd, output, blk.N.<linear>)", student.Source, name)
			}
		}
		if len(p.W) != p.rows*p.cols {
			return nil, fmt.Errorf("lut tuning: %s: tensor %q has shape %v, the net holds %d values", student.Source, name, t.Shape, len(p.W))
		}
		tu.params = append(tu.params, p)
	}
	// Parameters: per tensor (per part of a lutmix tensor) its LUT entries,
	// then its row scales.
	for _, p := range tu.params {
		for i := range p.segs {
			sg := &p.segs[i]
			sg.lut, sg.nLUT = len(tu.theta), len(sg.src.Pal.LUT)
			for _, h := range sg.src.Pal.LUT {
				tu.theta = append(tu.theta, ir.F16ToF32(h))
			}
			tu.mag = appendRMS(tu.mag, tu.theta[sg.lut:])
			tu.nLUT += sg.nLUT
			if sc := sg.src.Pal.Scales; sc != nil {
				if freezeScales {
					sg.fixed = make([]float32, len(sc))
					for i, h := range sc {
						sg.fixed[i] = ir.F16ToF32(h)
					}
				} else {
					sg.scl = len(tu.theta)
					for _, h := range sc {
						tu.theta = append(tu.theta, ir.F16ToF32(h))
					}
					tu.mag = appendRMS(tu.mag, tu.theta[sg.scl:])
					tu.nScl += len(sc)
				}
			}
		}
	}
	if norms {
		tu.norms = make([]*normParam, 2*c.Layers+1)
		for id := range tu.norms {
			name, w := ir.NameOutputNorm, n.outNorm
			if id < 2*c.Layers {
				name, w = ir.Blk(id/2, ir.AttnNorm), n.layers[id/2].attnNorm
				if id%2 == 1 {
					name, w = ir.Blk(id/2, ir.FFNNorm), n.layers[id/2].ffnNorm
				}
			}
			if student.Tensors[name].Type != ir.F32 {
				continue // stored otherwise: left as it is
			}
			tu.norms[id] = &normParam{name: name, w: w, off: len(tu.theta)}
			tu.theta = append(tu.theta, w...)
			tu.mag = appendRMS(tu.mag, w)
			tu.nNorm += len(w)
		}
		if tu.nNorm > 0 {
			n.normGrad, n.embGrad, n.lowest = true, true, 0
		}
	}
	// Workers and their sinks.
	maxW, maxE := 0, 0
	for _, p := range tu.params {
		if p == tu.emb || p == tu.cls {
			maxE = max(maxE, p.rows*p.cols)
		} else {
			maxW = max(maxW, p.rows*p.cols)
		}
	}
	for w := 0; w < opt.Threads; w++ {
		a := newActs(n, tr.T, 1, true)
		s := &lutSink{tu: tu, dW: make([]float32, maxW), dE: make([]float32, maxE)}
		a.sink = s
		tr.work = append(tr.work, a)
		tu.sinks = append(tu.sinks, s)
	}
	return tu, nil
}

// appendRMS appends len(v) copies of the RMS of v (a small floor keeps an
// all-zero block trainable).
func appendRMS(dst, v []float32) []float32 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	rms := float32(math.Sqrt(ss / float64(max(len(v), 1))))
	rms = max(rms, 1e-4)
	for range v {
		dst = append(dst, rms)
	}
	return dst
}

// seqGrad computes window w's loss and writes its palette gradient to g.
func (tu *lutTuner) seqGrad(worker, w int, g []float32, klScale, ceScale float32) float64 {
	zero(g)
	tu.sinks[worker].g = g
	var ga []float32 // adapter gradients (joint runs)
	if tu.adOff > 0 {
		ga = g[tu.adOff:]
	}
	return tu.tr.seqGrad(worker, w, ga, klScale, ceScale)
}

// TuneLUTs fine-tunes the palettes of the student (a palettized model) by
// distillation from the teacher (the original) on windows cut from the
// calibration token stream: the indices stay as they are; the float16 LUT
// entries and per-row scales of the tuned tensors are trained (Adam,
// warmup then cosine decay, float32 during training) so that the
// student's next-token distributions match the teacher's. It returns a
// copy of the student whose tuned tensors have new palettes (rounded to
// float16), the ones with the lowest held-out KL seen (evaluated every
// EvalEvery steps with float16-rounded values, the student's own included:
// if nothing beats them they are returned unchanged).
//
// The returned model shares the student's index data (and its other
// tensors): keep the student open while it is used. Its Meta has no
// "base_sha256" (the base weights changed) and it carries no adapter sets
// (any the student had were trained on the old base). Results are
// bit-identical for the same inputs and seed, whatever the thread count.
func TuneLUTs(teacher, student *ir.Model, tokens []int, topt TuneOptions) (*ir.Model, TuneReport, error) {
	start := time.Now()
	var rep TuneReport
	c, bos, err := checkPair("lut tuning", teacher, student)
	if err != nil {
		return nil, rep, err
	}
	// The shared options and their checks (rank is unused here).
	opt := Options{Rank: 1, Steps: topt.Steps, LR: topt.LR, WarmupSteps: topt.WarmupSteps, MinLRFrac: topt.MinLRFrac,
		Batch: topt.Batch, SeqLen: topt.SeqLen, CEWeight: topt.CEWeight, HeldOutFrac: topt.HeldOutFrac,
		EvalEvery: topt.EvalEvery, BOS: topt.BOS, Seed: topt.Seed, Threads: topt.Threads,
		TeacherCacheBytes: topt.TeacherCacheBytes, GradClip: -1}
	if opt.LR == 0 {
		opt.LR = 2e-3
	}
	opt.defaults(c, bos)
	if err := opt.check(c); err != nil {
		return nil, rep, err
	}
	if topt.QAT != nil {
		return tuneQAT(teacher, student, tokens, topt, opt, start)
	}
	if topt.Adapters != nil {
		return nil, rep, fmt.Errorf("lut tuning: joint adapters need QAT")
	}
	tu, err := newLUTTuner(teacher, student, tokens, opt, topt.Tensors, topt.FreezeScales, topt.Norms)
	if err != nil {
		return nil, rep, err
	}
	tr := tu.tr
	tr.cacheTeacher(opt.TeacherCacheBytes)
	rep = TuneReport{Tensors: len(tu.params), LUTEntries: tu.nLUT, Scales: tu.nScl, NormWeights: tu.nNorm, SeqLen: tr.T, Batch: opt.Batch,
		Steps: opt.Steps, Threads: opt.Threads, TrainWindows: tr.nTrain, HeldOutWindows: len(tr.windows) - tr.nTrain}
	rep.BaseHeldOutKL = tr.heldOutKL()
	best := append([]float32(nil), tu.theta...) // float16 values already
	rep.BestHeldOutKL = rep.BaseHeldOutKL
	rep.History = append(rep.History, Point{0, math.NaN(), rep.BaseHeldOutKL})

	P := len(tu.theta)
	m := make([]float32, P)
	v := make([]float32, P)
	bg := newBatchGrads(opt.Seed, 0x1a7e, tr.nTrain, opt.Batch, P)
	gsum := bg.gsum
	rounded := make([]float32, P)
	lastKL := rep.BaseHeldOutKL
	for step := 1; step <= opt.Steps; step++ {
		t0 := time.Now()
		loss := bg.step(tr, opt.CEWeight, tu.seqGrad)
		lr := lrAt(step, opt)
		bc1, sq2 := adamBias(step)
		stepSize := float32(lr / bc1)
		adamUpdate(tu.theta, tu.mag, m, v, gsum, stepSize, sq2)
		tu.decode(tu.theta)
		rep.StepTime += time.Since(t0)
		pt := Point{Step: step, Loss: loss, HeldOutKL: math.NaN()}
		if step%opt.EvalEvery == 0 || step == opt.Steps {
			lastKL = tu.heldOutStored(rounded)
			pt.HeldOutKL = lastKL
			if lastKL < rep.BestHeldOutKL {
				rep.BestHeldOutKL, rep.BestStep = lastKL, step
				copy(best, rounded)
			}
		}
		rep.History = append(rep.History, pt)
		rep.FinalLoss = loss
		if topt.Progress != nil {
			topt.Progress(step, loss, lastKL)
		}
	}
	out := tu.model(student, best)
	rep.TrainTokens = int64(opt.Steps) * int64(opt.Batch) * int64(tr.T)
	rep.Duration = time.Since(start)
	if rep.TrainTokens > 0 {
		rep.SecondsPerToken = rep.StepTime.Seconds() / float64(rep.TrainTokens)
	}
	return out, rep, nil
}

// model returns a copy of student whose tuned tensors take their palettes
// from theta (float16 values).
func (tu *lutTuner) model(student *ir.Model, theta []float32) *ir.Model {
	out := &ir.Model{Config: student.Config, Tensors: make(map[string]*ir.Tensor, len(student.Tensors)),
		Tokenizer: student.Tokenizer, Format: student.Format, Source: student.Source, Meta: map[string]string{}}
	for k, v := range student.Meta {
		if k != "base_sha256" {
			out.Meta[k] = v
		}
	}
	for name, t := range student.Tensors {
		out.Tensors[name] = t
	}
	f16 := func(v []float32) []uint16 {
		h := make([]uint16, len(v))
		for i, x := range v {
			h[i] = ir.F32ToF16(x)
		}
		return h
	}
	for _, p := range tu.params {
		var parts []*ir.Tensor
		for _, sg := range p.segs {
			pal := &ir.Palette{GroupSize: sg.G, LUT: f16(theta[sg.lut : sg.lut+sg.nLUT]), Scales: sg.src.Pal.Scales, ScaleCodes: sg.src.Pal.ScaleCodes}
			if sg.scl >= 0 {
				sc := theta[sg.scl : sg.scl+sg.r1-sg.r0]
				if sg.codes {
					pal.ScaleCodes = make([]uint8, len(sc))
					for i, x := range sc {
						pal.ScaleCodes[i] = ir.ScaleCode(x)
					}
					pal.ExpandScaleCodes()
				} else {
					pal.Scales = f16(sc)
				}
			}
			parts = append(parts, &ir.Tensor{Name: sg.src.Name, Shape: slices.Clone(sg.src.Shape), Type: sg.src.Type, Data: sg.src.Data, Pal: pal})
		}
		if p.t.Type == ir.LUTMIX {
			out.Tensors[p.name] = &ir.Tensor{Name: p.t.Name, Shape: slices.Clone(p.t.Shape), Type: ir.LUTMIX, Parts: parts}
		} else {
			out.Tensors[p.name] = parts[0]
		}
	}
	for _, p := range tu.norms {
		if p != nil {
			out.Tensors[p.name] = ir.NewF32(p.name, append([]float32(nil), theta[p.off:p.off+len(p.w)]...), len(p.w))
		}
	}
	return out
}

// Adam's moments for palette tuning and QAT (adapter training keeps its
// own, with gradient clipping and another epsilon).
const tuneB1, tuneB2, tuneAdamEps = 0.9, 0.999, 1e-12

// adamBias returns Adam's bias corrections at step (from 1): 1 - b1^step,
// and sqrt(1 - b2^step) as float32.
func adamBias(step int) (bc1 float64, sq2 float32) {
	return 1 - math.Pow(tuneB1, float64(step)), float32(math.Sqrt(1 - math.Pow(tuneB2, float64(step))))
}

// adamUpdate takes one Adam step on theta from the gradient g: moments m
// and v, a per-parameter scale mag, stepSize = lr / bc1 and sq2 from
// adamBias.
func adamUpdate(theta, mag, m, v, g []float32, stepSize, sq2 float32) {
	const b1, b2, eps = tuneB1, tuneB2, tuneAdamEps
	for i, gi := range g {
		m[i] = b1*m[i] + (1-b1)*gi
		v[i] = b2*v[i] + (1-b2)*gi*gi
		theta[i] -= stepSize * mag[i] * m[i] / (float32(math.Sqrt(float64(v[i])))/sq2 + eps)
	}
}
