package palettize

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// synthGroups builds tensors of nb 16-row blocks x 64 columns with
// per-tensor options (one LUT) and per-block options (16-row LUT groups),
// costs exactly as PalettizedBytes counts them, damages random but
// falling with bits.
func synthGroups(rng *rand.Rand, nt int) ([]TensorCandidates, []TensorBlocks) {
	var tcs []TensorCandidates
	var tbs []TensorBlocks
	bits := []int{2, 3, 4}
	for i := 0; i < nt; i++ {
		nb := 1 + rng.IntN(3)
		rows, cols := 16*nb, 64
		tc := TensorCandidates{Name: "t" + itoa(i), Shape: []int{rows, cols}, Weights: int64(rows * cols)}
		tb := TensorBlocks{Name: tc.Name, Shape: []int{rows, cols}, Block: 16}
		sens := make([]float64, nb)
		var total float64
		for k := range sens {
			sens[k] = math.Exp(2 * rng.NormFloat64())
			total += sens[k]
		}
		for _, b := range bits {
			by := PalettizedBytes(rows, cols, b, rows, false)
			f := math.Pow(4, -float64(b)) * 1024
			tc.Options = append(tc.Options, Candidate{Bits: b, GroupSize: rows, Bytes: by, CostBits: 8 * by, Damage: total * f * (1 + 0.3*rng.Float64())})
			o := BlockOption{Bits: b}
			for k := range nb {
				o.Damage = append(o.Damage, sens[k]*f*(0.8+0.3*rng.Float64()))
				o.CostBits = append(o.CostBits, 8*PalettizedBytes(16, cols, b, 16, false))
			}
			tb.Options = append(tb.Options, o)
		}
		tcs = append(tcs, tc)
		tbs = append(tbs, tb)
	}
	return tcs, tbs
}

// bruteGroups enumerates every mode and option of every tensor.
func bruteGroups(tcs []TensorCandidates, tbs []TensorBlocks, budget int64) (best float64, ok bool) {
	best = math.Inf(1)
	// each tensor's full list of (cost, damage) selections
	var per [][][2]float64
	for i, tc := range tcs {
		var sel [][2]float64
		for _, o := range tc.Options {
			sel = append(sel, [2]float64{float64(o.CostBits), o.Damage})
		}
		tb := tbs[i]
		var rec func(k int, c, d float64)
		rec = func(k int, c, d float64) {
			if k == tb.NumBlocks() {
				sel = append(sel, [2]float64{c, d})
				return
			}
			for _, o := range tb.Options {
				rec(k+1, c+float64(o.CostBits[k]), d+o.Damage[k])
			}
		}
		rec(0, 0, 0)
		per = append(per, sel)
	}
	var rec func(i int, c, d float64)
	rec = func(i int, c, d float64) {
		if c > float64(budget) {
			return
		}
		if i == len(per) {
			ok = true
			best = min(best, d)
			return
		}
		for _, s := range per[i] {
			rec(i+1, c+s[0], d+s[1])
		}
	}
	rec(0, 0, 0)
	return best, ok
}

// AllocateGroups against exhaustive search: never over the target, never
// below the optimum, its lower bound never above it, and its reported gap
// covers the distance to it.
func TestAllocateGroupsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	gaps := 0.0
	for trial := 0; trial < 300; trial++ {
		tcs, tbs := synthGroups(rng, 1+rng.IntN(3))
		target := 2.3 + 2.2*rng.Float64()
		var w int64
		for _, c := range tcs {
			w += c.Weights
		}
		brute, feasible := bruteGroups(tcs, tbs, int64(math.Floor(target*float64(w))))
		p, err := AllocateGroups(tcs, tbs, target)
		if !checkOptimum(t, trial, p, err, brute, feasible, target) {
			continue
		}
		gaps += (p.PredictedDamage - brute) / brute
		// the parts it reports add up
		for _, e := range p.Tensors {
			rows := 0
			var d float64
			for _, pp := range e.Parts {
				rows += pp.Rows
				d += pp.Damage
			}
			if len(e.Parts) > 0 && (rows != e.Shape[0] || math.Abs(d-e.Damage) > 1e-9*e.Damage) {
				t.Fatalf("trial %d: %s: parts cover %d rows with damage %g, entry %v / %g", trial, e.Name, rows, d, e.Shape, e.Damage)
			}
		}
	}
	if gaps/300 > 0.01 {
		t.Errorf("mean distance to the optimum %.2f%%, expected < 1%%", 100*gaps/300)
	}
}

// On the stories260K shape with random importance: per-group allocation
// does less predicted damage than per-tensor at the same target, Apply
// builds lutmix tensors whose measured damage and bytes are what the plan
// predicted, and it is deterministic.
func TestGroupsEndToEnd(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(51, 52))
	imp := map[string][]float32{}
	for _, name := range PalettizableNames(m) {
		v := make([]float32, m.Tensors[name].Cols())
		for i := range v {
			v[i] = float32(rng.ExpFloat64() * rng.ExpFloat64())
		}
		imp[name] = v
	}
	co := CandidateOptions{Bits: []int{2, 3, 4}, GroupSizes: []int{16, 32, 64, 0}, PerRowScale: []bool{false, true}}
	cands, err := Candidates(m, imp, co)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := GroupCandidates(m, imp, co, []int{16, 32})
	if err != nil {
		t.Fatal(err)
	}
	const target = 3.2
	pt, err := Allocate(cands, target)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := AllocateGroups(cands, blocks, target)
	if err != nil {
		t.Fatal(err)
	}
	if pg.AchievedBPW > target || pg.AchievedBPW < target-0.02 {
		t.Fatalf("achieved %.4f bpw for target %g", pg.AchievedBPW, target)
	}
	if pg.PredictedDamage >= pt.PredictedDamage {
		t.Fatalf("per-group damage %g, per-tensor %g: expected less", pg.PredictedDamage, pt.PredictedDamage)
	}
	nParts := 0
	for _, e := range pg.Tensors {
		if len(e.Parts) > 0 {
			nParts++
		}
	}
	if nParts == 0 {
		t.Fatal("no tensor got per-group bits")
	}
	t.Logf("predicted damage: per tensor %.4g, per group %.4g (%.1f%%), %d tensors split, gap %.2f%%", pt.PredictedDamage, pg.PredictedDamage,
		100*(pg.PredictedDamage/pt.PredictedDamage-1), nParts, 100*pg.RelGap)
	bits := pg.TotalBits
	if err := pg.Validate(m); err != nil {
		t.Fatal(err)
	}
	if pg.TotalBits != bits {
		t.Fatalf("Validate recounted %d bits, the allocation %d", pg.TotalBits, bits)
	}
	apply := func() (*ir.Model, map[string]Stats) {
		st := map[string]Stats{}
		out, err := Apply(m, pg, imp, ApplyOptions{Progress: func(_, _ int, name string, s Stats) { st[name] = s }})
		if err != nil {
			t.Fatal(err)
		}
		return out, st
	}
	a, sta := apply()
	b, _ := apply()
	var bytes int64
	for _, e := range pg.Tensors {
		ta, tb := a.Tensors[e.Name], b.Tensors[e.Name]
		if err := ta.Check(); err != nil {
			t.Fatal(err)
		}
		if (len(e.Parts) > 0) != (ta.Type == ir.LUTMIX) || len(ta.Parts) != len(e.Parts) {
			t.Fatalf("%s: planned %d parts, built %s with %d", e.Name, len(e.Parts), ir.Encodings[ta.Type].Name, len(ta.Parts))
		}
		for i, pp := range e.Parts {
			p := ta.Parts[i]
			if p.Rows() != pp.Rows || ir.Encodings[p.Type].Bits != pp.Bits || p.Pal.GroupSize != pp.GroupSize || (p.Pal.Scales != nil) != pp.PerRowScale {
				t.Fatalf("%s part %d: planned %+v, built %v %s G%d", e.Name, i, pp, p.Shape, ir.Encodings[p.Type].Name, p.Pal.GroupSize)
			}
			if !slices.Equal(p.Data, tb.Parts[i].Data) || !slices.Equal(p.Pal.LUT, tb.Parts[i].Pal.LUT) {
				t.Fatalf("%s part %d differs between two runs", e.Name, i)
			}
		}
		if ta.Bytes() != e.Bytes {
			t.Fatalf("%s: %d bytes, planned %d", e.Name, ta.Bytes(), e.Bytes)
		}
		bytes += ta.Bytes()
		if d := sta[e.Name].Damage; math.Abs(d-e.Damage) > 1e-9*e.Damage {
			t.Fatalf("%s: measured damage %.12g, predicted %.12g", e.Name, d, e.Damage)
		}
		// rows decode the same through the parts as through their own tensors
		row := make([]float32, ta.Cols())
		r0 := 0
		for _, p := range ta.Parts {
			want := make([]float32, ta.Cols())
			p.DecodeRow(p.Rows()-1, want)
			ta.DecodeRow(r0+p.Rows()-1, row)
			if !slices.Equal(row, want) {
				t.Fatalf("%s: row %d decodes differently through the lutmix tensor", e.Name, r0+p.Rows()-1)
			}
			r0 += p.Rows()
		}
	}
	if 8*bytes != pg.TotalBits {
		t.Fatalf("built %d bits, plan %d", 8*bytes, pg.TotalBits)
	}
}

func TestAllocateGroupsErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	tcs, tbs := synthGroups(rng, 2)
	if _, err := AllocateGroups(tcs, tbs, 0.5); err == nil || !strings.Contains(err.Error(), "minimum achievable") {
		t.Fatalf("impossible target: %v", err)
	}
	bad := slices.Clone(tbs)
	bad[0].Name = "nope"
	if _, err := AllocateGroups(tcs, bad, 3); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown tensor: %v", err)
	}
	bad = slices.Clone(tbs)
	bad[1].Options = slices.Clone(bad[1].Options)
	bad[1].Options[0].Damage = bad[1].Options[0].Damage[:0]
	if _, err := AllocateGroups(tcs, bad, 3); err == nil || !strings.Contains(err.Error(), "expected") {
		t.Fatalf("short damage list: %v", err)
	}
}

// The per-tensor options AddBlockOptions derives from block damages are
// exactly the ones Candidates measures itself (same damage bits, bytes
// and order).
func TestAddBlockOptionsMatchesCandidates(t *testing.T) {
	m, err := ir.Synthetic("stories260K", 3)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"blk.0.attn_k", "blk.1.ffn_up", ir.NameTokenEmbd}
	co := CandidateOptions{Bits: []int{2, 4}, GroupSizes: []int{16, 32, 0}, PerRowScale: []bool{false, true}, Tensors: names}
	want, err := Candidates(m, nil, co)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := GroupCandidates(m, nil, co, []int{16, 32})
	if err != nil {
		t.Fatal(err)
	}
	co.GroupSizes = []int{0}
	got, err := Candidates(m, nil, co)
	if err != nil {
		t.Fatal(err)
	}
	AddBlockOptions(got, blocks)
	for i := range want {
		if len(got[i].Options) != len(want[i].Options) {
			t.Fatalf("%s: %d options, Candidates gives %d", want[i].Name, len(got[i].Options), len(want[i].Options))
		}
		for j, w := range want[i].Options {
			g := got[i].Options[j]
			if g.Bits != w.Bits || g.GroupSize != w.GroupSize || g.PerRowScale != w.PerRowScale || g.Damage != w.Damage || g.CostBits != w.CostBits {
				t.Fatalf("%s option %d: %+v, Candidates gives %+v", want[i].Name, j, g, w)
			}
		}
	}
}
