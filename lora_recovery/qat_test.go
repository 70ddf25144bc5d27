package lorarecovery

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/ir"
)

// TestQATReassign holds palParam.reassign to a brute-force nearest-entry
// search in weight space (|lat - LUT[k] s|) on unsorted LUTs with a
// repeated entry, positive, negative and zero row scales.
func TestQATReassign(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const K, G, rows, cols = 8, 3, 7, 11
	p := &palParam{rows: rows, cols: cols, idx: make([]uint8, rows*cols),
		segs: []palSeg{{r0: 0, r1: rows, K: K, G: G, lut: 0, nLUT: 3 * K, scl: 3 * K}}}
	theta := make([]float32, 3*K+rows)
	for i := range theta[:3*K] {
		theta[i] = float32(rng.NormFloat64())
	}
	theta[5] = theta[2] // a repeated entry
	for r := 0; r < rows; r++ {
		theta[3*K+r] = float32(0.5 + rng.Float64())
	}
	theta[3*K+1] = -0.7 // negative scale
	theta[3*K+4] = 0    // zero scale: indices kept
	for i := range p.idx {
		p.idx[i] = uint8(rng.IntN(K))
	}
	before := slices.Clone(p.idx)
	lat := make([]float32, rows*cols)
	for i := range lat {
		lat[i] = float32(1.5 * rng.NormFloat64())
	}
	lat[0] = theta[2] * theta[3*K] // exactly on the repeated entry
	changed := p.reassign(theta, lat, 0)
	diff := 0
	for r := 0; r < rows; r++ {
		lut := theta[(r/G)*K : (r/G+1)*K]
		s := theta[3*K+r]
		for c := 0; c < cols; c++ {
			e := r*cols + c
			if p.idx[e] != before[e] {
				diff++
			}
			if s == 0 {
				if p.idx[e] != before[e] {
					t.Errorf("row %d (scale 0): index %d changed", r, c)
				}
				continue
			}
			bestD := math.Inf(1)
			for _, v := range lut {
				bestD = math.Min(bestD, math.Abs(float64(lat[e]-v*s)))
			}
			if d := math.Abs(float64(lat[e] - lut[p.idx[e]]*s)); d > bestD+1e-6 {
				t.Errorf("row %d col %d: entry %d at distance %g, nearest is %g", r, c, p.idx[e], d, bestD)
			}
		}
	}
	if changed != diff || diff == 0 {
		t.Errorf("reassign reports %d changes, %d indices differ", changed, diff)
	}
	if p.idx[0] != 2 {
		t.Errorf("tie between equal entries 2 and 5 went to %d, want the lower index", p.idx[0])
	}
	// A second pass changes nothing.
	if n := p.reassign(theta, lat, 0); n != 0 {
		t.Errorf("second reassign changed %d indices", n)
	}
	// Hysteresis: an element just past the midpoint between two entries
	// moves with hyst 0 but not with hyst 0.2; far past, it moves.
	q := &palParam{rows: 1, cols: 3, idx: []uint8{0, 0, 0}, segs: []palSeg{{r0: 0, r1: 1, K: 2, G: 1, nLUT: 2, scl: -1}}}
	th := []float32{0, 1}
	if n := q.reassign(th, []float32{0.55, 0.55, 0.7}, 0.2); n != 1 || !slices.Equal(q.idx, []uint8{0, 0, 1}) {
		t.Errorf("hysteresis 0.2: %d changed, indices %v, want 1 and [0 0 1]", n, q.idx)
	}
	if n := q.reassign(th, []float32{0.55, 0.55, 0.7}, 0); n != 2 || !slices.Equal(q.idx, []uint8{1, 1, 1}) {
		t.Errorf("hysteresis 0: %d changed, indices %v, want 2 and [1 1 1]", n, q.idx)
	}
}

// A lutmix tensor's segments each use their own LUTs, widths and scales:
// rows 0-2 with a 4-entry LUT per 2 rows and row scales, rows 3-4 with one
// 2-entry LUT and no scales; checked against a hand-indexed nearest entry.
func TestQATReassignSegments(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const cols = 9
	// theta: seg A LUTs (2 groups x 4) at 0, its 3 scales at 8, seg B LUT (2) at 11
	theta := make([]float32, 13)
	for i := range theta {
		theta[i] = float32(rng.NormFloat64())
	}
	theta[8], theta[9], theta[10] = 0.8, 1.3, -0.6
	p := &palParam{rows: 5, cols: cols, idx: make([]uint8, 5*cols), segs: []palSeg{
		{r0: 0, r1: 3, K: 4, G: 2, lut: 0, nLUT: 8, scl: 8},
		{r0: 3, r1: 5, K: 2, G: 2, lut: 11, nLUT: 2, scl: -1},
	}}
	lat := make([]float32, 5*cols)
	for i := range lat {
		lat[i] = float32(1.5 * rng.NormFloat64())
	}
	p.reassign(theta, lat, 0)
	for r := 0; r < 5; r++ {
		var lut []float32
		s := float32(1)
		switch {
		case r < 2:
			lut, s = theta[0:4], theta[8+r]
		case r == 2:
			lut, s = theta[4:8], theta[10]
		default:
			lut = theta[11:13]
		}
		for c := 0; c < cols; c++ {
			e := r*cols + c
			if int(p.idx[e]) >= len(lut) {
				t.Fatalf("row %d col %d: index %d outside its %d-entry LUT", r, c, p.idx[e], len(lut))
			}
			bestD := math.Inf(1)
			for _, v := range lut {
				bestD = math.Min(bestD, math.Abs(float64(lat[e]-v*s)))
			}
			if d := math.Abs(float64(lat[e] - lut[p.idx[e]]*s)); d > bestD+1e-6 {
				t.Errorf("row %d col %d: entry %d at distance %g, nearest is %g", r, c, p.idx[e], d, bestD)
			}
		}
	}
	// decode uses the same LUTs and scales
	p.W = make([]float32, 5*cols)
	p.decode(theta)
	if got, want := p.W[2*cols+1], theta[4+int(p.idx[2*cols+1])]*theta[10]; got != want {
		t.Errorf("decode row 2: %v, expected %v", got, want)
	}
	if got, want := p.W[4*cols], theta[11+int(p.idx[4*cols])]; got != want {
		t.Errorf("decode row 4: %v, expected %v", got, want)
	}
}

// TestQATLatentGrad: the latent part of the gradient vector is dL/dW of
// the decoded weight (the straight-through estimator's gradient), checked
// against finite differences for a linear, the tied embedding/classifier
// and an untied classifier.
func TestQATLatentGrad(t *testing.T) {
	for _, tied := range []bool{true, false} {
		c := tinyConfig(false, tied)
		names := append(allLinears(c), ir.NameTokenEmbd)
		if !tied {
			names = append(names, ir.NameOutput)
		}
		tu, _ := gradTuner(t, c, names, nil, false, true)
		N := tu.enableQAT()
		g := make([]float32, len(tu.theta)+N)
		tu.seqGrad(0, 0, g, 1, 0.5)
		for _, name := range []string{"blk.1.ffn_down", "blk.0.attn_v", ir.NameTokenEmbd, ir.NameOutput} {
			i := slices.IndexFunc(tu.params, func(p *palParam) bool { return p.name == name })
			if i < 0 {
				continue // output when tied
			}
			p := tu.params[i]
			x := slices.Clone(p.W)
			loss := func() float64 {
				copy(p.W, x)
				if p.WT != nil {
					for r := 0; r < p.rows; r++ {
						for cc := 0; cc < p.cols; cc++ {
							p.WT[cc*p.rows+r] = x[r*p.cols+cc]
						}
					}
				}
				a := tu.tr.work[0]
				tu.tr.student.forward(a, tu.tr.windows[0])
				kl, ce := distillForward(a.log, tu.tr.tcache[0], tu.tr.labels[0], T, c.Vocab)
				return kl + 0.5*ce
			}
			checkGrad(t, "latent "+name, x, g[p.qat:p.qat+p.rows*p.cols], loss, 3e-3)
			loss()
		}
	}
}

// indexMismatch counts the indices of the palettized tensors of a that
// differ from b's.
func indexMismatch(a, b *ir.Model) (diff, total int) {
	for name, ta := range a.Tensors {
		if ta.Pal == nil {
			continue
		}
		bits := ir.Encodings[ta.Type].Bits
		ia := ir.UnpackIndices(bits, ta.Data, ta.Elems())
		ib := ir.UnpackIndices(bits, b.Tensors[name].Data, ta.Elems())
		for i := range ia {
			if ia[i] != ib[i] {
				diff++
			}
		}
		total += len(ia)
	}
	return diff, total
}

// qatFixture: a teacher that is itself palettized (2-bit, groups of 3
// rows, row scales), and a student with the same palettes whose indices
// are scrambled at a fraction frac: the optimum is known (the teacher's
// indices, KL 0).
func qatFixture(t *testing.T, frac float64) (teacher, student *ir.Model, tokens []int) {
	t.Helper()
	c := tinyConfig(false, true)
	names := append(allLinears(c), ir.NameTokenEmbd)
	teacher = palettizeG(randomModel(c, 1, 0.3), names, 2, 3, true)
	student = &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Format: "test", Source: "scrambled", Meta: map[string]string{"base_sha256": "x"}}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, name := range teacher.TensorNames() {
		tt := teacher.Tensors[name]
		student.Tensors[name] = tt
		if tt.Pal == nil {
			continue
		}
		idx := ir.UnpackIndices(2, tt.Data, tt.Elems())
		for i := range idx {
			if rng.Float64() < frac {
				idx[i] = uint8(rng.IntN(4))
			}
		}
		student.Tensors[name] = &ir.Tensor{Name: name, Shape: tt.Shape, Type: tt.Type, Data: ir.PackIndices(2, idx), Pal: tt.Pal}
	}
	tokens = make([]int, 16*48)
	for i := range tokens {
		tokens[i] = rng.IntN(c.Vocab)
	}
	return teacher, student, tokens
}

// TestQATIndicesOnly: starting from the scrambled student with its
// palettes frozen, re-assigning indices lowers the held-out KL well below
// what it was (with the latent step's sign flipped it does not); the
// layout (type, shape, grouping, LUT and scale counts, bytes) is
// unchanged; the returned model's packed indices decode to the reported
// held-out KL; and latent weights started from the teacher's give the
// teacher's indices at once (KL 0).
func TestQATIndicesOnly(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.05)
	out, rep, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 60, Batch: 4, SeqLen: 16, LR: 1e-9, FreezeScales: true, Seed: 3,
		EvalEvery: 10, Threads: 2, QAT: &QATOptions{LR: 3e-2}})
	if err != nil {
		t.Fatal(err)
	}
	q := rep.QAT
	if q == nil {
		t.Fatal("no QAT report")
	}
	before, total := indexMismatch(student, teacher)
	after, _ := indexMismatch(out, teacher)
	t.Logf("held-out KL %.4f -> %.4f (step %d, init %.4f); indices off the optimum %d -> %d of %d; %d changed, %d flips",
		rep.BaseHeldOutKL, rep.BestHeldOutKL, rep.BestStep, q.InitHeldOutKL, before, after, total, q.IndicesChanged, q.Flips)
	if q.Weights != total || q.Init != "palettized" || q.LUTs != "gradient" {
		t.Errorf("report %+v, want %d weights, palettized init, gradient LUTs", q, total)
	}
	// The palettes are frozen in effect (LR 1e-9, scales frozen, norms
	// untouched): only the re-assigned indices can lower the KL.
	if !(rep.BestHeldOutKL < 0.75*rep.BaseHeldOutKL) || rep.BestStep == 0 {
		t.Errorf("held-out KL %.4f -> %.4f (step %d): not 25%% lower", rep.BaseHeldOutKL, rep.BestHeldOutKL, rep.BestStep)
	}
	// (The indices do not move back to the teacher's: the straight-through
	// gradient finds other assignments that compensate the scrambled ones,
	// which is why the count off the optimum is logged, not asserted.)
	if d, _ := indexMismatch(out, student); d != q.IndicesChanged || d == 0 {
		t.Errorf("%d indices differ from the student's, report says %d", d, q.IndicesChanged)
	}
	for name, a := range student.Tensors {
		b := out.Tensors[name]
		if a.Pal == nil {
			continue
		}
		if err := b.Check(); err != nil {
			t.Fatal(err)
		}
		if b.Type != a.Type || !slices.Equal(b.Shape, a.Shape) || b.Pal.GroupSize != a.Pal.GroupSize ||
			len(b.Pal.LUT) != len(a.Pal.LUT) || len(b.Pal.Scales) != len(a.Pal.Scales) || len(b.Data) != len(a.Data) || b.Bytes() != a.Bytes() {
			t.Errorf("%s: layout changed", name)
		}
	}
	// The bundle round-trips the re-packed indices.
	path := filepath.Join(t.TempDir(), "qat.sqz")
	if _, err := bundle.Write(path, out, bundle.Extra{}); err != nil {
		t.Fatal(err)
	}
	back, _, err := bundle.Load(path, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for name, a := range out.Tensors {
		b := back.Tensors[name]
		if b == nil || b.Type != a.Type || !slices.Equal(a.Data, b.Data) ||
			a.Pal != nil && (!slices.Equal(a.Pal.LUT, b.Pal.LUT) || !slices.Equal(a.Pal.Scales, b.Pal.Scales)) {
			t.Fatalf("%s: differs after a bundle round trip", name)
		}
	}
	// The stored model reproduces the reported KL.
	checkStoredKL(t, teacher, out, tokens, 16, rep.BestHeldOutKL)
	// Started from the teacher's weights, the indices are right at once.
	_, rep2, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, Batch: 2, SeqLen: 16, Seed: 3, Threads: 1,
		QAT: &QATOptions{Init: QATInitOriginal}})
	if err != nil {
		t.Fatal(err)
	}
	if !(rep2.QAT.InitHeldOutKL < 1e-6) || rep2.QAT.Init != "original" {
		t.Errorf("from the original weights: init held-out KL %g (%s), want 0", rep2.QAT.InitHeldOutKL, rep2.QAT.Init)
	}
}

// TestQATReproducible: bit-identical indices, palettes and norms with one
// thread or two, for both LUT modes (and both latent step normalisations;
// the gradient mode with width-scaled steps and the moving average).
func TestQATReproducible(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.05)
	for _, mode := range []QATLUTMode{QATGradient, QATCentroids} {
		run := func(threads int) *ir.Model {
			out, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 8, Batch: 3, SeqLen: 16, Seed: 2, Norms: true,
				Threads: threads, EvalEvery: 1, QAT: &QATOptions{LR: 3e-2, LUTs: mode, Init: QATInitBlend, Blend: 0.5,
					TensorAdam: mode == QATCentroids, EMA: map[bool]float64{true: 0.5}[mode == QATGradient], WidthSteps: mode == QATGradient}})
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		a, b := run(1), run(2)
		if d, _ := indexMismatch(a, student); d == 0 {
			t.Errorf("%v: no index changed", mode)
		}
		for name, ta := range a.Tensors {
			tb := b.Tensors[name]
			if !slices.Equal(ta.Data, tb.Data) {
				t.Fatalf("%v: %s: data differ between 1 and 2 threads", mode, name)
			}
			if ta.Pal != nil && (!slices.Equal(ta.Pal.LUT, tb.Pal.LUT) || !slices.Equal(ta.Pal.Scales, tb.Pal.Scales)) {
				t.Fatalf("%v: %s: palettes differ between 1 and 2 threads", mode, name)
			}
		}
	}
}

func TestQATErrors(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.1)
	for _, tc := range []struct {
		q    QATOptions
		want string
	}{
		{QATOptions{LR: -1}, "latent learning rate"},
		{QATOptions{Init: QATInitBlend, Blend: 1.5}, "blend 1.5"},
		{QATOptions{Init: 9}, "unknown init mode"},
		{QATOptions{LUTs: 4}, "unknown LUT mode"},
		{QATOptions{Hysteresis: 1}, "hysteresis 1"},
		{QATOptions{FreezeFrac: 1}, "freeze fraction 1"},
		{QATOptions{FreezeFrac: -0.5}, "freeze fraction -0.5"},
	} {
		q := tc.q
		_, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, SeqLen: 16, QAT: &q})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.q, err, tc.want)
		}
	}
}

// TestQATFreeze: with FreezeFrac the indices move only in the first
// (1 - FreezeFrac) of the steps: frozen from the first step, no index
// changes at all while the LUT entries still train; frozen for the last
// half, indices move (and the run is the unfrozen run's first half plus
// palette-only steps).
func TestQATFreeze(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.05)
	run := func(freeze float64) (*ir.Model, *QATReport) {
		out, rep, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 40, Batch: 3, SeqLen: 16, Seed: 2, Threads: 2,
			EvalEvery: 5, QAT: &QATOptions{LR: 0.2, FreezeFrac: freeze}})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep.QAT
	}
	all, qa := run(0.99)
	if qa.Flips != 0 || qa.IndicesChanged != 0 || qa.FreezeFrac != 0.99 {
		t.Errorf("frozen from step 1: %d flips, %d indices changed (freeze %v), want none", qa.Flips, qa.IndicesChanged, qa.FreezeFrac)
	}
	lutMoved := false
	for name, a := range student.Tensors {
		if a.Pal != nil && !slices.Equal(a.Pal.LUT, all.Tensors[name].Pal.LUT) {
			lutMoved = true
		}
	}
	if !lutMoved {
		t.Error("frozen indices: no LUT entry trained either")
	}
	_, qh := run(0.5)
	_, q0 := run(0)
	t.Logf("flips: freeze 0.5 %d, no freeze %d", qh.Flips, q0.Flips)
	if qh.Flips == 0 || !(qh.Flips < q0.Flips) {
		t.Errorf("flips: freeze 0.5 %d, no freeze %d: want 0 < frozen-half < unfrozen", qh.Flips, q0.Flips)
	}
}

// TestQATAverage: the moving average only observes (the trained model's
// own trajectory is the same with it or without it); it is evaluated at
// every held-out evaluation; when it wins, the returned model is the
// averaged one and decodes to the reported held-out KL.
func TestQATAverage(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.05)
	run := func(ema float64) (*ir.Model, TuneReport) {
		out, rep, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 80, Batch: 3, SeqLen: 16, Seed: 5, Norms: true,
			Threads: 2, EvalEvery: 10, QAT: &QATOptions{LR: 1e-1, EMA: ema, WidthSteps: true}})
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	_, plain := run(0)
	out, avg := run(0.9)
	q := avg.QAT
	t.Logf("held-out KL: plain %.5f (step %d), with the average %.5f (step %d, from the average: %v); average %v",
		plain.BestHeldOutKL, plain.BestStep, avg.BestHeldOutKL, avg.BestStep, q.BestFromEMA, q.EMAHeldOut)
	if len(plain.History) != len(avg.History) {
		t.Fatalf("history lengths %d and %d", len(plain.History), len(avg.History))
	}
	for i, p := range plain.History {
		a := avg.History[i]
		if p.Step != a.Step || p.Loss != a.Loss && !(math.IsNaN(p.Loss) && math.IsNaN(a.Loss)) ||
			p.HeldOutKL != a.HeldOutKL && !(math.IsNaN(p.HeldOutKL) && math.IsNaN(a.HeldOutKL)) {
			t.Fatalf("step %d: the average changed the trajectory: %+v vs %+v", p.Step, p, a)
		}
	}
	if len(q.EMAHeldOut) != 8 || plain.QAT.EMAHeldOut != nil {
		t.Fatalf("%d evaluations of the average, want 8 (and none without it: %v)", len(q.EMAHeldOut), plain.QAT.EMAHeldOut)
	}
	if !q.BestFromEMA || !(avg.BestHeldOutKL < plain.BestHeldOutKL) {
		t.Fatalf("the average did not win here (%.5f vs %.5f): the fixture no longer tests the averaged return path", avg.BestHeldOutKL, plain.BestHeldOutKL)
	}
	checkStoredKL(t, teacher, out, tokens, 16, avg.BestHeldOutKL)
	if _, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, QAT: &QATOptions{EMA: 1}}); err == nil || !strings.Contains(err.Error(), "EMA decay 1") {
		t.Errorf("EMA 1: %v", err)
	}
	if _, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, QAT: &QATOptions{WidthSteps: true, TensorAdam: true}}); err == nil || !strings.Contains(err.Error(), "width-scaled") {
		t.Errorf("width steps with tensor Adam: %v", err)
	}
}
