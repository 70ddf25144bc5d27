package lorarecovery

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// jointHeldOut is the held-out KL of model with the adapter set bound, on
// the windows a tuner with the same options cuts from tokens.
func jointHeldOut(t *testing.T, teacher, model *ir.Model, set *ir.AdapterSet, tokens []int, seqLen int) float64 {
	t.Helper()
	tr := evalTuner(t, teacher, model, tokens, seqLen).tr
	var err error
	if tr.targets, err = resolveTargets(model.Config, nil); err != nil {
		t.Fatal(err)
	}
	r := -1
	for i, tg := range tr.targets {
		a := set.Adapters[tg.name()]
		if a == nil {
			t.Fatalf("no adapter for %s", tg.name())
		}
		tr.targets[i].rank = a.Rank
		if r = max(r, a.Rank); a.Scale != 1 {
			t.Fatalf("%s: scale %v, want 1", tg.name(), a.Scale)
		}
		tr.offs = append(tr.offs, len(tr.theta))
		tr.theta = append(append(tr.theta, a.A...), a.B...)
	}
	tr.opt.Rank, tr.opt.Alpha = r, float64(r)
	tr.bind(true)
	for w := range tr.work {
		tr.work[w] = newActs(tr.student, tr.T, r, true)
	}
	tr.cacheTeacher(tr.opt.TeacherCacheBytes)
	return tr.heldOutKL()
}

// TestQATJoint: adapters trained in the QAT run lower the held-out KL
// below QAT alone; the run is bit-identical on 1 and 2 threads; the
// returned base with the returned adapters decodes to the reported
// held-out KL; adapters without QAT, or of rank 0, are refused.
func TestQATJoint(t *testing.T) {
	teacher, student, tokens := qatFixture(t, 0.05)
	run := func(threads, rank int, ranks map[string]int) (*ir.Model, TuneReport) {
		topt := TuneOptions{Steps: 30, Batch: 3, SeqLen: 16, Seed: 4, Norms: true, Threads: threads, EvalEvery: 5,
			QAT: &QATOptions{LR: 3e-2, EMA: 0.9}}
		if rank > 0 {
			topt.Adapters = &JointAdapters{Rank: rank, Ranks: ranks, LR: 1e-2, Name: "joint"}
		}
		out, rep, err := TuneLUTs(teacher, student, tokens, topt)
		if err != nil {
			t.Fatal(err)
		}
		return out, rep
	}
	_, alone := run(2, 0, nil)
	// rank 1 but blk.1.ffn_down at 3: the set keeps each rank, and the
	// returned base and adapters reproduce the reported held-out KL
	outM, rM := run(2, 1, map[string]int{"blk.1.ffn_down": 3})
	if rM.AdapterRank != 1 || !(rM.BestHeldOutKL < alone.BestHeldOutKL) {
		t.Errorf("rank 1 (ffn_down 3): rank %d, held-out KL %v (QAT alone %v)", rM.AdapterRank, rM.BestHeldOutKL, alone.BestHeldOutKL)
	}
	for name, a := range rM.AdapterSet.Adapters {
		if want := map[bool]int{true: 3, false: 1}[name == "blk.1.ffn_down"]; a.Rank != want || len(a.A) != want*a.In {
			t.Errorf("mixed ranks: %s has rank %d (%d A values), want %d", name, a.Rank, len(a.A), want)
		}
	}
	if kl := jointHeldOut(t, teacher, outM, rM.AdapterSet, tokens, 16); math.Abs(kl-rM.BestHeldOutKL) > 1e-9 {
		t.Errorf("mixed ranks: the returned base and adapters give held-out KL %.6f, the report says %.6f", kl, rM.BestHeldOutKL)
	}
	out, joint := run(2, 2, nil)
	out1, joint1 := run(1, 2, nil)
	t.Logf("held-out KL: QAT alone %.5f (step %d), joint rank 2 %.5f (step %d, average %v)",
		alone.BestHeldOutKL, alone.BestStep, joint.BestHeldOutKL, joint.BestStep, joint.QAT.BestFromEMA)
	if alone.AdapterSet != nil || joint.AdapterSet == nil || joint.AdapterRank != 2 || joint.AdapterSet.Name != "joint" || len(joint.AdapterSet.Adapters) != 2*nKinds {
		t.Fatalf("adapter sets: alone %v, joint rank %d %+v", alone.AdapterSet, joint.AdapterRank, joint.AdapterSet)
	}
	if !(joint.BestHeldOutKL < alone.BestHeldOutKL) {
		t.Errorf("joint held-out KL %.5f not below QAT alone %.5f", joint.BestHeldOutKL, alone.BestHeldOutKL)
	}
	// the base figure is the student as given, without the adapters (it
	// was the initial adapters' figure once); the residual-initialised
	// adapters lower it before any step
	if joint.BaseHeldOutKL != alone.BaseHeldOutKL || !(joint.QAT.AdaptersInitHeldOutKL < joint.BaseHeldOutKL) {
		t.Errorf("held-out KL as given: joint %v, QAT alone %v; with the initial adapters %v",
			joint.BaseHeldOutKL, alone.BaseHeldOutKL, joint.QAT.AdaptersInitHeldOutKL)
	}
	if joint.BestHeldOutKL != joint1.BestHeldOutKL {
		t.Fatalf("1 vs 2 threads: held-out KL %v vs %v", joint1.BestHeldOutKL, joint.BestHeldOutKL)
	}
	for name, a := range joint.AdapterSet.Adapters {
		b := joint1.AdapterSet.Adapters[name]
		if !slices.Equal(a.A, b.A) || !slices.Equal(a.B, b.B) {
			t.Fatalf("%s: adapters differ between 1 and 2 threads", name)
		}
	}
	for name, a := range out.Tensors {
		if !slices.Equal(a.Data, out1.Tensors[name].Data) {
			t.Fatalf("%s: indices differ between 1 and 2 threads", name)
		}
	}
	if kl := jointHeldOut(t, teacher, out, joint.AdapterSet, tokens, 16); math.Abs(kl-joint.BestHeldOutKL) > 1e-9 {
		t.Errorf("the returned base and adapters give held-out KL %.6f, the report says %.6f", kl, joint.BestHeldOutKL)
	}
	// zero-initialised adapters (B = 0) start from the base's own output,
	// to the bit, and still train below QAT alone
	_, zero, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 30, Batch: 3, SeqLen: 16, Seed: 4, Norms: true, Threads: 2, EvalEvery: 5,
		QAT: &QATOptions{LR: 3e-2, EMA: 0.9}, Adapters: &JointAdapters{Rank: 2, LR: 1e-2, Init: InitZero}})
	if err != nil {
		t.Fatal(err)
	}
	if zero.QAT.AdaptersInitHeldOutKL != zero.BaseHeldOutKL || !(zero.BestHeldOutKL < alone.BestHeldOutKL) {
		t.Errorf("zero init: held-out KL as given %v, with the initial adapters %v, trained %v (QAT alone %v)",
			zero.BaseHeldOutKL, zero.QAT.AdaptersInitHeldOutKL, zero.BestHeldOutKL, alone.BestHeldOutKL)
	}
	if _, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, QAT: &QATOptions{}, Adapters: &JointAdapters{Rank: 1, Init: 7}}); err == nil || !strings.Contains(err.Error(), "init mode 7") {
		t.Errorf("unknown init mode: %v", err)
	}
	if _, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, Adapters: &JointAdapters{Rank: 1}}); err == nil || !strings.Contains(err.Error(), "need QAT") {
		t.Errorf("adapters without QAT: %v", err)
	}
	if _, _, err := TuneLUTs(teacher, student, tokens, TuneOptions{Steps: 1, QAT: &QATOptions{}, Adapters: &JointAdapters{}}); err == nil || !strings.Contains(err.Error(), "rank 0") {
		t.Errorf("rank 0: %v", err)
	}
}
