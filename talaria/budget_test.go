package talaria

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// budgetSetup: one layer of a small model on the Pi; every linear weight and
// the (tied) embedding may be 8, 4 or 2 bits, with damage growing as bits
// fall and differing per tensor so the choice matters.
func budgetSetup() (Options, map[string][]Choice) {
	c := ir.Config{Arch: "llama", Dim: 256, Layers: 1, Heads: 4, KVHeads: 4, HeadDim: 64, FFN: 768, Vocab: 1024, SeqLen: 256, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true}
	d, _ := Builtin("rpi5")
	opts := Options{Config: c, Device: d, PrefillTokens: 64, DecodeContext: 64}
	ch := map[string][]Choice{}
	for i, n := range TensorNames(c) {
		if !BPWEligible(n) {
			continue
		}
		w := 1 + float64(i%5) // tensor sensitivity
		ch[n] = []Choice{
			{Encoding: TensorEncoding{Bits: 8}, Damage: 0.01 * w},
			{Encoding: TensorEncoding{Bits: 4, GroupSize: 16}, Damage: 0.1 * w},
			{Encoding: TensorEncoding{Bits: 2, GroupSize: 16}, Damage: 1 * w},
		}
	}
	return opts, ch
}

// bruteForce returns the least damage over all feasible assignments.
func bruteForce(t *testing.T, opts Options, ch map[string][]Choice, b Budgets) float64 {
	names := sortedKeys(ch)
	best := math.Inf(1)
	idx := make([]int, len(names))
	for {
		p := opts.Plan.Clone()
		var dmg float64
		for i, n := range names {
			p.Tensors[n] = ch[n][idx[i]].Encoding
			dmg += ch[n][idx[i]].Damage
		}
		if dmg < best {
			o := opts
			o.Plan = p
			r, err := Profile(o)
			if err != nil {
				t.Fatal(err)
			}
			T := r.Totals
			if T.DecodeMsPerToken <= b.MaxDecodeMsPerToken && T.EnergyMJPerToken <= b.MaxEnergyMJPerToken && T.MsPerPromptToken <= b.MaxPrefillMsPerToken {
				best = dmg
			}
		}
		k := 0
		for ; k < len(idx); k++ {
			idx[k]++
			if idx[k] < 3 {
				break
			}
			idx[k] = 0
		}
		if k == len(idx) {
			return best
		}
	}
}

func TestBudgetsFeasible(t *testing.T) {
	opts, ch := budgetSetup()
	// Figures of the all-8-bit and all-2-bit plans bracket the budgets.
	fig := func(bits int) Totals {
		o := opts
		o.Plan = Plan{Tensors: map[string]TensorEncoding{}}
		for n, cs := range ch {
			for _, c := range cs {
				if c.Encoding.Bits == bits {
					o.Plan.Tensors[n] = c.Encoding
				}
			}
		}
		r, err := Profile(o)
		if err != nil {
			t.Fatal(err)
		}
		return r.Totals
	}
	hi, lo := fig(8), fig(2)
	b := Budgets{
		MaxDecodeMsPerToken:  lo.DecodeMsPerToken + 0.4*(hi.DecodeMsPerToken-lo.DecodeMsPerToken),
		MaxEnergyMJPerToken:  lo.EnergyMJPerToken + 0.5*(hi.EnergyMJPerToken-lo.EnergyMJPerToken),
		MaxPrefillMsPerToken: hi.MsPerPromptToken * 1.01,
	}
	res, err := SolveBudgets(BudgetRequest{Profile: opts, Choices: ch, Budgets: b})
	if err != nil {
		t.Fatal(err)
	}
	// The chosen plan, profiled independently, meets every budget.
	o := opts
	o.Plan = Plan{Tensors: res.Plan}
	r, err := Profile(o)
	if err != nil {
		t.Fatal(err)
	}
	T := r.Totals
	if T.DecodeMsPerToken > b.MaxDecodeMsPerToken || T.EnergyMJPerToken > b.MaxEnergyMJPerToken || T.MsPerPromptToken > b.MaxPrefillMsPerToken {
		t.Fatalf("plan breaks budgets: %+v vs %+v", T, b)
	}
	near(t, "solver decode figure", res.Figures.DecodeMsPerToken, T.DecodeMsPerToken)
	near(t, "solver energy figure", res.Figures.EnergyMJPerToken, T.EnergyMJPerToken)
	if res.Figures.WeightBytes != T.WeightBytes {
		t.Errorf("weight bytes %d vs %d", res.Figures.WeightBytes, T.WeightBytes)
	}
	opt := bruteForce(t, opts, ch, b)
	t.Logf("greedy damage %.4f, optimum %.4f (%d moves)", res.Damage, opt, res.Moves)
	if res.Damage < opt-1e-9 || res.Damage > opt*1.10 {
		t.Errorf("greedy damage %.4f, brute-force optimum %.4f", res.Damage, opt)
	}
	// A size target alone: 3 bits per weight over the tensors with choices.
	res2, err := SolveBudgets(BudgetRequest{Profile: opts, Choices: ch, Budgets: Budgets{TargetBPW: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Figures.ChoiceBPW > 3 || res2.Figures.ChoiceBPW < 2.5 {
		t.Errorf("bpw target 3: got %.3f", res2.Figures.ChoiceBPW)
	}
}

func TestBudgetsInfeasible(t *testing.T) {
	opts, ch := budgetSetup()
	_, err := SolveBudgets(BudgetRequest{Profile: opts, Choices: ch, Budgets: Budgets{MaxDecodeMsPerToken: 0.01, MaxWeightBytes: 1 << 30}})
	var ie *InfeasibleError
	if !errors.As(err, &ie) {
		t.Fatalf("want InfeasibleError, got %v", err)
	}
	// Best achievable decode is the all-2-bit plan.
	o := opts
	o.Plan = Plan{Tensors: map[string]TensorEncoding{}}
	for n := range ch {
		o.Plan.Tensors[n] = TensorEncoding{Bits: 2, GroupSize: 16}
	}
	r, _ := Profile(o)
	near(t, "best achievable decode", ie.Best.DecodeMsPerToken, r.Totals.DecodeMsPerToken)
	if !strings.Contains(err.Error(), "decode ms/token") || !strings.Contains(err.Error(), "best achievable") || strings.Contains(err.Error(), "weight bytes ") {
		t.Errorf("error text: %v", err)
	}
	if _, err := SolveBudgets(BudgetRequest{Profile: opts, Choices: map[string][]Choice{"blk.7.attn_q": {{}}}}); err == nil {
		t.Error("unknown tensor accepted")
	}
}
