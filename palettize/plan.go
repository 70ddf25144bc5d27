package palettize

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/squeeze-ml/squeeze/ir"
)

// PlanVersion is the version of the Plan JSON layout.
const PlanVersion = 1

// Plan is the bit allocation: which encoding each palettized tensor gets.
// It is written as JSON (--plan files) and read back with ReadPlan, then
// checked against the model with Validate. Tensors absent from the plan
// keep their encoding.
type Plan struct {
	Version int `json:"version"`
	// TargetBPW is the requested average bits per palettized weight,
	// counting indices, LUTs and scales.
	TargetBPW float64 `json:"target_bpw"`
	// CandidateBits and CandidateGroupSizes are the option sets the
	// allocation chose from (group size 0 = one LUT per tensor).
	CandidateBits       []int `json:"candidate_bits,omitempty"`
	CandidateGroupSizes []int `json:"candidate_group_sizes,omitempty"`
	// Granularity is "group" when bits were chosen per block of rows
	// (AllocateGroups; BlockSizes lists the block sizes offered), empty
	// for per-tensor allocation.
	Granularity string `json:"granularity,omitempty"`
	BlockSizes  []int  `json:"block_sizes,omitempty"`
	// Method and Seed are what Apply uses unless told otherwise.
	Method string `json:"method,omitempty"`
	Seed   uint64 `json:"seed"`
	// ErrorFeedback: Apply rounds with GPTQ-style error feedback (needs a
	// calibration with Gram matrices), re-fitting the LUTs RefitLUT times.
	ErrorFeedback bool `json:"error_feedback,omitempty"`
	RefitLUT      int  `json:"refit_lut,omitempty"`
	// Tensors lists the per-tensor choices, in model order.
	Tensors []PlanEntry `json:"tensors"`
	// TotalWeights and TotalBits sum over Tensors; AchievedBPW =
	// TotalBits / TotalWeights.
	TotalWeights int64   `json:"total_weights"`
	TotalBits    int64   `json:"total_bits"`
	AchievedBPW  float64 `json:"achieved_bpw"`
	// PredictedDamage is the sum of the entries' damage. LowerBound is
	// the Lagrangian (LP relaxation) bound: no choice of the same options
	// within the same budget has less damage. Gap = PredictedDamage -
	// LowerBound >= 0, and RelGap = Gap / PredictedDamage.
	PredictedDamage float64 `json:"predicted_damage"`
	LowerBound      float64 `json:"lower_bound"`
	Gap             float64 `json:"gap"`
	RelGap          float64 `json:"rel_gap"`
	// Lambda is the damage per bit at which the Lagrangian walk stopped.
	Lambda float64 `json:"lambda"`
	// Device and Predicted record a Talaria-guided allocation (compile
	// --device with budgets): the device profile and what it predicts for
	// this plan (decode_ms_per_token, prefill_ms_per_token,
	// energy_mj_per_token, weight_bytes).
	Device    string             `json:"device,omitempty"`
	Predicted map[string]float64 `json:"predicted,omitempty"`
}

// PlanEntry is the choice for one tensor.
type PlanEntry struct {
	Name        string  `json:"name"`
	Shape       []int   `json:"shape"`
	Bits        int     `json:"bits"`
	GroupSize   int     `json:"group_size"` // rows sharing one LUT (= rows for one LUT per tensor)
	PerRowScale bool    `json:"per_row_scale"`
	Damage      float64 `json:"predicted_damage"`
	Bytes       int64   `json:"bytes"`
	BPW         float64 `json:"bpw"`
	// Parts, when set, split the rows into consecutive parts with their own
	// choices (per-group allocation; the tensor becomes lutmix). Bits,
	// GroupSize and PerRowScale of the entry are then 0 / false.
	Parts []PlanPart `json:"parts,omitempty"`
}

// PlanPart is the choice for Rows consecutive rows of a tensor.
type PlanPart struct {
	Rows        int     `json:"rows"`
	Bits        int     `json:"bits"`
	GroupSize   int     `json:"group_size"`
	PerRowScale bool    `json:"per_row_scale"`
	Damage      float64 `json:"predicted_damage"`
	Bytes       int64   `json:"bytes"`
}

// bytes is the storage of the entry as planned (the sum of its parts').
func (e *PlanEntry) bytes() int64 {
	if len(e.Parts) == 0 {
		return PalettizedBytes(e.Shape[0], e.Shape[1], e.Bits, e.GroupSize, e.PerRowScale)
	}
	var b int64
	for _, p := range e.Parts {
		b += PalettizedBytes(p.Rows, e.Shape[1], p.Bits, p.GroupSize, p.PerRowScale)
	}
	return b
}

// ReadPlan decodes a plan written as JSON; name labels errors (e.g. the
// file path). Unknown fields are an error, so a typo does not go unseen.
func ReadPlan(r io.Reader, name string) (*Plan, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: plan: %w", name, err)
	}
	if p.Version != PlanVersion {
		return nil, fmt.Errorf("%s: plan: version %d, expected %d", name, p.Version, PlanVersion)
	}
	return &p, nil
}

// WritePlan encodes p as indented JSON.
func WritePlan(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// Validate checks a plan (e.g. one read from a file) against a model:
// every tensor exists, is a matrix of the recorded shape (when a shape is
// recorded) and appears once, bits are supported and group sizes are in
// 1..rows. It also recomputes Bytes, BPW and the totals from the shapes,
// so hand-edited numbers cannot mislead the reports.
func (p *Plan) Validate(m *ir.Model) error {
	if p == nil {
		return errors.New("plan: nil")
	}
	seen := map[string]bool{}
	var tw, tb int64
	var dmg float64
	for i := range p.Tensors {
		e := &p.Tensors[i]
		t, ok := m.Tensors[e.Name]
		if !ok {
			return fmt.Errorf("plan: tensors[%d]: tensor %q is not in the model", i, e.Name)
		}
		if seen[e.Name] {
			return fmt.Errorf("plan: tensors[%d]: tensor %q is listed twice", i, e.Name)
		}
		seen[e.Name] = true
		if e.Name == ir.NameOutput && m.Config.TiedEmbed {
			return fmt.Errorf("plan: tensors[%d]: %q is tied to token_embd in this model; plan token_embd instead", i, e.Name)
		}
		if len(t.Shape) != 2 {
			return fmt.Errorf("plan: tensors[%d]: tensor %q has shape %v, expected a matrix", i, e.Name, t.Shape)
		}
		if e.Shape != nil && !slices.Equal(e.Shape, t.Shape) {
			return fmt.Errorf("plan: tensors[%d]: tensor %q has shape %v in the plan, %v in the model", i, e.Name, e.Shape, t.Shape)
		}
		if len(e.Parts) > 0 {
			if e.Bits != 0 || e.GroupSize != 0 || e.PerRowScale {
				return fmt.Errorf("plan: tensors[%d]: tensor %q has parts and also bits/group_size/per_row_scale of its own; set them per part", i, e.Name)
			}
			rows := 0
			for k := range e.Parts {
				pp := &e.Parts[k]
				if pp.Rows < 1 {
					return fmt.Errorf("plan: tensors[%d]: tensor %q: parts[%d].rows = %d, expected >= 1", i, e.Name, k, pp.Rows)
				}
				if !slices.Contains(ir.PaletteBits, pp.Bits) {
					return fmt.Errorf("plan: tensors[%d]: tensor %q: parts[%d].bits = %d, expected one of %v", i, e.Name, k, pp.Bits, ir.PaletteBits)
				}
				if pp.GroupSize < 1 || pp.GroupSize > pp.Rows {
					return fmt.Errorf("plan: tensors[%d]: tensor %q: parts[%d].group_size = %d, expected 1..%d (the part's rows)", i, e.Name, k, pp.GroupSize, pp.Rows)
				}
				if math.IsNaN(pp.Damage) {
					return fmt.Errorf("plan: tensors[%d]: tensor %q: parts[%d].predicted_damage is NaN", i, e.Name, k)
				}
				pp.Bytes = PalettizedBytes(pp.Rows, t.Cols(), pp.Bits, pp.GroupSize, pp.PerRowScale)
				rows += pp.Rows
			}
			if rows != t.Rows() {
				return fmt.Errorf("plan: tensors[%d]: tensor %q: parts cover %d rows, the tensor has %d", i, e.Name, rows, t.Rows())
			}
		} else {
			if !slices.Contains(ir.PaletteBits, e.Bits) {
				return fmt.Errorf("plan: tensors[%d]: tensor %q: bits = %d, expected one of %v", i, e.Name, e.Bits, ir.PaletteBits)
			}
			if e.GroupSize < 1 || e.GroupSize > t.Rows() {
				return fmt.Errorf("plan: tensors[%d]: tensor %q: group_size = %d, expected 1..%d (its rows)", i, e.Name, e.GroupSize, t.Rows())
			}
		}
		if math.IsNaN(e.Damage) {
			return fmt.Errorf("plan: tensors[%d]: tensor %q: predicted_damage is NaN", i, e.Name)
		}
		e.Shape = slices.Clone(t.Shape)
		e.Bytes = e.bytes()
		e.BPW = 8 * float64(e.Bytes) / float64(t.Elems())
		tw += int64(t.Elems())
		tb += 8 * e.Bytes
		dmg += e.Damage
	}
	switch p.Method {
	case "", "exact", "lloyd":
	default:
		return fmt.Errorf("plan: method %q, expected \"exact\" or \"lloyd\"", p.Method)
	}
	p.TotalWeights, p.TotalBits, p.PredictedDamage = tw, tb, dmg
	if tw > 0 {
		p.AchievedBPW = float64(tb) / float64(tw)
	}
	return nil
}

// finish fills in the totals, the option sets offered (from cands) and
// the bound and gap of an allocated plan whose Tensors, TotalBits and
// PredictedDamage are set.
func (p *Plan) finish(cands []TensorCandidates, weights int64, lower float64) {
	bitsSet, gsSet := map[int]bool{}, map[int]bool{}
	for _, tc := range cands {
		for _, o := range tc.Options {
			bitsSet[o.Bits] = true
			g := o.GroupSize
			if len(tc.Shape) > 0 && g == tc.Shape[0] {
				g = 0
			}
			gsSet[g] = true
		}
	}
	p.TotalWeights = weights
	p.AchievedBPW = float64(p.TotalBits) / float64(weights)
	for b := range bitsSet {
		p.CandidateBits = append(p.CandidateBits, b)
	}
	for g := range gsSet {
		p.CandidateGroupSizes = append(p.CandidateGroupSizes, g)
	}
	slices.Sort(p.CandidateBits)
	slices.Sort(p.CandidateGroupSizes)
	p.LowerBound = min(lower, p.PredictedDamage)
	p.Gap = p.PredictedDamage - p.LowerBound
	if p.PredictedDamage > 0 {
		p.RelGap = p.Gap / p.PredictedDamage
	}
}

// hullPoint is an option on a tensor's lower convex hull.
type hullPoint struct {
	opt  int // index into TensorCandidates.Options
	cost int64
	dmg  float64
}

// lowerHull returns the lower convex hull of the options in (cost, damage),
// from the cheapest (least damage among the cheapest) to the least damage,
// damage strictly decreasing.
func lowerHull(opts []Candidate) []hullPoint {
	idx := make([]int, len(opts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		oa, ob := opts[idx[a]], opts[idx[b]]
		if oa.CostBits != ob.CostBits {
			return oa.CostBits < ob.CostBits
		}
		return oa.Damage < ob.Damage
	})
	var h []hullPoint
	for _, i := range idx {
		p := hullPoint{i, opts[i].CostBits, opts[i].Damage}
		if len(h) > 0 && p.dmg >= h[len(h)-1].dmg {
			continue // costs at least as much, no less damage
		}
		for len(h) >= 2 {
			a, b := h[len(h)-2], h[len(h)-1]
			// drop b if it lies on or above the segment a -> p
			if (b.dmg-a.dmg)*float64(p.cost-a.cost) >= (p.dmg-a.dmg)*float64(b.cost-a.cost) {
				h = h[:len(h)-1]
			} else {
				break
			}
		}
		h = append(h, p)
	}
	return h
}

// Allocate chooses one option per tensor to minimise the total damage
// subject to total bits <= targetBPW * total weights (a multiple-choice
// knapsack). Method:
//
//  1. Lagrangian relaxation on each tensor's lower convex hull of
//     (bits, damage). Minimising damage + lambda * bits for a given lambda
//     picks a hull vertex per tensor; as lambda falls, tensors move along
//     their hulls at the hull slopes. Walking all hull segments in order of
//     decreasing slope (damage saved per bit) is the exact form of a
//     bisection on lambda: it visits every breakpoint. The walk stops at
//     the first segment that does not fit the budget; its slope is lambda*,
//     and the LP relaxation value there (current damage minus the leftover
//     budget times lambda*) is a lower bound on any feasible choice.
//  2. Greedy fix-up of the leftover budget: repeatedly make the single
//     change of one tensor's option (any option, hull or not) that lowers
//     the damage most while fitting the budget.
//
// The plan reports the bound and the gap. A target below the cheapest
// options is an error that states the least achievable bpw.
func Allocate(cands []TensorCandidates, targetBPW float64) (*Plan, error) {
	if len(cands) == 0 {
		return nil, errors.New("allocate: no tensors to palettize")
	}
	if !(targetBPW > 0) || math.IsInf(targetBPW, 0) {
		return nil, fmt.Errorf("allocate: target %v bpw, expected a positive number", targetBPW)
	}
	var weights, minBits int64
	hulls := make([][]hullPoint, len(cands))
	for i, tc := range cands {
		if len(tc.Options) == 0 {
			return nil, fmt.Errorf("allocate: tensor %q has no candidate options", tc.Name)
		}
		for j, o := range tc.Options {
			if math.IsNaN(o.Damage) || o.Damage < 0 || o.CostBits <= 0 {
				return nil, fmt.Errorf("allocate: tensor %q option %d: damage %v, cost %d bits; expected damage >= 0 and cost > 0", tc.Name, j, o.Damage, o.CostBits)
			}
		}
		if tc.Weights <= 0 {
			return nil, fmt.Errorf("allocate: tensor %q has %d weights", tc.Name, tc.Weights)
		}
		weights += tc.Weights
		hulls[i] = lowerHull(tc.Options)
		minBits += hulls[i][0].cost
	}
	budget := int64(math.Floor(targetBPW * float64(weights)))
	if minBits > budget {
		return nil, fmt.Errorf("allocate: target %.4g bpw is below the minimum achievable %.4f bpw with these options (%d bits for %d weights)",
			targetBPW, float64(minBits)/float64(weights), minBits, weights)
	}
	// 1. Lagrangian walk over hull segments.
	type seg struct {
		t, k  int // tensor, segment k: hull[k] -> hull[k+1]
		slope float64
	}
	var segs []seg
	for t, h := range hulls {
		for k := 0; k+1 < len(h); k++ {
			segs = append(segs, seg{t, k, (h[k].dmg - h[k+1].dmg) / float64(h[k+1].cost-h[k].cost)})
		}
	}
	sort.SliceStable(segs, func(a, b int) bool {
		if segs[a].slope != segs[b].slope {
			return segs[a].slope > segs[b].slope
		}
		if segs[a].t != segs[b].t {
			return segs[a].t < segs[b].t
		}
		return segs[a].k < segs[b].k
	})
	pos := make([]int, len(cands)) // hull position per tensor
	used := minBits
	var damage float64
	for t := range hulls {
		damage += hulls[t][0].dmg
	}
	lower, lambda := 0.0, 0.0
	stopped := false
	for _, s := range segs {
		h := hulls[s.t]
		if pos[s.t] != s.k {
			// Cannot happen on a convex hull (slopes fall along it and ties
			// are ordered by k); guard anyway.
			continue
		}
		dc := h[s.k+1].cost - h[s.k].cost
		if used+dc > budget {
			lambda = s.slope
			lower = damage - float64(budget-used)*s.slope
			stopped = true
			break
		}
		used += dc
		damage -= h[s.k].dmg - h[s.k+1].dmg
		pos[s.t]++
	}
	if !stopped {
		lower = damage
	}
	choice := make([]int, len(cands))
	for t := range cands {
		choice[t] = hulls[t][pos[t]].opt
	}
	// 2. Greedy fix-up with the leftover budget.
	for iter := 0; iter < 100*len(cands)+100; iter++ {
		bt, bo := -1, -1
		var bestGain float64
		for t, tc := range cands {
			cur := tc.Options[choice[t]]
			for o, c := range tc.Options {
				if used-cur.CostBits+c.CostBits > budget {
					continue
				}
				if g := cur.Damage - c.Damage; g > bestGain {
					bestGain, bt, bo = g, t, o
				}
			}
		}
		if bt < 0 {
			break
		}
		used += cands[bt].Options[bo].CostBits - cands[bt].Options[choice[bt]].CostBits
		choice[bt] = bo
	}
	p := &Plan{Version: PlanVersion, TargetBPW: targetBPW, Lambda: lambda}
	for t, tc := range cands {
		c := tc.Options[choice[t]]
		p.Tensors = append(p.Tensors, PlanEntry{Name: tc.Name, Shape: slices.Clone(tc.Shape), Bits: c.Bits, GroupSize: c.GroupSize,
			PerRowScale: c.PerRowScale, Damage: c.Damage, Bytes: c.Bytes, BPW: float64(c.CostBits) / float64(tc.Weights)})
		p.TotalBits += c.CostBits
		p.PredictedDamage += c.Damage
	}
	p.finish(cands, weights, lower)
	return p, nil
}
