package talaria

import (
	"fmt"
	"math"
	"strings"

	"github.com/squeeze-ml/squeeze/ir"
)

// Choice is one way to store a tensor, with the damage the caller predicts
// for it and (optionally) its storage bytes; Bytes 0 means "compute from
// the encoding" (EncodedBytes).
type Choice struct {
	Encoding TensorEncoding `json:"encoding"`
	Damage   float64        `json:"damage"`
	Bytes    int64          `json:"bytes,omitempty"`
}

// Budgets are the constraints of SolveBudgets; a zero field is no limit.
type Budgets struct {
	MaxDecodeMsPerToken  float64 `json:"max_decode_ms_per_token,omitempty"`
	MaxPrefillMsPerToken float64 `json:"max_prefill_ms_per_token,omitempty"`
	MaxEnergyMJPerToken  float64 `json:"max_energy_mj_per_token,omitempty"` // decode
	// Size target: total weight bytes of the model, and/or bits per weight
	// over the tensors that have choices.
	MaxWeightBytes int64   `json:"max_weight_bytes,omitempty"`
	TargetBPW      float64 `json:"target_bpw,omitempty"`
}

// BudgetRequest is the input of SolveBudgets. Profile gives the config,
// device, N and L, and the plan of the tensors that have no choices.
type BudgetRequest struct {
	Profile Options
	Choices map[string][]Choice
	Budgets Budgets
}

// Figures are the constrained quantities of a plan.
type Figures struct {
	DecodeMsPerToken  float64 `json:"decode_ms_per_token"`
	PrefillMsPerToken float64 `json:"prefill_ms_per_token"`
	EnergyMJPerToken  float64 `json:"energy_mj_per_token"`
	WeightBytes       int64   `json:"weight_bytes"`
	ChoiceBPW         float64 `json:"choice_bpw"` // bits per weight over tensors with choices
}

// BudgetResult is a plan that meets every budget.
type BudgetResult struct {
	Method  string                    `json:"method"`
	Plan    map[string]TensorEncoding `json:"plan"` // one entry per tensor with choices
	Damage  float64                   `json:"damage"`
	Figures Figures                   `json:"figures"`
	Moves   int                       `json:"moves"`
}

// BudgetMethod describes the algorithm of SolveBudgets.
const BudgetMethod = "greedy with repair: start every tensor at its least-damage choice; while a budget is violated, " +
	"take the single-tensor move with the best ratio of violation removed (each violated budget weighted by its relative excess) " +
	"to damage added, never breaking a budget that holds; once feasible, repeatedly take the move that lowers damage most " +
	"while keeping every budget. Costs are separable because each op's roofline latency and energy depend only on its own weight."

// InfeasibleError lists the best figure each budget could reach on its own
// and the closest plan found.
type InfeasibleError struct {
	Violations []string
	Best       Figures // each field minimised independently
	Closest    Figures // figures of the plan the search ended at
}

func (e *InfeasibleError) Error() string {
	return fmt.Sprintf("budgets cannot be met: %s; best achievable: decode %.3f ms/token, prefill %.4f ms/token, energy %.3f mJ/token, weights %d bytes (%.3f bits/weight over the tensors with choices)",
		strings.Join(e.Violations, "; "), e.Best.DecodeMsPerToken, e.Best.PrefillMsPerToken, e.Best.EnergyMJPerToken, e.Best.WeightBytes, e.Best.ChoiceBPW)
}

type constraint struct {
	name    string
	limit   float64
	base    float64
	contrib [][]float64 // [tensor][choice]
	fmt     func(float64) string
}

// SolveBudgets chooses one Choice per tensor minimising the summed damage
// subject to every budget (method: BudgetMethod), or returns an
// *InfeasibleError listing the best achievable figures.
func SolveBudgets(req BudgetRequest) (*BudgetResult, error) {
	opts := req.Profile
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	b := req.Budgets
	for _, v := range []float64{b.MaxDecodeMsPerToken, b.MaxPrefillMsPerToken, b.MaxEnergyMJPerToken, float64(b.MaxWeightBytes), b.TargetBPW} {
		if v < 0 || math.IsNaN(v) {
			return nil, fmt.Errorf("budgets: negative or NaN limit %v", v)
		}
	}
	if len(req.Choices) == 0 {
		return nil, fmt.Errorf("budgets: no tensor has choices")
	}
	base, err := opts.Plan.resolve(opts.Config)
	if err != nil {
		return nil, err
	}
	tensors := sortedKeys(req.Choices)
	idx := map[string]int{}
	for i, n := range tensors {
		if _, ok := base[n]; !ok {
			return nil, fmt.Errorf("budgets: tensor %q is not a tensor of this model", n)
		}
		if len(req.Choices[n]) == 0 {
			return nil, fmt.Errorf("budgets: tensor %q has no choices", n)
		}
		idx[n] = i
	}
	c, d := opts.Config, opts.Device
	pre, dec := ir.Prefill(opts.PrefillTokens), ir.DecodeAt(opts.DecodeContext)
	N := float64(opts.PrefillTokens)
	nt := len(tensors)
	alloc := func() [][]float64 {
		m := make([][]float64, nt)
		for i, n := range tensors {
			m[i] = make([]float64, len(req.Choices[n]))
		}
		return m
	}
	decMs, preMs, eMJ, bytes := alloc(), alloc(), alloc(), alloc()
	var decBase, preBase, eBase, bytesBase, choiceElems float64
	encs := make([][]resolved, nt)
	for i, n := range tensors {
		choiceElems += float64(base[n].Elems)
		for j, ch := range req.Choices[n] {
			r := base[n]
			bb, err := EncodedBytes(ch.Encoding, r.Rows, r.Cols)
			if err != nil {
				return nil, fmt.Errorf("budgets: tensor %q choice %d: %v", n, j+1, err)
			}
			if ch.Bytes < 0 || math.IsNaN(ch.Damage) {
				return nil, fmt.Errorf("budgets: tensor %q choice %d: bytes %d / damage %v invalid", n, j+1, ch.Bytes, ch.Damage)
			}
			if ch.Bytes > 0 {
				bb = ch.Bytes
			}
			r.Bytes, r.Encoding, r.Label, r.LUTBits, r.Groups = bb, ch.Encoding, encodingLabel(ch.Encoding), 0, 0
			switch ch.Encoding.Bits {
			case 0, 32:
				r.Bits = 32
			case 16:
				r.Bits = 16
			default:
				r.Bits, r.LUTBits, r.Groups = float64(ch.Encoding.Bits), float64(ch.Encoding.Bits), numGroups(ch.Encoding.GroupSize, r.Rows)
			}
			encs[i] = append(encs[i], r)
			bytes[i][j] = float64(bb)
		}
	}
	for n, r := range base {
		if _, ok := idx[n]; !ok {
			bytesBase += float64(r.Bytes)
		}
	}
	for _, o := range c.Ops() {
		if i, ok := idx[o.Weight]; ok && o.Weight != "" {
			for j := range encs[i] {
				w := encs[i][j]
				decMs[i][j] += phaseCost(c, d, o, dec, &w).LatencyUs / 1e3
				preMs[i][j] += phaseCost(c, d, o, pre, &w).LatencyUs / 1e3 / N
				eMJ[i][j] += phaseCost(c, d, o, dec, &w).EnergyUJ / 1e3
			}
			continue
		}
		var w *resolved
		if r, ok := base[o.Weight]; ok {
			w = &r
		}
		decBase += phaseCost(c, d, o, dec, w).LatencyUs / 1e3
		preBase += phaseCost(c, d, o, pre, w).LatencyUs / 1e3 / N
		eBase += phaseCost(c, d, o, dec, w).EnergyUJ / 1e3
	}
	ms := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	all := []constraint{
		{"decode ms/token", b.MaxDecodeMsPerToken, decBase, decMs, ms},
		{"prefill ms/token", b.MaxPrefillMsPerToken, preBase, preMs, func(v float64) string { return fmt.Sprintf("%.4f", v) }},
		{"energy mJ/token", b.MaxEnergyMJPerToken, eBase, eMJ, ms},
		{"weight bytes", float64(b.MaxWeightBytes), bytesBase, bytes, func(v float64) string { return fmt.Sprintf("%.0f", v) }},
		{"bits/weight of tensors with choices", b.TargetBPW * choiceElems / 8, 0, bytes, func(v float64) string { return fmt.Sprintf("%.3f", 8*v/choiceElems) }},
	}
	var cons []constraint
	for _, k := range all {
		if k.limit > 0 {
			cons = append(cons, k)
		}
	}
	dmg := func(i, j int) float64 { return req.Choices[tensors[i]][j].Damage }
	cur := make([]int, nt)
	for i := range cur {
		for j := range req.Choices[tensors[i]] {
			if dmg(i, j) < dmg(i, cur[i]) || (dmg(i, j) == dmg(i, cur[i]) && bytes[i][j] < bytes[i][cur[i]]) {
				cur[i] = j
			}
		}
	}
	tot := make([]float64, len(cons))
	recompute := func() {
		for k, cn := range cons {
			tot[k] = cn.base
			for i := range cur {
				tot[k] += cn.contrib[i][cur[i]]
			}
		}
	}
	recompute()
	const tol = 1e-9
	over := func(k int, v float64) bool { return v > cons[k].limit*(1+tol) }
	moves := 0
	for iter := 0; iter < 100*nt*8+100; iter++ {
		var viol []int
		for k := range cons {
			if over(k, tot[k]) {
				viol = append(viol, k)
			}
		}
		if len(viol) == 0 {
			break
		}
		bi, bj, bestScore := -1, -1, 0.0
		for i := range cur {
			for j := range req.Choices[tensors[i]] {
				if j == cur[i] {
					continue
				}
				gain, ok := 0.0, true
				for k, cn := range cons {
					nv := tot[k] - cn.contrib[i][cur[i]] + cn.contrib[i][j]
					if over(k, tot[k]) {
						ex := (tot[k] - cn.limit) / cn.limit
						gain += ex * (tot[k] - nv) / cn.limit
					} else if over(k, nv) {
						ok = false
					}
				}
				if !ok || gain <= 0 {
					continue
				}
				dd := dmg(i, j) - dmg(i, cur[i])
				score := gain / math.Max(dd, 1e-12)
				if dd <= 0 {
					score = math.Inf(1)
				}
				if bi < 0 || score > bestScore || (score == bestScore && math.IsInf(score, 1) && dd < dmg(bi, bj)-dmg(bi, cur[bi])) {
					bi, bj, bestScore = i, j, score
				}
			}
		}
		if bi < 0 {
			break
		}
		cur[bi] = bj
		moves++
		recompute()
	}
	figs := func() Figures {
		f := Figures{DecodeMsPerToken: decBase, PrefillMsPerToken: preBase, EnergyMJPerToken: eBase}
		wb := bytesBase
		var cb float64
		for i := range cur {
			f.DecodeMsPerToken += decMs[i][cur[i]]
			f.PrefillMsPerToken += preMs[i][cur[i]]
			f.EnergyMJPerToken += eMJ[i][cur[i]]
			cb += bytes[i][cur[i]]
		}
		f.WeightBytes = int64(wb + cb)
		f.ChoiceBPW = 8 * cb / choiceElems
		return f
	}
	var viol []string
	for k, cn := range cons {
		if over(k, tot[k]) {
			best := cn.base
			for i := range cur {
				m := math.Inf(1)
				for j := range cn.contrib[i] {
					m = math.Min(m, cn.contrib[i][j])
				}
				best += m
			}
			viol = append(viol, fmt.Sprintf("%s %s > budget %s (best achievable %s)", cn.name, cn.fmt(tot[k]), cn.fmt(cn.limit), cn.fmt(best)))
		}
	}
	if len(viol) > 0 {
		e := &InfeasibleError{Violations: viol, Closest: figs()}
		// Each figure at its own minimum (separable: per tensor minimum).
		save := append([]int(nil), cur...)
		for f, m := range []*[][]float64{&decMs, &preMs, &eMJ, &bytes} {
			for i := range cur {
				for j := range (*m)[i] {
					if (*m)[i][j] < (*m)[i][cur[i]] {
						cur[i] = j
					}
				}
			}
			g := figs()
			switch f {
			case 0:
				e.Best.DecodeMsPerToken = g.DecodeMsPerToken
			case 1:
				e.Best.PrefillMsPerToken = g.PrefillMsPerToken
			case 2:
				e.Best.EnergyMJPerToken = g.EnergyMJPerToken
			case 3:
				e.Best.WeightBytes, e.Best.ChoiceBPW = g.WeightBytes, g.ChoiceBPW
			}
			copy(cur, save)
		}
		return nil, e
	}
	// Repair phase: lower damage while every budget holds.
	for {
		bi, bj, bestGain := -1, -1, 0.0
		for i := range cur {
			for j := range req.Choices[tensors[i]] {
				g := dmg(i, cur[i]) - dmg(i, j)
				if g <= bestGain {
					continue
				}
				ok := true
				for k, cn := range cons {
					if over(k, tot[k]-cn.contrib[i][cur[i]]+cn.contrib[i][j]) {
						ok = false
						break
					}
				}
				if ok {
					bi, bj, bestGain = i, j, g
				}
			}
		}
		if bi < 0 {
			break
		}
		cur[bi] = bj
		moves++
		recompute()
	}
	res := &BudgetResult{Method: BudgetMethod, Plan: map[string]TensorEncoding{}, Figures: figs(), Moves: moves}
	for i, n := range tensors {
		res.Plan[n] = req.Choices[n][cur[i]].Encoding
		res.Damage += dmg(i, cur[i])
	}
	return res, nil
}
