package lorarecovery

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
)

// Palettization-aware training ("palette QAT"): TuneLUTs with
// TuneOptions.QAT also re-assigns the indices, still at zero extra bytes
// (same bits, group sizes and row-scale presence; only indices, LUT
// entries, row scales and optionally norm weights change).
//
// Every tuned tensor gets a latent float32 weight V (rows x cols). The
// forward pass uses the palettized weight Wq[r][c] = LUT[g(r)][idx[r][c]] *
// s[r]; the straight-through estimator hands dL/dWq to V unchanged, and V
// takes an Adam step of QATOptions.LR x (the tensor's weight RMS). After
// every step each index is re-assigned to the LUT entry of its row's group
// nearest to V[r][c] / s[r], and Wq is decoded again. The LUT entries and
// row scales keep being trained by their own gradients (as in TuneLUTs) or,
// with QATCentroids, are recomputed as the least-squares centroids of the
// latent weights of each cluster.
//
// dL/dW of every tuned tensor is kept per sequence of a batch (so the batch
// sum does not depend on the thread count) beside the latent weights and
// their Adam state: memory is about (Batch + 4) float32 copies of the tuned
// weights. QAT is meant for models whose float32 weights and Adam state fit
// in memory (stories260K: a few MiB); for big models tune the palettes with
// frozen indices.

// QATInit chooses where the latent weights start.
type QATInit int

const (
	// QATInitDefault is QATInitPalettized.
	QATInitDefault QATInit = iota
	// QATInitPalettized starts from the student's decoded weights: the
	// starting model is exactly the compiled one, and indices move only
	// once the latent weights cross a decision boundary.
	QATInitPalettized
	// QATInitOriginal starts from the teacher's (original) weights: the
	// indices start as the nearest-entry rounding of the original, which
	// drops the compiler's error feedback.
	QATInitOriginal
	// QATInitBlend starts from Wq + Blend x (W - Wq).
	QATInitBlend
)

// String names the mode as in reports.
func (m QATInit) String() string {
	switch m {
	case QATInitDefault, QATInitPalettized:
		return "palettized"
	case QATInitOriginal:
		return "original"
	case QATInitBlend:
		return "blend"
	}
	return fmt.Sprintf("QATInit(%d)", int(m))
}

// QATLUTMode chooses how the LUT entries follow the re-assigned indices.
type QATLUTMode int

const (
	// QATGradient trains the LUT entries and row scales by their
	// distillation gradients (as TuneLUTs).
	QATGradient QATLUTMode = iota
	// QATCentroids sets every LUT entry, after each re-assignment, to the
	// least-squares centroid of its cluster's latent weights (sum V s /
	// sum s^2 over the elements pointing at it); row scales are trained
	// by their gradients. An entry nothing points at keeps its value.
	QATCentroids
)

// String names the mode as in reports.
func (m QATLUTMode) String() string {
	switch m {
	case QATGradient:
		return "gradient"
	case QATCentroids:
		return "centroids"
	}
	return fmt.Sprintf("QATLUTMode(%d)", int(m))
}

// QATOptions configure palettization-aware training (TuneOptions.QAT).
// Zero values take the defaults in brackets.
type QATOptions struct {
	// LR is the peak Adam step of the latent weights relative to each
	// tensor's weight RMS (same warmup and cosine schedule as
	// TuneOptions.LR) [2.5e-3: on stories260K at 3.7 bpw, 1200 steps, dev
	// KLD 0.068; 1e-2, the default until session 5, gave 0.0885 in 600].
	LR    float64
	Init  QATInit    // where the latent weights start [QATInitPalettized]
	Blend float64    // for QATInitBlend: the fraction of W - Wq added, in [0, 1]
	LUTs  QATLUTMode // [QATGradient]
	// TensorAdam normalises the latent steps of a tensor by its mean
	// gradient second moment, so weights with larger gradients move (and
	// flip) first. The default is plain Adam: each latent weight's step is
	// normalised by its own second moment, so all move at about the same
	// speed (lower held-out KL on stories260K at 3.7 bpw).
	TensorAdam bool
	// WidthSteps scales the latent step of each n-bit tensor (or lutmix
	// part) by 2^(3-n): about proportional to the gap between the entries
	// of an n-bit LUT, so that an index needs about as many steps to flip
	// at any width (LR is then the step of 3-bit parts). Plain Adam only.
	WidthSteps bool
	// Hysteresis keeps an index until its latent weight is nearer to
	// another entry by more than Hysteresis x the gap between the two
	// entries (0: always the nearest entry), damping flips back and
	// forth at decision boundaries. In [0, 1).
	Hysteresis float64
	// FreezeFrac freezes the indices (and stops the latent weights) for
	// the last FreezeFrac of the steps, so the LUT entries, row scales and
	// norms settle on a fixed assignment instead of chasing indices that
	// still flip at decision boundaries. In [0, 1); 0 = re-assign every
	// step to the end.
	FreezeFrac float64
	// EMA, in [0, 1), also keeps a moving average (decay emaDecay(EMA,
	// step)) of the LUT entries, row scales, norm weights, latent weights
	// (and a joint run's adapters). At every held-out evaluation the
	// averaged model (indices re-assigned from the averaged latent
	// weights) is evaluated too, and the best of either may be returned.
	// On stories260K at 3.7 bpw, 0.99 lowered dev KLD 4% (0.0885 ->
	// 0.0849) at session 4's step size, 1.5% at 0.005. 0: off.
	EMA float64
}

// EMAPoint is one held-out evaluation of the averaged model.
type EMAPoint struct {
	Step      int     `json:"step"`
	HeldOutKL float64 `json:"heldout_kl"`
}

// QATReport summarises the index re-assignment of a QAT run.
type QATReport struct {
	LR         float64 `json:"lr"`
	Init       string  `json:"init"`
	Blend      float64 `json:"blend,omitempty"`
	LUTs       string  `json:"luts"`
	Adam       string  `json:"adam"` // element (plain Adam) or tensor (TensorAdam)
	WidthSteps bool    `json:"width_steps,omitempty"`
	Hysteresis float64 `json:"hysteresis,omitempty"`
	FreezeFrac float64 `json:"freeze_frac,omitempty"`
	EMA        float64 `json:"ema,omitempty"`
	// BestFromEMA says the returned model is the moving average's.
	BestFromEMA bool `json:"best_from_ema,omitempty"`
	// EMAHeldOut is the averaged model's held-out KL at every evaluation.
	EMAHeldOut []EMAPoint `json:"ema_heldout,omitempty"`
	Weights    int        `json:"weights"` // palettized weights whose indices are trained
	// InitHeldOutKL is the held-out KL right after the indices were
	// assigned from the initial latent weights (the base KL for
	// QATInitPalettized, unless rounding ties moved some).
	InitHeldOutKL float64 `json:"init_heldout_kl"`
	// AdaptersInitHeldOutKL (joint runs) is the held-out KL of the
	// student as given with the residual-initialised adapters attached,
	// before the indices were re-assigned; the report's BaseHeldOutKL
	// is the student without them.
	AdaptersInitHeldOutKL float64 `json:"adapters_init_heldout_kl,omitempty"`
	// IndicesChanged counts the indices of the returned model that differ
	// from the student's.
	IndicesChanged int `json:"indices_changed"`
	// Flips counts index changes over the whole run (one index may flip
	// back and forth).
	Flips int64 `json:"flips"`
}

func (q *QATOptions) defaults() {
	if q.LR == 0 {
		q.LR = 2.5e-3
	}
	if q.Init == QATInitDefault {
		q.Init = QATInitPalettized
	}
}

func (q *QATOptions) check() error {
	switch {
	case !(q.LR > 0):
		return fmt.Errorf("qat: latent learning rate %v, expected > 0", q.LR)
	case q.Init < QATInitDefault || q.Init > QATInitBlend:
		return fmt.Errorf("qat: unknown init mode %d", q.Init)
	case q.Init == QATInitBlend && !(q.Blend >= 0 && q.Blend <= 1):
		return fmt.Errorf("qat: blend %v, expected in [0, 1]", q.Blend)
	case !(q.Hysteresis >= 0 && q.Hysteresis < 1):
		return fmt.Errorf("qat: hysteresis %v, expected in [0, 1)", q.Hysteresis)
	case q.WidthSteps && q.TensorAdam:
		return fmt.Errorf("qat: width-scaled steps need plain (element) Adam")
	case !(q.EMA >= 0 && q.EMA < 1):
		return fmt.Errorf("qat: EMA decay %v, expected in [0, 1)", q.EMA)
	case !(q.FreezeFrac >= 0 && q.FreezeFrac < 1):
		return fmt.Errorf("qat: freeze fraction %v, expected in [0, 1)", q.FreezeFrac)
	case q.LUTs != QATGradient && q.LUTs != QATCentroids:
		return fmt.Errorf("qat: unknown LUT mode %d", q.LUTs)
	}
	return nil
}

// reassign points every index of p at the LUT entry of its row's group
// nearest to lat/s (lat: the latent weights, rows x cols; LUT and scales
// from theta) and returns the number of indices that changed. With hyst >
// 0 an index moves only when the new entry is nearer than the current one
// by more than hyst x the gap between them. Rows whose scale is 0 keep
// their indices (every entry decodes to 0 there).
func (p *palParam) reassign(theta, lat []float32, hyst float32) int {
	changed := 0
	for si := range p.segs {
		sg := &p.segs[si]
		order := make([]int, sg.K)
		vals := make([]float32, sg.K)
		for g0 := sg.r0; g0 < sg.r1; g0 += sg.G {
			lut := sg.lutOf(theta, g0)
			for k := range order {
				order[k] = k
			}
			// Sorted by value (stable: equal entries keep index order, so the
			// lowest index wins a tie).
			slices.SortStableFunc(order, func(a, b int) int {
				switch {
				case lut[a] < lut[b]:
					return -1
				case lut[a] > lut[b]:
					return 1
				}
				return 0
			})
			for i, k := range order {
				vals[i] = lut[k]
			}
			for r := g0; r < min(g0+sg.G, sg.r1); r++ {
				s := sg.scale(theta, r)
				if s == 0 {
					continue
				}
				inv := 1 / s
				idx := p.idx[r*p.cols : (r+1)*p.cols]
				for c, v := range lat[r*p.cols : (r+1)*p.cols] {
					x := v * inv
					i, _ := slices.BinarySearch(vals, x) // first vals[i] >= x
					switch {
					case i == sg.K:
						i = sg.K - 1
					case i > 0 && x-vals[i-1] <= vals[i]-x:
						i--
					}
					k := uint8(order[i])
					if k == idx[c] {
						continue
					}
					if hyst > 0 {
						cur, nw := lut[idx[c]], vals[i]
						if abs32(x-cur)-abs32(x-nw) <= hyst*abs32(cur-nw) {
							continue
						}
					}
					idx[c] = k
					changed++
				}
			}
		}
	}
	return changed
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

// centroids sets every LUT entry of p in theta to the least-squares fit of
// the latent weights pointing at it: sum lat*s / sum s^2.
func (p *palParam) centroids(theta, lat []float32) {
	for si := range p.segs {
		sg := &p.segs[si]
		num := make([]float64, sg.K)
		den := make([]float64, sg.K)
		for g0 := sg.r0; g0 < sg.r1; g0 += sg.G {
			clear(num)
			clear(den)
			for r := g0; r < min(g0+sg.G, sg.r1); r++ {
				s := float64(sg.scale(theta, r))
				for c, k := range p.idx[r*p.cols : (r+1)*p.cols] {
					num[k] += float64(lat[r*p.cols+c]) * s
					den[k] += s * s
				}
			}
			lut := sg.lutOf(theta, g0)
			for k := range lut {
				if den[k] > 0 {
					lut[k] = float32(num[k] / den[k])
				}
			}
		}
	}
}

// enableQAT lays out the latent weights' gradients after theta in the
// gradient vector (seqGrad then needs len(theta) + N values) and returns
// N, the number of latent weights.
func (tu *lutTuner) enableQAT() int {
	N := 0
	for _, p := range tu.params {
		p.qat = len(tu.theta) + N
		N += p.rows * p.cols
	}
	return N
}

// tuneQAT is TuneLUTs with TuneOptions.QAT set; opt holds the shared
// options with their defaults applied and checked.
func tuneQAT(teacher, student *ir.Model, tokens []int, topt TuneOptions, opt Options, start time.Time) (*ir.Model, TuneReport, error) {
	var rep TuneReport
	q := *topt.QAT
	q.defaults()
	if err := q.check(); err != nil {
		return nil, rep, err
	}
	tu, err := newLUTTuner(teacher, student, tokens, opt, topt.Tensors, topt.FreezeScales, topt.Norms)
	if err != nil {
		return nil, rep, err
	}
	tr := tu.tr
	P := len(tu.theta)
	// Latent weights (one flat vector after theta in the gradient layout)
	// and their per-tensor step scale: the RMS of the original weights.
	N := tu.enableQAT()
	lat := make([]float32, N)
	latMag := make([]float32, len(tu.params))
	startIdx := make([][]uint8, len(tu.params))
	for i, p := range tu.params {
		W, err := decodeF32(teacher, p.name, p.rows, p.cols)
		if err != nil {
			return nil, rep, fmt.Errorf("qat: teacher: %w", err)
		}
		var ss float64
		for _, x := range W {
			ss += float64(x) * float64(x)
		}
		latMag[i] = max(float32(math.Sqrt(ss/float64(len(W)))), 1e-4)
		L := lat[p.qat-P : p.qat-P+len(W)]
		switch q.Init {
		case QATInitPalettized:
			copy(L, p.W)
		case QATInitOriginal:
			copy(L, W)
		case QATInitBlend:
			b := float32(q.Blend)
			for j, wq := range p.W {
				L[j] = wq + b*(W[j]-wq)
			}
		}
		startIdx[i] = slices.Clone(p.idx)
	}
	R := 0 // adapter parameters (joint runs), after the latent weights
	var ja JointAdapters
	if topt.Adapters != nil {
		ja = *topt.Adapters // (defaults filled in here, not in the caller's options)
		if R, err = tu.addAdapters(teacher, student, &ja, P, N); err != nil {
			return nil, rep, err
		}
	}
	tr.cacheTeacher(opt.TeacherCacheBytes)
	rep = TuneReport{Tensors: len(tu.params), LUTEntries: tu.nLUT, Scales: tu.nScl, NormWeights: tu.nNorm, SeqLen: tr.T, Batch: opt.Batch,
		Steps: opt.Steps, Threads: opt.Threads, TrainWindows: tr.nTrain, HeldOutWindows: len(tr.windows) - tr.nTrain}
	qr := &QATReport{LR: q.LR, Init: q.Init.String(), LUTs: q.LUTs.String(), Adam: "element", Hysteresis: q.Hysteresis, FreezeFrac: q.FreezeFrac, EMA: q.EMA, WidthSteps: q.WidthSteps, Weights: N}
	if q.TensorAdam {
		qr.Adam = "tensor"
	}
	if q.Init == QATInitBlend {
		qr.Blend = q.Blend
	}
	rep.QAT = qr
	// The starting point, with the initial adapters in joint runs.
	kl0 := tr.heldOutKL()
	rep.BaseHeldOutKL = kl0
	if R > 0 {
		// BaseHeldOutKL is the student as given, without the adapters
		// attached above (it reported the initial adapters' figure
		// before); unbinding and binding again leaves the net as it was.
		tr.bind(false)
		rep.BaseHeldOutKL = tr.heldOutKL()
		tr.bind(true)
		qr.AdaptersInitHeldOutKL = kl0
	}
	best := slices.Clone(tu.theta)   // float16 values already
	bestAd := slices.Clone(tr.theta) // adapters (joint runs)
	bestIdx := make([][]uint8, len(startIdx))
	for i, x := range startIdx {
		bestIdx[i] = slices.Clone(x)
	}
	rep.BestHeldOutKL = kl0
	rep.History = append(rep.History, Point{0, math.NaN(), kl0})

	// Indices from the initial latent weights.
	// Tensors are independent (each reads and writes its own LUT entries,
	// indices and latent weights), so they run on the workers.
	flips := make([]int, len(tu.params))
	reassign := func() {
		tr.parallel(len(tu.params), func(_, i int) {
			p := tu.params[i]
			L := lat[p.qat-P : p.qat-P+p.rows*p.cols]
			flips[i] = p.reassign(tu.theta, L, float32(q.Hysteresis))
			if q.LUTs == QATCentroids {
				p.centroids(tu.theta, L)
			}
		})
		for _, n := range flips {
			qr.Flips += int64(n)
		}
	}
	rounded := make([]float32, P)
	reassign()
	if q.LUTs == QATCentroids {
		copy(rounded, tu.theta)
		tu.roundStored(rounded)
		copy(tu.theta, rounded)
	}
	tu.decode(tu.theta)
	qr.InitHeldOutKL = tr.heldOutKL()
	if qr.InitHeldOutKL < rep.BestHeldOutKL {
		rep.BestHeldOutKL = qr.InitHeldOutKL
		copy(best, tu.theta) // (the adapters are still the initial ones)
		for i, p := range tu.params {
			copy(bestIdx[i], p.idx)
		}
	}

	m := make([]float32, P)
	v := make([]float32, P)
	mL := make([]float32, N)
	var vL []float32
	if !q.TensorAdam {
		vL = make([]float32, N)
	}
	vT := make([]float32, len(tu.params)) // per-tensor mean second moment
	var emaTheta, emaLat, emaAd, curAd []float32
	var saveIdx [][]uint8
	if q.EMA > 0 {
		emaTheta, emaLat = slices.Clone(tu.theta), slices.Clone(lat)
		emaAd, curAd = slices.Clone(tr.theta), make([]float32, R)
		saveIdx = make([][]uint8, len(tu.params))
		for i, p := range tu.params {
			saveIdx[i] = make([]uint8, len(p.idx))
		}
	}
	// evalEMA evaluates the averaged model as it would be stored (indices
	// from the averaged latent weights, palettes rounded, the averaged
	// adapters of a joint run), keeps it when it beats the best so far,
	// and leaves the current indices, net and adapters as they were.
	evalEMA := func(step int) {
		for i, p := range tu.params {
			copy(saveIdx[i], p.idx)
		}
		copy(rounded, emaTheta)
		tu.roundStored(rounded)
		tr.parallel(len(tu.params), func(_, i int) {
			p := tu.params[i]
			p.reassign(rounded, emaLat[p.qat-P:p.qat-P+p.rows*p.cols], 0)
		})
		tu.decode(rounded)
		copy(curAd, tr.theta)
		copy(tr.theta, emaAd)
		kl := tr.heldOutKL()
		copy(tr.theta, curAd)
		qr.EMAHeldOut = append(qr.EMAHeldOut, EMAPoint{step, kl})
		if kl < rep.BestHeldOutKL {
			rep.BestHeldOutKL, rep.BestStep = kl, step
			qr.BestFromEMA = true
			copy(best, rounded)
			copy(bestAd, emaAd)
			for i, p := range tu.params {
				copy(bestIdx[i], p.idx)
			}
		}
		for i, p := range tu.params {
			copy(p.idx, saveIdx[i])
		}
		tu.decode(tu.theta)
	}
	mA, vA := make([]float32, R), make([]float32, R)
	bg := newBatchGrads(opt.Seed, 0x1a7e, tr.nTrain, opt.Batch, P+N+R)
	gsum := bg.gsum
	lastKL := rep.BestHeldOutKL
	const b1, b2, adamEps = tuneB1, tuneB2, tuneAdamEps
	for step := 1; step <= opt.Steps; step++ {
		t0 := time.Now()
		loss := bg.step(tr, opt.CEWeight, tu.seqGrad)
		lr := lrAt(step, opt)
		bc1, sq2 := adamBias(step)
		stepSize := float32(lr / bc1)
		adamUpdate(tu.theta, tu.mag, m, v, gsum[:P], stepSize, sq2)
		latStep := float32(lr / opt.LR * q.LR / bc1)
		frozen := float64(step) > (1-q.FreezeFrac)*float64(opt.Steps)
		for pi, p := range tu.params {
			if frozen {
				break
			}
			o, n := p.qat-P, p.rows*p.cols
			s := latStep * latMag[pi]
			L, mm := lat[o:o+n], mL[o:o+n]
			if !q.TensorAdam {
				vv := vL[o : o+n]
				g := gsum[p.qat : p.qat+n]
				for _, sg := range p.segs {
					ss := s
					if q.WidthSteps {
						ss = s * float32(math.Ldexp(1, 3-sg.bits))
					}
					for j := sg.r0 * p.cols; j < sg.r1*p.cols; j++ {
						mm[j] = b1*mm[j] + (1-b1)*g[j]
						vv[j] = b2*vv[j] + (1-b2)*g[j]*g[j]
						L[j] -= ss * mm[j] / (float32(math.Sqrt(float64(vv[j])))/sq2 + adamEps)
					}
				}
				continue
			}
			var ss float64
			for j, g := range gsum[p.qat : p.qat+n] {
				mm[j] = b1*mm[j] + (1-b1)*g
				ss += float64(g) * float64(g)
			}
			vT[pi] = b2*vT[pi] + (1-b2)*float32(ss/float64(n))
			d := s / (float32(math.Sqrt(float64(vT[pi])))/sq2 + adamEps)
			for j := range L {
				L[j] -= d * mm[j]
			}
		}
		if R > 0 {
			adapterStep(tr.theta, mA, vA, gsum[P+N:], step, lr/opt.LR*ja.LR, 1)
		}
		if !frozen {
			reassign()
		}
		tu.decode(tu.theta)
		if q.EMA > 0 {
			d := emaDecay(q.EMA, step)
			emaMix(emaTheta, tu.theta, d)
			emaMix(emaLat, lat, d)
			emaMix(emaAd, tr.theta, d)
		}
		rep.StepTime += time.Since(t0)
		pt := Point{Step: step, Loss: loss, HeldOutKL: math.NaN()}
		if step%opt.EvalEvery == 0 || step == opt.Steps {
			lastKL = tu.heldOutStored(rounded)
			pt.HeldOutKL = lastKL
			if lastKL < rep.BestHeldOutKL {
				rep.BestHeldOutKL, rep.BestStep = lastKL, step
				qr.BestFromEMA = false
				copy(best, rounded)
				copy(bestAd, tr.theta)
				for i, p := range tu.params {
					copy(bestIdx[i], p.idx)
				}
			}
			if q.EMA > 0 {
				evalEMA(step)
			}
		}
		rep.History = append(rep.History, pt)
		rep.FinalLoss = loss
		if topt.Progress != nil {
			topt.Progress(step, loss, lastKL)
		}
	}
	out := tu.model(student, best)
	if R > 0 {
		name := ja.Name
		if name == "" {
			name = fmt.Sprintf("lora-r%d", ja.Rank)
		}
		rep.AdapterSet, rep.AdapterRank = tr.adapterSet(bestAd, name, 1), ja.Rank
	}
	for i, p := range tu.params {
		for j, k := range bestIdx[i] {
			if k != startIdx[i][j] {
				qr.IndicesChanged++
			}
		}
		t := out.Tensors[p.name]
		parts := []*ir.Tensor{t}
		if t.Type == ir.LUTMIX {
			parts = t.Parts
		}
		for k, sg := range p.segs {
			parts[k].Data = ir.PackIndices(sg.bits, bestIdx[i][sg.r0*p.cols:sg.r1*p.cols])
		}
		if err := t.Check(); err != nil { // cannot happen: same shape and width
			return nil, rep, fmt.Errorf("qat: %s: %w", student.Source, err)
		}
	}
	rep.TrainTokens = int64(opt.Steps) * int64(opt.Batch) * int64(tr.T)
	rep.Duration = time.Since(start)
	if rep.TrainTokens > 0 {
		rep.SecondsPerToken = rep.StepTime.Seconds() / float64(rep.TrainTokens)
	}
	return out, rep, nil
}

// emaDecay is the moving average's decay at step (1-based): decay, but
// min(decay, (1+step)/(10+step)) early on, so the average forgets its
// start. On runs of up to ~900 steps at decay 0.99 the second term is the
// smaller throughout, and the average weights about the last tenth of the
// steps seen ("polynomial-decay averaging").
func emaDecay(decay float64, step int) float32 {
	return float32(min(decay, float64(1+step)/float64(10+step)))
}

// emaMix moves the average avg towards cur: avg = d avg + (1-d) cur.
func emaMix(avg, cur []float32, d float32) {
	for j, x := range cur {
		avg[j] = d*avg[j] + (1-d)*x
	}
}
