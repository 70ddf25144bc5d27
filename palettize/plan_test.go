package palettize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
)

// synthCands builds candidates with realistic shape: damage falls roughly
// 4x per extra bit, scaled per tensor, with some noise, and exact costs.
func synthCands(rng *rand.Rand, nt int, bits []int) []TensorCandidates {
	var out []TensorCandidates
	for i := 0; i < nt; i++ {
		rows := 16 * (1 + rng.IntN(8))
		cols := 64 * (1 + rng.IntN(4))
		sens := math.Exp(2 * rng.NormFloat64())
		tc := TensorCandidates{Name: "t" + itoa(i), Shape: []int{rows, cols}, Weights: int64(rows * cols)}
		for _, b := range bits {
			by := PalettizedBytes(rows, cols, b, 0, false)
			d := sens * float64(rows*cols) * math.Pow(4, -float64(b)) * (1 + 0.3*rng.Float64())
			tc.Options = append(tc.Options, Candidate{Bits: b, GroupSize: rows, Bytes: by, CostBits: 8 * by, Damage: d})
		}
		out = append(out, tc)
	}
	return out
}

func bruteAllocate(cands []TensorCandidates, target float64) (best float64, ok bool) {
	var w int64
	for _, c := range cands {
		w += c.Weights
	}
	budget := int64(math.Floor(target * float64(w)))
	best = math.Inf(1)
	var rec func(i int, bits int64, d float64)
	rec = func(i int, bits int64, d float64) {
		if bits > budget {
			return
		}
		if i == len(cands) {
			if d < best {
				best = d
			}
			ok = true
			return
		}
		for _, o := range cands[i].Options {
			rec(i+1, bits+o.CostBits, d+o.Damage)
		}
	}
	rec(0, 0, 0)
	return best, ok
}

func TestAllocateBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for trial := 0; trial < 300; trial++ {
		nt := 1 + rng.IntN(6)
		cands := synthCands(rng, nt, []int{2, 3, 4})
		target := 2.2 + 2.5*rng.Float64()
		brute, feasible := bruteAllocate(cands, target)
		p, err := Allocate(cands, target)
		checkOptimum(t, trial, p, err, brute, feasible, target)
	}
}

// checkOptimum holds an allocation (p, err) to the brute-force optimum of
// its instance: an infeasible target is refused by name; otherwise the
// plan is within the target, not below the optimum, its lower bound not
// above it, and its distance from it within the reported gap. It reports
// whether the plan is there to look at further (the target was feasible).
func checkOptimum(t *testing.T, trial int, p *Plan, err error, brute float64, feasible bool, target float64) bool {
	t.Helper()
	if !feasible {
		if err == nil || !strings.Contains(err.Error(), "minimum achievable") {
			t.Fatalf("trial %d: infeasible target %.3f: err %v", trial, target, err)
		}
		return false
	}
	if err != nil {
		t.Fatalf("trial %d: %v", trial, err)
	}
	if p.AchievedBPW > target {
		t.Fatalf("trial %d: achieved %.4f > target %.4f", trial, p.AchievedBPW, target)
	}
	eps := 1e-9 * brute
	if p.PredictedDamage < brute-eps {
		t.Fatalf("trial %d: damage %g below the brute-force optimum %g", trial, p.PredictedDamage, brute)
	}
	if p.LowerBound > brute+eps {
		t.Fatalf("trial %d: lower bound %g above the optimum %g", trial, p.LowerBound, brute)
	}
	if p.PredictedDamage-brute > p.Gap+eps {
		t.Fatalf("trial %d: damage %g - optimum %g exceeds the reported gap %g", trial, p.PredictedDamage, brute, p.Gap)
	}
	return true
}

func TestAllocateBeatsHeuristics(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	bits := []int{1, 2, 3, 4, 6, 8}
	cands := synthCands(rng, 40, bits)
	var w int64
	for _, c := range cands {
		w += c.Weights
	}
	pick := func(choose func(i int) int) (float64, float64) {
		var d float64
		var b int64
		for i, c := range cands {
			o := c.Options[choose(i)]
			d += o.Damage
			b += o.CostBits
		}
		return d, float64(b) / float64(w)
	}
	optFor := func(i, bits int) int {
		for j, o := range cands[i].Options {
			if o.Bits == bits {
				return j
			}
		}
		t.Fatalf("no %d-bit option", bits)
		return -1
	}
	// Uniform bits.
	for _, b := range []int{2, 3, 4} {
		ud, ubpw := pick(func(i int) int { return optFor(i, b) })
		p, err := Allocate(cands, ubpw)
		if err != nil {
			t.Fatal(err)
		}
		if p.AchievedBPW > ubpw || p.PredictedDamage > ud {
			t.Fatalf("uniform %d-bit: damage %g at %.4f bpw, allocation %g at %.4f", b, ud, ubpw, p.PredictedDamage, p.AchievedBPW)
		}
		if ubpw-p.AchievedBPW > 0.02 {
			t.Fatalf("uniform %d-bit: achieved %.4f, more than 0.02 under target %.4f", b, p.AchievedBPW, ubpw)
		}
		t.Logf("uniform %d-bit %.3f bpw: damage %.4g; allocated %.4g (gap %.2e)", b, ubpw, ud, p.PredictedDamage, p.RelGap)
	}
	// "2-bit for the largest tensors first": sort by size, give 2 bits to
	// the largest half, 4 bits to the rest.
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	for a := range order {
		for b := a + 1; b < len(order); b++ {
			if cands[order[b]].Weights > cands[order[a]].Weights {
				order[a], order[b] = order[b], order[a]
			}
		}
	}
	large := map[int]bool{}
	for _, i := range order[:len(order)/2] {
		large[i] = true
	}
	hd, hbpw := pick(func(i int) int {
		if large[i] {
			return optFor(i, 2)
		}
		return optFor(i, 4)
	})
	p, err := Allocate(cands, hbpw)
	if err != nil {
		t.Fatal(err)
	}
	if p.PredictedDamage > hd {
		t.Fatalf("largest-first heuristic: %g, allocation %g", hd, p.PredictedDamage)
	}
}

func TestAllocateImpossible(t *testing.T) {
	cands := synthCands(rand.New(rand.NewPCG(1, 1)), 3, []int{2, 4})
	_, err := Allocate(cands, 0.5)
	if err == nil || !strings.Contains(err.Error(), "minimum achievable") {
		t.Fatalf("got %v", err)
	}
	if _, err := Allocate(nil, 4); err == nil {
		t.Fatal("no tensors: expected an error")
	}
	if _, err := Allocate(cands, math.NaN()); err == nil {
		t.Fatal("NaN target: expected an error")
	}
}

func TestLowerHull(t *testing.T) {
	opts := []Candidate{
		{CostBits: 10, Damage: 100},
		{CostBits: 20, Damage: 40},
		{CostBits: 30, Damage: 35}, // above the hull from 20 to 40
		{CostBits: 40, Damage: 10},
		{CostBits: 50, Damage: 10}, // no gain
		{CostBits: 10, Damage: 120},
	}
	h := lowerHull(opts)
	var got []int
	for _, p := range h {
		got = append(got, p.opt)
	}
	if len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 3 {
		t.Fatalf("hull %v", got)
	}
}

// TestStories260KEndToEnd palettizes the synthetic stories260K shape:
// candidates for every palettizable tensor, allocation at 3 bpw, apply,
// decode, and checks the plan's predictions against the applied model.
func TestStories260KEndToEnd(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	imp := map[string][]float32{}
	for _, name := range PalettizableNames(m) {
		if name == ir.NameTokenEmbd {
			continue
		}
		v := make([]float32, m.Tensors[name].Cols())
		for i := range v {
			v[i] = float32(rng.ExpFloat64())
		}
		imp[name] = v
	}
	start := time.Now()
	cands, err := Candidates(m, imp, CandidateOptions{Bits: []int{2, 3, 4, 6}, GroupSizes: []int{16, 64, 0}})
	if err != nil {
		t.Fatal(err)
	}
	candTime := time.Since(start)
	if len(cands) != 1+5*7 {
		t.Fatalf("%d tensors", len(cands))
	}
	p, err := Allocate(cands, 3)
	if err != nil {
		t.Fatal(err)
	}
	if p.AchievedBPW > 3 || p.AchievedBPW < 2.98 {
		t.Fatalf("achieved %.4f bpw for target 3", p.AchievedBPW)
	}
	p.Seed = 7
	// JSON round trip and validation.
	var buf bytes.Buffer
	if err := WritePlan(&buf, p); err != nil {
		t.Fatal(err)
	}
	q, err := ReadPlan(&buf, "plan.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Validate(m); err != nil {
		t.Fatal(err)
	}
	if q.TotalBits != p.TotalBits {
		t.Fatalf("validate recomputed %d bits, plan had %d", q.TotalBits, p.TotalBits)
	}
	start = time.Now()
	a, err := Apply(m, q, imp, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	applyTime := time.Since(start)
	t.Logf("synthetic stories260K: candidates %v, apply %v, %.4f bpw, damage %.4g, rel gap %.2e", candTime, applyTime, p.AchievedBPW, p.PredictedDamage, p.RelGap)
	var bits int64
	var damage float64
	for _, e := range q.Tensors {
		pt := a.Tensors[e.Name]
		if err := pt.Check(); err != nil {
			t.Fatal(err)
		}
		bits += 8 * pt.Bytes()
		orig := m.Tensors[e.Name].F32()
		dec := pt.F32()
		w := ImportanceFor(m, e.Name, imp)
		var d float64
		for i := range dec {
			x := float64(orig[i] - dec[i])
			if w != nil {
				d += float64(w[i%pt.Cols()]) * x * x
			} else {
				d += x * x
			}
		}
		if math.Abs(d-e.Damage) > 1e-6*e.Damage {
			t.Fatalf("%s: applied damage %g, predicted %g", e.Name, d, e.Damage)
		}
		damage += d
	}
	if bits != q.TotalBits {
		t.Fatalf("applied model holds %d bits, plan says %d", bits, q.TotalBits)
	}
	// Untouched tensors are shared, not copied.
	if a.Tensors[ir.Blk(0, ir.AttnNorm)] != m.Tensors[ir.Blk(0, ir.AttnNorm)] {
		t.Fatal("norm tensor was copied")
	}
	// Deterministic, whatever the parallelism.
	b, err := Apply(m, q, imp, ApplyOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q.Tensors {
		x, y := a.Tensors[e.Name], b.Tensors[e.Name]
		if !bytes.Equal(x.Data, y.Data) || !equalU16(x.Pal.LUT, y.Pal.LUT) {
			t.Fatalf("%s differs between runs", e.Name)
		}
	}
	// Damage table.
	tab := DamageTable(cands, 0)
	if c, ok := tab["blk.0.ffn_down"][2]; !ok || c.GroupSize != 64 || c.Damage <= tab["blk.0.ffn_down"][4].Damage {
		t.Fatalf("damage table entry %+v", tab["blk.0.ffn_down"])
	}
}

func TestPlanValidateErrors(t *testing.T) {
	m, _ := ir.Synthetic("stories260K", 1)
	good := PlanEntry{Name: "blk.0.attn_q", Bits: 4, GroupSize: 16}
	for _, c := range []struct {
		e    PlanEntry
		want string
	}{
		{PlanEntry{Name: "blk.9.attn_q", Bits: 4, GroupSize: 16}, "not in the model"},
		{PlanEntry{Name: "blk.0.attn_q", Bits: 5, GroupSize: 16}, "bits = 5"},
		{PlanEntry{Name: "blk.0.attn_q", Bits: 4, GroupSize: 65}, "group_size = 65"},
		{PlanEntry{Name: "blk.0.attn_q", Bits: 4, GroupSize: 0}, "group_size = 0"},
		{PlanEntry{Name: "blk.0.attn_norm", Bits: 4, GroupSize: 1}, "expected a matrix"},
		{PlanEntry{Name: "blk.0.attn_q", Shape: []int{64, 32}, Bits: 4, GroupSize: 16}, "shape"},
		// per-group parts
		{PlanEntry{Name: "blk.0.attn_q", Parts: []PlanPart{{Rows: 32, Bits: 4, GroupSize: 16}, {Rows: 16, Bits: 2, GroupSize: 16}}}, "parts cover 48 rows, the tensor has 64"},
		{PlanEntry{Name: "blk.0.attn_q", Parts: []PlanPart{{Rows: 32, Bits: 4, GroupSize: 16}, {Rows: 32, Bits: 5, GroupSize: 16}}}, "parts[1].bits = 5"},
		{PlanEntry{Name: "blk.0.attn_q", Parts: []PlanPart{{Rows: 32, Bits: 4, GroupSize: 33}, {Rows: 32, Bits: 2, GroupSize: 16}}}, "parts[0].group_size = 33"},
		{PlanEntry{Name: "blk.0.attn_q", Parts: []PlanPart{{Rows: 0, Bits: 4, GroupSize: 1}, {Rows: 64, Bits: 2, GroupSize: 16}}}, "parts[0].rows = 0"},
		{PlanEntry{Name: "blk.0.attn_q", Bits: 4, Parts: []PlanPart{{Rows: 64, Bits: 4, GroupSize: 16}}}, "set them per part"},
	} {
		p := &Plan{Version: PlanVersion, Tensors: []PlanEntry{c.e}}
		if err := p.Validate(m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want %q", c.e, err, c.want)
		}
	}
	p := &Plan{Version: PlanVersion, Tensors: []PlanEntry{good, good}}
	if err := p.Validate(m); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := ReadPlan(strings.NewReader(`{"version":1,"tensors":[],"bogus":1}`), "x.json"); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Fatalf("unknown field: %v", err)
	}
}
