package lorarecovery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
)

// InitMode chooses how adapters start.
type InitMode int

const (
	// InitResidual starts from the best rank-r approximation of the
	// importance-weighted compression residual W - W_q (InitFromResidual).
	InitResidual InitMode = iota
	// InitZero is standard LoRA: A ~ N(0, 1/in), B = 0, so the adapted
	// model starts exactly as the compressed one.
	InitZero
)

// Options configure Train. Zero values take the defaults in brackets.
type Options struct {
	Rank int // adapter rank [8]
	// Ranks overrides Rank for some targets: keys are linear kinds
	// ("attn_q") or tensor names ("blk.4.ffn_down", which win over
	// kinds); every key must name an adapted linear.
	Ranks map[string]int
	Alpha float64 // Scale = Alpha / Rank [Rank, i.e. scale 1]
	// Targets are linear kinds ("attn_q", every layer) or tensor names
	// ("blk.3.ffn_down") [every linear of every layer].
	Targets []string
	Init    InitMode
	// Importance holds per-input-channel calibration importance for
	// InitResidual, keyed by target tensor name (len = in). Missing: uniform.
	Importance map[string][]float32

	Steps       int     // optimizer steps [200]
	LR          float64 // peak learning rate [2e-3]
	WarmupSteps int     // linear warmup [Steps/20]
	MinLRFrac   float64 // cosine decays to LR*MinLRFrac [0.1]
	Batch       int     // sequences per step [8]
	SeqLen      int     // tokens per window, BOS first [128, at most the model's seq_len]
	GradClip    float64 // global gradient-norm clip [1]; < 0 disables
	CEWeight    float64 // weight of cross-entropy on the text beside the KL [0]
	HeldOutFrac float64 // last fraction of windows held out [0.1]
	EvalEvery   int     // held-out evaluation period in steps [max(1, Steps/10)]
	// BOS is put first in every window [the student's tokenizer BOS, else 1].
	BOS int

	Seed    uint64
	Threads int // worker goroutines [GOMAXPROCS]
	// TeacherCacheBytes bounds the memory for caching the teacher's
	// full-vocabulary log-probabilities of every training window
	// [512 MiB]; above it they are recomputed per batch. (A top-k cache
	// for big vocabularies is a TODO.)
	TeacherCacheBytes int64

	Name string // AdapterSet name ["lora-r<rank>"]
	// Progress is called after every step with the step number (1-based),
	// the step's training loss and the most recent held-out KL.
	Progress func(step int, loss, heldoutKL float64)
}

// Point is one row of the training history.
type Point struct {
	Step      int     `json:"step"`
	Loss      float64 `json:"loss"`
	HeldOutKL float64 `json:"heldout_kl"` // NaN when not evaluated at this step
}

// Report summarises a training run.
type Report struct {
	Rank           int     `json:"rank"`
	Scale          float64 `json:"scale"`
	Targets        int     `json:"targets"`
	Params         int     `json:"params"`
	AdapterBytes   int64   `json:"adapter_bytes_f16"`
	SeqLen         int     `json:"seq_len"`
	Batch          int     `json:"batch"`
	Steps          int     `json:"steps"`
	Threads        int     `json:"threads"`
	TrainWindows   int     `json:"train_windows"`
	HeldOutWindows int     `json:"heldout_windows"`
	// BaseHeldOutKL is the held-out KL of the compressed model without
	// adapters, InitHeldOutKL with the initial adapters, BestHeldOutKL of
	// the adapters returned (chosen at BestStep; 0 = the initial ones).
	BaseHeldOutKL float64 `json:"base_heldout_kl"`
	InitHeldOutKL float64 `json:"init_heldout_kl"`
	BestHeldOutKL float64 `json:"best_heldout_kl"`
	BestStep      int     `json:"best_step"`
	FinalLoss     float64 `json:"final_loss"`
	// TrainTokens counts the token positions trained on (steps x batch x
	// seq_len). StepTime is the time in optimizer steps (student forward
	// and backward, teacher passes when not cached, update), held-out
	// evaluations and set-up excluded; SecondsPerToken = StepTime /
	// TrainTokens. Duration is the whole call.
	TrainTokens     int64         `json:"train_tokens"`
	StepTime        time.Duration `json:"step_time_ns"`
	Duration        time.Duration `json:"duration_ns"`
	SecondsPerToken float64       `json:"seconds_per_token"`
	History         []Point       `json:"history"`
}

func (o *Options) defaults(c ir.Config, tok int) {
	if o.Rank == 0 {
		o.Rank = 8
	}
	if o.Alpha == 0 {
		o.Alpha = float64(o.Rank)
	}
	if o.Steps == 0 {
		o.Steps = 200
	}
	if o.LR == 0 {
		o.LR = 2e-3
	}
	if o.WarmupSteps == 0 {
		o.WarmupSteps = o.Steps / 20
	}
	if o.MinLRFrac == 0 {
		o.MinLRFrac = 0.1
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if o.SeqLen == 0 {
		o.SeqLen = min(128, c.SeqLen)
	}
	if o.GradClip == 0 {
		o.GradClip = 1
	}
	if o.HeldOutFrac == 0 {
		o.HeldOutFrac = 0.1
	}
	if o.EvalEvery == 0 {
		o.EvalEvery = max(1, o.Steps/10)
	}
	if o.BOS == 0 {
		o.BOS = tok
	}
	if o.Threads == 0 {
		o.Threads = runtime.GOMAXPROCS(0)
	}
	if o.TeacherCacheBytes == 0 {
		o.TeacherCacheBytes = 512 << 20
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("lora-r%d", o.Rank)
	}
}

func (o *Options) check(c ir.Config) error {
	switch {
	case o.Rank < 1:
		return fmt.Errorf("lora: rank %d, expected >= 1", o.Rank)
	case o.Steps < 0:
		return fmt.Errorf("lora: steps %d, expected >= 0", o.Steps)
	case !(o.LR > 0):
		return fmt.Errorf("lora: learning rate %v, expected > 0", o.LR)
	case o.Batch < 1:
		return fmt.Errorf("lora: batch %d, expected >= 1", o.Batch)
	case o.SeqLen < 2 || o.SeqLen > c.SeqLen:
		return fmt.Errorf("lora: seq_len %d, expected 2..%d (the model's seq_len)", o.SeqLen, c.SeqLen)
	case !(o.HeldOutFrac > 0 && o.HeldOutFrac < 1):
		return fmt.Errorf("lora: held-out fraction %v, expected in (0, 1)", o.HeldOutFrac)
	case o.BOS < 0 || o.BOS >= c.Vocab:
		return fmt.Errorf("lora: BOS id %d outside vocabulary of %d", o.BOS, c.Vocab)
	case o.Threads < 1:
		return fmt.Errorf("lora: threads %d, expected >= 1", o.Threads)
	case o.CEWeight < 0:
		return fmt.Errorf("lora: cross-entropy weight %v, expected >= 0", o.CEWeight)
	case o.Init != InitResidual && o.Init != InitZero:
		return fmt.Errorf("lora: unknown init mode %d", o.Init)
	}
	return nil
}

// trainer holds the state of one Train call.
type trainer struct {
	opt     Options
	teacher *net
	student *net
	targets []target
	theta   []float32 // all adapter parameters, A then B per target
	offs    []int     // offset of each target's A in theta (B follows)
	T, V    int
	windows [][]int // input tokens (BOS first) per window
	labels  [][]int // next-token targets per window
	nTrain  int
	tcache  [][]float32 // teacher log-probs per window (nil: recompute)
	work    []*acts
	tbuf    [][]float32 // per-worker teacher log-probs when not cached
}

// Train fits LoRA adapters on the student (the compressed model, frozen)
// so that its next-token distributions match the teacher's (the original)
// on windows cut from the calibration token stream. It returns the
// adapters with the lowest held-out KL seen (evaluated every EvalEvery
// steps, the initial adapters included). Results are bit-identical for the
// same inputs and seed, whatever the thread count.
func Train(teacher, student *ir.Model, tokens []int, opt Options) (*ir.AdapterSet, Report, error) {
	start := time.Now()
	var rep Report
	c, bos, err := checkPair("lora", teacher, student)
	if err != nil {
		return nil, rep, err
	}
	opt.defaults(c, bos)
	if err := opt.check(c); err != nil {
		return nil, rep, err
	}
	tr := &trainer{opt: opt, T: opt.SeqLen, V: c.Vocab}
	if tr.targets, err = resolveTargets(c, opt.Targets); err != nil {
		return nil, rep, err
	}
	maxRank, err := setRanks(c, tr.targets, opt.Rank, opt.Ranks, "lora")
	if err != nil {
		return nil, rep, err
	}
	nHeld, err := tr.cutWindows(tokens, opt.HeldOutFrac, opt.BOS)
	if err != nil {
		return nil, rep, err
	}
	if tr.teacher, err = newNet(teacher, false); err != nil {
		return nil, rep, err
	}
	if tr.student, err = newNet(student, true); err != nil {
		return nil, rep, err
	}
	scale := float32(opt.Alpha / float64(opt.Rank))
	if err := tr.initAdapters(teacher, student, scale); err != nil {
		return nil, rep, err
	}
	tr.bind(true)
	for w := 0; w < opt.Threads; w++ {
		tr.work = append(tr.work, newActs(tr.student, tr.T, maxRank, true))
	}

	tr.cacheTeacher(opt.TeacherCacheBytes)

	rep = Report{Rank: opt.Rank, Scale: float64(scale), Targets: len(tr.targets), Params: len(tr.theta),
		AdapterBytes: 2 * int64(len(tr.theta)), SeqLen: tr.T, Batch: opt.Batch, Steps: opt.Steps,
		Threads: opt.Threads, TrainWindows: tr.nTrain, HeldOutWindows: nHeld}
	tr.bind(false)
	rep.BaseHeldOutKL = tr.heldOutKL()
	tr.bind(true)
	rep.InitHeldOutKL = tr.heldOutKL()
	best := append([]float32(nil), tr.theta...)
	rep.BestHeldOutKL, rep.BestStep = rep.InitHeldOutKL, 0
	rep.History = append(rep.History, Point{0, math.NaN(), rep.InitHeldOutKL})

	// Optimiser state.
	P := len(tr.theta)
	m := make([]float32, P)
	v := make([]float32, P)
	bg := newBatchGrads(opt.Seed, 0x10a4, tr.nTrain, opt.Batch, P)
	gsum := bg.gsum
	lastKL := rep.InitHeldOutKL
	for step := 1; step <= opt.Steps; step++ {
		t0 := time.Now()
		loss := bg.step(tr, opt.CEWeight, tr.seqGrad)
		adapterStep(tr.theta, m, v, gsum, step, lrAt(step, opt), opt.GradClip)
		rep.StepTime += time.Since(t0)
		pt := Point{Step: step, Loss: loss, HeldOutKL: math.NaN()}
		if step%opt.EvalEvery == 0 || step == opt.Steps {
			lastKL = tr.heldOutKL()
			pt.HeldOutKL = lastKL
			if lastKL < rep.BestHeldOutKL {
				rep.BestHeldOutKL, rep.BestStep = lastKL, step
				copy(best, tr.theta)
			}
		}
		rep.History = append(rep.History, pt)
		rep.FinalLoss = loss
		if opt.Progress != nil {
			opt.Progress(step, loss, lastKL)
		}
	}
	set := tr.adapterSet(best, opt.Name, scale)
	rep.TrainTokens = int64(opt.Steps) * int64(opt.Batch) * int64(tr.T)
	rep.Duration = time.Since(start)
	if rep.TrainTokens > 0 {
		rep.SecondsPerToken = rep.StepTime.Seconds() / float64(rep.TrainTokens)
	}
	return set, rep, nil
}

// adapterSet builds the adapter set of the targets from adapter
// parameters laid out as tr.theta (A then B per target).
func (tr *trainer) adapterSet(theta []float32, name string, scale float32) *ir.AdapterSet {
	c := tr.student.cfg
	set := &ir.AdapterSet{Name: name, Adapters: map[string]*ir.Adapter{}}
	for i, t := range tr.targets {
		out, in := linShape(c, t.kind)
		a, b := tr.adapterAB(theta, i)
		set.Adapters[t.name()] = &ir.Adapter{Target: t.name(), Rank: t.rank, In: in, Out: out, Scale: scale,
			A: append([]float32(nil), a...), B: append([]float32(nil), b...)}
	}
	return set
}

// cutWindows checks the calibration tokens against the vocabulary and cuts
// them into windows of tr.T (BOS first, the rest shifted by one; labels are
// the window's own tokens), holding out the last heldOutFrac of them. It
// returns the number held out.
func (tr *trainer) cutWindows(tokens []int, heldOutFrac float64, bos int) (int, error) {
	for i, t := range tokens {
		if t < 0 || t >= tr.V {
			return 0, fmt.Errorf("lora: calibration token %d at position %d outside vocabulary of %d", t, i, tr.V)
		}
	}
	nWin := len(tokens) / tr.T
	nHeld := int(math.Round(heldOutFrac * float64(nWin)))
	nHeld = max(1, nHeld)
	if nWin-nHeld < 1 {
		return 0, fmt.Errorf("lora: %d calibration tokens make %d windows of %d; need at least 2 (one to train, one held out)", len(tokens), nWin, tr.T)
	}
	tr.nTrain = nWin - nHeld
	for w := 0; w < nWin; w++ {
		s := tokens[w*tr.T : (w+1)*tr.T]
		in := append([]int{bos}, s[:tr.T-1]...)
		tr.windows = append(tr.windows, in)
		tr.labels = append(tr.labels, append([]int(nil), s...))
	}
	return nHeld, nil
}

// cacheTeacher computes the teacher's log-probabilities: always cached for
// held-out windows; for training windows when they all fit in budget bytes
// (otherwise per-worker buffers are allocated for teacherFor). tr.teacher
// and tr.work must be set.
func (tr *trainer) cacheTeacher(budget int64) {
	nWin := len(tr.windows)
	tr.tcache = make([][]float32, nWin)
	cacheTrain := int64(nWin)*int64(tr.T)*int64(tr.V)*4 <= budget
	var fill []int
	for w := 0; w < nWin; w++ {
		if w >= tr.nTrain || cacheTrain {
			fill = append(fill, w)
		}
	}
	tr.parallel(len(fill), func(worker, i int) {
		w := fill[i]
		tr.tcache[w] = make([]float32, tr.T*tr.V)
		tr.teacherLogp(tr.work[worker], tr.windows[w], tr.tcache[w])
	})
	if !cacheTrain {
		for range tr.work {
			tr.tbuf = append(tr.tbuf, make([]float32, tr.T*tr.V))
		}
	}
}

// lrAt is the learning rate of a 1-based step: linear warmup over
// WarmupSteps, then cosine decay from LR to LR*MinLRFrac at the last step.
func lrAt(step int, o Options) float64 {
	if step <= o.WarmupSteps {
		return o.LR * float64(step) / float64(o.WarmupSteps)
	}
	span := o.Steps - o.WarmupSteps
	if span <= 0 {
		return o.LR
	}
	p := float64(step-o.WarmupSteps) / float64(span)
	lo := o.LR * o.MinLRFrac
	return lo + (o.LR-lo)*0.5*(1+math.Cos(math.Pi*p))
}

// initAdapters lays out theta and fills it per opt.Init.
func (tr *trainer) initAdapters(teacher, student *ir.Model, scale float32) error {
	c := tr.student.cfg
	n := 0
	for _, t := range tr.targets {
		out, in := linShape(c, t.kind)
		tr.offs = append(tr.offs, n)
		n += t.rank * (in + out)
	}
	tr.theta = make([]float32, n)
	rng := rand.New(rand.NewPCG(tr.opt.Seed, 0x1a17))
	for i, t := range tr.targets {
		out, in := linShape(c, t.kind)
		A, B := tr.adapterAB(tr.theta, i)
		switch tr.opt.Init {
		case InitZero:
			sd := 1 / math.Sqrt(float64(in))
			for j := range A {
				A[j] = float32(rng.NormFloat64() * sd)
			}
		case InitResidual:
			// The teacher's weights are W; the student's (decoded once) W_q.
			W := tr.teacher.layers[t.layer].lins[t.kind].W
			Wq := tr.student.layers[t.layer].lins[t.kind].W
			a, b, err := InitFromResidual(W, Wq, out, in, t.rank, tr.opt.Importance[t.name()], scale)
			if err != nil {
				return fmt.Errorf("lora: target %q: %w", t.name(), err)
			}
			copy(A, a)
			copy(B, b)
		}
	}
	return nil
}

// bind attaches (on) or detaches the adapters to the student's linears.
func (tr *trainer) bind(on bool) {
	scale := float32(tr.opt.Alpha / float64(tr.opt.Rank))
	tr.student.lowest = tr.student.cfg.Layers
	for i, t := range tr.targets {
		l := tr.student.layers[t.layer].lins[t.kind]
		if !on {
			l.A, l.B, l.rank = nil, nil, 0
			continue
		}
		l.A, l.B = tr.adapterAB(tr.theta, i)
		l.rank, l.scale = t.rank, scale
		tr.student.lowest = min(tr.student.lowest, t.layer)
	}
}

// gradViews maps a flat gradient vector onto per-linear views.
func (tr *trainer) gradViews(g []float32) []*linGrad {
	c := tr.student.cfg
	v := make([]*linGrad, c.Layers*nKinds)
	for i, t := range tr.targets {
		dA, dB := tr.adapterAB(g, i)
		v[t.layer*nKinds+t.kind] = &linGrad{dA: dA, dB: dB}
	}
	return v
}

// adapterAB returns target i's A (rank x in) and B (out x rank) in a
// vector laid out as tr.theta (initAdapters: A then B per target, at
// tr.offs[i]).
func (tr *trainer) adapterAB(theta []float32, i int) (A, B []float32) {
	t := tr.targets[i]
	out, in := linShape(tr.student.cfg, t.kind)
	o, a := tr.offs[i], t.rank*in
	return theta[o : o+a], theta[o+a : o+a+out*t.rank]
}

// teacherLogp runs the teacher on one window and writes its
// log-probabilities (T x V) to dst.
func (tr *trainer) teacherLogp(a *acts, tokens []int, dst []float32) {
	tr.teacher.forward(a, tokens)
	for t := 0; t < tr.T; t++ {
		logSoftmax(a.log[t*tr.V : (t+1)*tr.V])
	}
	copy(dst, a.log[:tr.T*tr.V])
}

// teacherFor returns window w's teacher log-probabilities, computing them
// into the worker's buffer when they are not cached.
func (tr *trainer) teacherFor(worker, w int) []float32 {
	if p := tr.tcache[w]; p != nil {
		return p
	}
	tr.teacherLogp(tr.work[worker], tr.windows[w], tr.tbuf[worker])
	return tr.tbuf[worker]
}

// seqGrad computes window w's loss (summed over positions, unscaled) and
// writes its adapter gradient (of the scaled loss) to g.
func (tr *trainer) seqGrad(worker, w int, g []float32, klScale, ceScale float32) float64 {
	a := tr.work[worker]
	tl := tr.teacherFor(worker, w)
	var labels []int
	if ceScale != 0 {
		labels = tr.labels[w]
	}
	tr.student.forward(a, tr.windows[w])
	kl, ce := distillForward(a.log, tl, labels, tr.T, tr.V)
	distillBackward(a.log, tl, labels, tr.T, tr.V, klScale, ceScale)
	zero(g)
	tr.student.backward(a, tr.windows[w], tr.gradViews(g))
	return kl + tr.opt.CEWeight*ce
}

// heldOutKL is the mean KL(teacher || student) per position over the
// held-out windows.
func (tr *trainer) heldOutKL() float64 {
	nh := len(tr.windows) - tr.nTrain
	kls := make([]float64, nh)
	tr.parallel(nh, func(worker, i int) {
		w := tr.nTrain + i
		a := tr.work[worker]
		tr.student.forward(a, tr.windows[w])
		kls[i], _ = distillForward(a.log, tr.tcache[w], nil, tr.T, tr.V)
	})
	var s float64
	for _, k := range kls {
		s += k
	}
	return s / float64(nh*tr.T)
}

// parallel runs f(worker, i) for i < n on the trainer's workers.
func (tr *trainer) parallel(n int, f func(worker, i int)) {
	parallelFor(n, len(tr.work), f)
}

func parallelFor(n, workers int, f func(worker, i int)) {
	if workers <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(w, i)
			}
		}(w)
	}
	wg.Wait()
}

// windowSampler draws training windows in epochs, reshuffling at the end
// of each (deterministic for a seed).
type windowSampler struct {
	rng   *rand.Rand
	n     int
	order []int
	pos   int
}

func newWindowSampler(seed, stream uint64, n int) *windowSampler {
	rng := rand.New(rand.NewPCG(seed, stream))
	return &windowSampler{rng: rng, n: n, order: rng.Perm(n)}
}

// fill puts the next len(batch) window indices in batch.
func (s *windowSampler) fill(batch []int) {
	for b := range batch {
		if s.pos == len(s.order) {
			s.order = s.rng.Perm(s.n)
			s.pos = 0
		}
		batch[b] = s.order[s.pos]
		s.pos++
	}
}

// checkPair checks that teacher and student are given and have the same
// shapes, and returns the student's config and BOS id (1 without a
// tokenizer). what prefixes the errors.
func checkPair(what string, teacher, student *ir.Model) (ir.Config, int, error) {
	if teacher == nil || student == nil {
		return ir.Config{}, 0, fmt.Errorf("%s: teacher and student models are required", what)
	}
	c := student.Config
	if tc := teacher.Config; tc.Dim != c.Dim || tc.Layers != c.Layers || tc.Heads != c.Heads || tc.KVHeads != c.KVHeads ||
		tc.HeadDim != c.HeadDim || tc.FFN != c.FFN || tc.Vocab != c.Vocab {
		return c, 0, fmt.Errorf("%s: teacher %s (%+v) and student %s (%+v) have different shapes", what, teacher.Source, tc, student.Source, c)
	}
	bos := 1
	if student.Tokenizer != nil && student.Tokenizer.BOS >= 0 {
		bos = student.Tokenizer.BOS
	}
	return c, bos, nil
}

// batchGrads is the per-step gradient machinery every trainer here shares:
// a window sampler, one gradient vector per sequence of the batch, and
// their in-order sum.
type batchGrads struct {
	sampler *windowSampler
	batch   []int
	lossB   []float64
	grads   [][]float32
	gsum    []float32
}

func newBatchGrads(seed, stream uint64, nTrain, batch, n int) *batchGrads {
	bg := &batchGrads{sampler: newWindowSampler(seed, stream, nTrain), batch: make([]int, batch),
		lossB: make([]float64, batch), grads: make([][]float32, batch), gsum: make([]float32, n)}
	for b := range bg.grads {
		bg.grads[b] = make([]float32, n)
	}
	return bg
}

// step draws the next batch, computes each sequence's gradient with seqGrad
// (KL weighted 1/(batch*T), cross-entropy ceWeight/(batch*T)) on the
// trainer's workers, sums them into bg.gsum in batch order and returns the
// loss per token.
func (bg *batchGrads) step(tr *trainer, ceWeight float64, seqGrad func(worker, win int, g []float32, klScale, ceScale float32) float64) float64 {
	bg.sampler.fill(bg.batch)
	nb := len(bg.batch)
	klScale := float32(1 / float64(nb*tr.T))
	ceScale := float32(ceWeight / float64(nb*tr.T))
	tr.parallel(nb, func(worker, b int) {
		bg.lossB[b] = seqGrad(worker, bg.batch[b], bg.grads[b], klScale, ceScale)
	})
	return sumBatch(bg.gsum, bg.grads, bg.lossB, nb*tr.T)
}

// sumBatch adds the per-sequence gradients into gsum in batch order (so the
// result does not depend on the thread count) and returns the batch loss
// per token.
func sumBatch(gsum []float32, grads [][]float32, lossB []float64, tokens int) float64 {
	copy(gsum, grads[0])
	for b := 1; b < len(grads); b++ {
		axpy(gsum, 1, grads[b])
	}
	var loss float64
	for _, l := range lossB {
		loss += l
	}
	return loss / float64(tokens)
}
