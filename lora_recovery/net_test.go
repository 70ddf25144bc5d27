package lorarecovery

import (
	"math/rand/v2"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func tinyConfig(neox, tied bool) ir.Config {
	return ir.Config{Arch: "llama", Dim: 16, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4, FFN: 24, Vocab: 19,
		SeqLen: 16, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: tied, RopeNeoX: neox}
}

// tinyTrainer wires a trainer by hand on random models, with random
// (non-zero) adapters so every gradient path is live.
func tinyTrainer(t *testing.T, c ir.Config, targets []string, ranks map[string]int, T int, ceWeight float64) *trainer {
	t.Helper()
	teacher := randomModel(c, 1, 0.3)
	student := randomModel(c, 2, 0.3)
	tr := &trainer{opt: Options{Rank: 2, Alpha: 3, Init: InitZero, Seed: 5, CEWeight: ceWeight}, T: T, V: c.Vocab}
	var err error
	if tr.targets, err = resolveTargets(c, targets); err != nil {
		t.Fatal(err)
	}
	maxRank, err := setRanks(c, tr.targets, 2, ranks, "test")
	if err != nil {
		t.Fatal(err)
	}
	if tr.teacher, err = newNet(teacher, false); err != nil {
		t.Fatal(err)
	}
	if tr.student, err = newNet(student, true); err != nil {
		t.Fatal(err)
	}
	if err := tr.initAdapters(teacher, student, 1.5); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range tr.theta {
		tr.theta[i] = float32(rng.NormFloat64() * 0.2)
	}
	tr.bind(true)
	tr.work = []*acts{newActs(tr.student, T, maxRank, true)}
	win := make([]int, T)
	lab := make([]int, T)
	for i := range win {
		win[i] = rng.IntN(c.Vocab)
		lab[i] = rng.IntN(c.Vocab)
	}
	tr.windows, tr.labels, tr.nTrain = [][]int{win}, [][]int{lab}, 1
	tr.tcache = [][]float32{make([]float32, T*c.Vocab)}
	tr.teacherLogp(tr.work[0], win, tr.tcache[0])
	return tr
}

// TestNetGrad checks the whole forward/backward chain (embedding, norms,
// LoRA linears, RoPE, GQA attention, SwiGLU, residuals, classifier, KL +
// CE loss) against finite differences in every adapter parameter.
func TestNetGrad(t *testing.T) {
	cases := []struct {
		name    string
		neox    bool
		tied    bool
		targets []string
		ranks   map[string]int
	}{
		{"llama-tied-all", false, true, nil, nil},
		{"neox-untied-all", true, false, nil, nil},
		{"upper-layer-only", false, true, []string{"blk.1.attn_k", "blk.1.ffn_down"}, nil},
		{"attn-only", false, false, []string{ir.AttnQ, ir.AttnV, ir.AttnOut}, nil},
		// per-target ranks: a kind at 1, one tensor of it back at 3, one at 4
		{"mixed-ranks", false, true, nil, map[string]int{ir.AttnQ: 1, "blk.1.attn_q": 3, "blk.0.ffn_down": 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := tinyTrainer(t, tinyConfig(tc.neox, tc.tied), tc.targets, tc.ranks, 7, 0.5)
			for _, tg := range tr.targets {
				if want := map[string]int{"blk.0.attn_q": 1, "blk.1.attn_q": 3, "blk.0.ffn_down": 4}[tg.name()]; tc.ranks != nil && want > 0 && tg.rank != want {
					t.Fatalf("%s: rank %d, want %d", tg.name(), tg.rank, want)
				}
			}
			g := make([]float32, len(tr.theta))
			tr.seqGrad(0, 0, g, 1, 0.5)
			loss := func() float64 {
				a := tr.work[0]
				tr.student.forward(a, tr.windows[0])
				kl, ce := distillForward(a.log, tr.tcache[0], tr.labels[0], tr.T, tr.V)
				return kl + 0.5*ce
			}
			checkGrad(t, "theta", tr.theta, g, loss, 5e-3)
		})
	}
}

func TestResolveTargets(t *testing.T) {
	c := tinyConfig(false, true)
	ts, err := resolveTargets(c, []string{"ffn_up", "blk.0.attn_q"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range ts {
		names = append(names, x.name())
	}
	want := []string{"blk.0.attn_q", "blk.0.ffn_up", "blk.1.ffn_up"}
	if len(names) != len(want) {
		t.Fatalf("targets %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("targets %v, want %v", names, want)
		}
	}
	for _, bad := range []string{"blk.9.attn_q", "attn_x", "blk.x.attn_q", "output"} {
		if _, err := resolveTargets(c, []string{bad}); err == nil {
			t.Errorf("target %q: no error", bad)
		} else {
			t.Log(err)
		}
	}
	all, _ := resolveTargets(c, nil)
	if len(all) != c.Layers*7 {
		t.Fatalf("default targets: %d, want %d", len(all), c.Layers*7)
	}
}
