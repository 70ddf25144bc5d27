package lorarecovery

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/squeeze-ml/squeeze/ir"
)

// residualCase returns W, a crudely rounded Wq and an importance vector
// with one zero entry.
func residualCase(out, in int) (W, Wq, imp []float32) {
	rng := rand.New(rand.NewPCG(3, 4))
	W = randVec(rng, out*in, 1)
	Wq = make([]float32, len(W))
	for i, v := range W {
		Wq[i] = float32(math.Round(float64(v)*2) / 2)
	}
	imp = make([]float32, in)
	for i := range imp {
		imp[i] = float32(math.Exp(rng.NormFloat64()))
	}
	imp[2] = 0
	return
}

func TestInitFromResidualFullRank(t *testing.T) {
	out, in := 12, 9
	W, Wq, imp := residualCase(out, in)
	const scale = 2.5
	A, B, err := InitFromResidual(W, Wq, out, in, in, imp, scale)
	if err != nil {
		t.Fatal(err)
	}
	var worst float64
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var ba float64
			for k := 0; k < in; k++ {
				ba += float64(B[o*in+k]) * float64(A[k*in+i])
			}
			r := float64(W[o*in+i] - Wq[o*in+i])
			worst = math.Max(worst, math.Abs(scale*ba-r))
		}
	}
	if worst > 1e-4 {
		t.Fatalf("full rank: max |scale*B*A - (W - Wq)| = %g", worst)
	}
	t.Logf("full rank reconstructs the residual to %.2g", worst)
}

// TestInitWeightedErrorDecreases: the weighted error decreases with rank
// and equals the Eckart-Young tail energy of the weighted residual's
// singular values (a brute-force check of optimality).
func TestInitWeightedErrorDecreases(t *testing.T) {
	out, in := 12, 9
	W, Wq, imp := residualCase(out, in)
	d, _ := channelWeights(imp, in)
	M := mat.NewDense(out, in, nil)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			M.Set(o, i, float64(W[o*in+i]-Wq[o*in+i])*d[i])
		}
	}
	var svd mat.SVD
	svd.Factorize(M, mat.SVDNone)
	s := svd.Values(nil)
	var total float64
	for _, v := range s {
		total += v * v
	}
	prev := math.Inf(1)
	for r := 1; r <= in; r++ {
		A, B, err := InitFromResidual(W, Wq, out, in, r, imp, 1)
		if err != nil {
			t.Fatal(err)
		}
		e, err := WeightedResidualError(W, Wq, A, B, out, in, r, imp, 1)
		if err != nil {
			t.Fatal(err)
		}
		var tail float64
		for _, v := range s[r:] {
			tail += v * v
		}
		if math.Abs(e-tail/total) > 1e-5 {
			t.Errorf("rank %d: weighted error %.6f, Eckart-Young tail %.6f", r, e, tail/total)
		}
		if e >= prev && e > 1e-9 {
			t.Errorf("rank %d: weighted error %.6f did not decrease from %.6f", r, e, prev)
		}
		prev = e
		// The weighted init beats an unweighted SVD in the weighted norm.
		if r < in {
			Au, Bu, _ := InitFromResidual(W, Wq, out, in, r, nil, 1)
			eu, _ := WeightedResidualError(W, Wq, Au, Bu, out, in, r, imp, 1)
			if e > eu+1e-9 {
				t.Errorf("rank %d: weighted init error %.6f > unweighted init %.6f", r, e, eu)
			}
		}
	}
}

func TestInitFromResidualErrors(t *testing.T) {
	W, Wq, imp := residualCase(4, 3)
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"rank too big", func() error { _, _, err := InitFromResidual(W, Wq, 4, 3, 4, imp, 1); return err }},
		{"rank 0", func() error { _, _, err := InitFromResidual(W, Wq, 4, 3, 0, imp, 1); return err }},
		{"short W", func() error { _, _, err := InitFromResidual(W[:5], Wq, 4, 3, 1, imp, 1); return err }},
		{"importance len", func() error { _, _, err := InitFromResidual(W, Wq, 4, 3, 1, imp[:2], 1); return err }},
		{"negative importance", func() error {
			_, _, err := InitFromResidual(W, Wq, 4, 3, 1, []float32{1, -1, 1}, 1)
			return err
		}},
		{"NaN importance", func() error {
			_, _, err := InitFromResidual(W, Wq, 4, 3, 1, []float32{1, float32(math.NaN()), 1}, 1)
			return err
		}},
		{"zero scale", func() error { _, _, err := InitFromResidual(W, Wq, 4, 3, 1, imp, 0); return err }},
	} {
		if err := tc.f(); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func TestRankForBudget(t *testing.T) {
	c := tinyConfig(false, true) // dim 16, kv 8, ffn 24, 2 layers
	m := &ir.Model{Config: c}
	// attn_q: 2 bytes * (16 + 16) per rank per layer = 64 B/rank/layer -> 128 B per rank.
	r, err := RankForBudget(m, []string{ir.AttnQ}, nil, 128*5+127, 8, nil)
	if err != nil || r != 5 {
		t.Fatalf("RankForBudget = %d, %v; want 5", r, err)
	}
	if r, _ := RankForBudget(m, []string{ir.AttnQ}, nil, 1<<20, 8, nil); r != 8 {
		t.Fatalf("large budget: rank %d, want the requested 8", r)
	}
	if _, err := RankForBudget(m, []string{ir.AttnQ}, nil, 100, 8, nil); err == nil {
		t.Fatal("budget below rank 1: no error")
	}
	// every linear: per layer 2*((16+16)+(16+8)*2+(16+16)+(24+16)*2+(16+24)) bytes per rank
	per := int64(2 * c.Layers * ((16 + 16) + 2*(16+8) + (16 + 16) + 2*(24+16) + (16 + 24)))
	r, err = RankForBudget(m, nil, nil, per*3, 16, nil)
	if err != nil || r != 3 {
		t.Fatalf("all targets: rank %d, %v; want 3", r, err)
	}
	// The adapters Train would make at that rank fit the budget.
	set := &ir.AdapterSet{Adapters: map[string]*ir.Adapter{}}
	ts, _ := resolveTargets(c, nil)
	for _, x := range ts {
		out, in := linShape(c, x.kind)
		set.Adapters[x.name()] = &ir.Adapter{A: make([]float32, r*in), B: make([]float32, out*r)}
	}
	if set.Bytes() != per*3 {
		t.Fatalf("adapter bytes %d, want %d", set.Bytes(), per*3)
	}
	// Given ranks are paid first: attn_q at rank 6 (6 x 128 B) leaves the
	// other six kinds (per - 128 B per rank) rank 2 of a per*3 budget
	// ((per*3 - 768) / (per - 128) = 2.x), and overhead(rank) counts.
	ranks := map[string]int{ir.AttnQ: 6}
	if r, err = RankForBudget(m, nil, ranks, per*3, 16, nil); err != nil || r != 2 {
		t.Fatalf("attn_q at 6: rank %d, %v; want 2", r, err)
	}
	if r, err = RankForBudget(m, nil, ranks, per*3, 16, func(r int) int64 { return per*3 - 768 - 2*(per-128) + 1 }); err != nil || r != 1 {
		t.Fatalf("attn_q at 6 with overhead: rank %d, %v; want 1", r, err)
	}
	// Only given ranks: maxRank when they fit, an error when not.
	if r, err = RankForBudget(m, []string{ir.AttnQ}, ranks, 768, 16, nil); err != nil || r != 16 {
		t.Fatalf("every target given: %d, %v; want 16 (maxRank)", r, err)
	}
	if _, err = RankForBudget(m, []string{ir.AttnQ}, ranks, 767, 16, nil); err == nil {
		t.Fatal("given ranks over the budget: no error")
	}
	for _, bad := range []map[string]int{{"blk.9.attn_q": 2}, {ir.FFNUp: 2}, {ir.AttnQ: 17}, {ir.AttnQ: 0}} {
		if _, err := RankForBudget(m, []string{ir.AttnQ}, bad, 1<<20, 4, nil); err == nil {
			t.Errorf("ranks %v: no error", bad)
		} else {
			t.Log(err)
		}
	}
}
