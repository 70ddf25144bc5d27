package lorarecovery

import (
	"math"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// TestTrainStories260K: on the real stories260K model with a crude 2-bit
// palettized student, distillation lowers the held-out KL below both the
// compressed model without adapters and the residual-initialised adapters.
func TestTrainStories260K(t *testing.T) {
	teacher := loadLlama2c(t, stories260K, tok512)
	student := palettize2(teacher)
	tokens := calibTokens(t, teacher, 8192)
	var calls int
	set, rep, err := Train(teacher, student, tokens, Options{
		Rank: 8, Steps: 40, Batch: 4, SeqLen: 128, LR: 3e-3, Seed: 1, EvalEvery: 10,
		Progress: func(step int, loss, kl float64) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("held-out KL: no adapters %.4f, residual init %.4f, trained %.4f (step %d); %d train / %d held-out windows; %.1f us/token, %v",
		rep.BaseHeldOutKL, rep.InitHeldOutKL, rep.BestHeldOutKL, rep.BestStep, rep.TrainWindows, rep.HeldOutWindows,
		rep.SecondsPerToken*1e6, rep.Duration)
	for _, p := range rep.History {
		if !math.IsNaN(p.HeldOutKL) {
			t.Logf("step %3d loss %.4f held-out KL %.4f", p.Step, p.Loss, p.HeldOutKL)
		}
	}
	if calls != 40 {
		t.Errorf("progress called %d times, want 40", calls)
	}
	if !(rep.InitHeldOutKL < rep.BaseHeldOutKL) {
		t.Errorf("residual init KL %.4f not below no-adapter KL %.4f", rep.InitHeldOutKL, rep.BaseHeldOutKL)
	}
	if !(rep.BestHeldOutKL < 0.7*rep.InitHeldOutKL) || rep.BestStep == 0 {
		t.Errorf("trained KL %.4f (step %d) not 30%% below residual-init KL %.4f", rep.BestHeldOutKL, rep.BestStep, rep.InitHeldOutKL)
	}
	if len(set.Adapters) != 5*7 {
		t.Fatalf("%d adapters, want 35", len(set.Adapters))
	}
	a := set.Adapters["blk.2.attn_k"]
	if a == nil || a.Rank != 8 || a.In != 64 || a.Out != 32 || len(a.A) != 8*64 || len(a.B) != 32*8 || a.Scale != 1 {
		t.Fatalf("adapter blk.2.attn_k: %+v", a)
	}
}

// TestTrainReproducible: same seed gives bit-identical adapters, with one
// thread or two; another seed gives different ones.
func TestTrainReproducible(t *testing.T) {
	teacher := loadLlama2c(t, stories260K, tok512)
	student := palettize2(teacher)
	tokens := calibTokens(t, teacher, 2048)
	run := func(seed uint64, threads int) (*ir.AdapterSet, Report) {
		set, rep, err := Train(teacher, student, tokens, Options{Rank: 4, Steps: 4, Batch: 3, SeqLen: 64,
			Seed: seed, Threads: threads, Init: InitZero, Targets: []string{ir.AttnQ, ir.FFNDown}})
		if err != nil {
			t.Fatal(err)
		}
		return set, rep
	}
	a, ra := run(7, 1)
	b, rb := run(7, 2)
	c, _ := run(8, 2)
	if len(a.Adapters) != 10 {
		t.Fatalf("%d adapters, want 10", len(a.Adapters))
	}
	same := func(x, y *ir.AdapterSet) bool {
		for name, ax := range x.Adapters {
			bx := y.Adapters[name]
			for i := range ax.A {
				if math.Float32bits(ax.A[i]) != math.Float32bits(bx.A[i]) {
					return false
				}
			}
			for i := range ax.B {
				if math.Float32bits(ax.B[i]) != math.Float32bits(bx.B[i]) {
					return false
				}
			}
		}
		return true
	}
	if !same(a, b) || ra.BestHeldOutKL != rb.BestHeldOutKL || ra.FinalLoss != rb.FinalLoss {
		t.Fatalf("same seed, 1 vs 2 threads: adapters differ (KL %v vs %v, loss %v vs %v)", ra.BestHeldOutKL, rb.BestHeldOutKL, ra.FinalLoss, rb.FinalLoss)
	}
	if same(a, c) {
		t.Fatal("different seeds gave identical adapters")
	}
	// InitZero starts as the compressed model: init KL = no-adapter KL.
	if ra.InitHeldOutKL != ra.BaseHeldOutKL {
		t.Fatalf("zero init: init KL %v != base KL %v", ra.InitHeldOutKL, ra.BaseHeldOutKL)
	}
}

func TestTrainErrors(t *testing.T) {
	teacher := randomModel(tinyConfig(false, true), 1, 0.3)
	student := randomModel(tinyConfig(false, true), 2, 0.3)
	toks := make([]int, 64)
	for _, tc := range []struct {
		name string
		tok  []int
		opt  Options
	}{
		{"too few tokens", toks[:20], Options{SeqLen: 16}},
		{"token out of range", append([]int{0, 1, 99}, toks...), Options{SeqLen: 8}},
		{"seq too long", toks, Options{SeqLen: 17}},
		{"rank too big", toks, Options{SeqLen: 8, Rank: 9}},
		{"bad target", toks, Options{SeqLen: 8, Targets: []string{"blk.5.attn_q"}}},
		{"held-out frac", toks, Options{SeqLen: 8, HeldOutFrac: 1.5}},
	} {
		if _, _, err := Train(teacher, student, tc.tok, tc.opt); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	other := randomModel(ir.Config{Arch: "llama", Dim: 8, Layers: 2, Heads: 2, KVHeads: 2, HeadDim: 4, FFN: 24, Vocab: 19,
		SeqLen: 16, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true}, 3, 0.3)
	if _, _, err := Train(teacher, other, toks, Options{SeqLen: 8}); err == nil {
		t.Error("shape mismatch: no error")
	}
}
