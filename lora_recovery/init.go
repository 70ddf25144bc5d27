package lorarecovery

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/squeeze-ml/squeeze/ir"
)

// InitFromResidual returns adapter matrices A (rank x in) and B (out x rank)
// such that scale * B A is the best rank-r approximation of the compression
// residual R = W - Wq in the importance-weighted norm
// ||(R - scale B A) D||_F, D = diag(sqrt(importance)): with the SVD
// R D = U S V^T, B = U_r S_r^(1/2) / sqrt(scale) and
// A = S_r^(1/2) V_r^T D^-1 / sqrt(scale).
//
// W and Wq are row-major (out x in). importance (len in, >= 0) is the
// calibration importance of each input channel (e.g. mean x_i^2); nil means
// uniform. Channels with zero importance are given a small floor (1e-6 of
// the mean importance) so D stays invertible; their columns are then barely
// fitted, which is what their weight asks for. A rank above min(out, in)
// is an error.
func InitFromResidual(W, Wq []float32, out, in, rank int, importance []float32, scale float32) (A, B []float32, err error) {
	if len(W) != out*in || len(Wq) != out*in {
		return nil, nil, fmt.Errorf("lora init: weights have %d and %d elements, expected %d x %d = %d", len(W), len(Wq), out, in, out*in)
	}
	if rank < 1 || rank > min(out, in) {
		return nil, nil, fmt.Errorf("lora init: rank %d outside 1..%d for a %d x %d weight", rank, min(out, in), out, in)
	}
	if !(scale > 0) {
		return nil, nil, fmt.Errorf("lora init: scale %v, expected > 0", scale)
	}
	d, err := channelWeights(importance, in)
	if err != nil {
		return nil, nil, err
	}
	M := mat.NewDense(out, in, nil)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			M.Set(o, i, (float64(W[o*in+i])-float64(Wq[o*in+i]))*d[i])
		}
	}
	var svd mat.SVD
	if !svd.Factorize(M, mat.SVDThin) {
		return nil, nil, fmt.Errorf("lora init: SVD of the %d x %d residual did not converge", out, in)
	}
	s := svd.Values(nil)
	var U, V mat.Dense
	svd.UTo(&U)
	svd.VTo(&V)
	A = make([]float32, rank*in)
	B = make([]float32, out*rank)
	is := 1 / math.Sqrt(float64(scale))
	for k := 0; k < rank; k++ {
		r := math.Sqrt(s[k]) * is
		for o := 0; o < out; o++ {
			B[o*rank+k] = float32(U.At(o, k) * r)
		}
		for i := 0; i < in; i++ {
			A[k*in+i] = float32(r * V.At(i, k) / d[i])
		}
	}
	return A, B, nil
}

// channelWeights returns sqrt(importance) with a floor for zero entries.
func channelWeights(importance []float32, in int) ([]float64, error) {
	d := make([]float64, in)
	if importance == nil {
		for i := range d {
			d[i] = 1
		}
		return d, nil
	}
	if len(importance) != in {
		return nil, fmt.Errorf("lora init: importance has %d entries, expected %d (one per input channel)", len(importance), in)
	}
	var mean float64
	for i, v := range importance {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return nil, fmt.Errorf("lora init: importance[%d] = %v, expected a finite value >= 0", i, v)
		}
		mean += float64(v)
	}
	mean /= float64(in)
	floor := 1e-6 * mean
	if floor == 0 {
		floor = 1
	}
	for i, v := range importance {
		d[i] = math.Sqrt(math.Max(float64(v), floor))
	}
	return d, nil
}

// WeightedResidualError is ||(W - Wq - scale B A) D||_F^2 / ||(W - Wq) D||_F^2
// with D = diag(sqrt(importance)) (nil importance: uniform), the fraction
// of the weighted residual an adapter leaves unexplained.
func WeightedResidualError(W, Wq, A, B []float32, out, in, rank int, importance []float32, scale float32) (float64, error) {
	d, err := channelWeights(importance, in)
	if err != nil {
		return 0, err
	}
	var num, den float64
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			var ba float64
			for k := 0; k < rank; k++ {
				ba += float64(B[o*rank+k]) * float64(A[k*in+i])
			}
			r := float64(W[o*in+i]) - float64(Wq[o*in+i])
			e := (r - float64(scale)*ba) * d[i]
			num += e * e
			den += r * d[i] * r * d[i]
		}
	}
	if den == 0 {
		return 0, nil
	}
	return num / den, nil
}

// target is one adapted linear: layer and kind index (ir.LinearKinds
// order), and its adapter's rank (set by setRanks).
type target struct{ layer, kind, rank int }

func (t target) name() string { return ir.Blk(t.layer, ir.LinearKinds[t.kind]) }

// resolveTargets turns target names into (layer, kind) pairs in canonical
// order. A name is a kind ("attn_q": every layer) or a full tensor name
// ("blk.3.attn_q"). Empty means every linear of every layer.
func resolveTargets(c ir.Config, names []string) ([]target, error) {
	kindIdx := map[string]int{}
	for k, s := range ir.LinearKinds {
		kindIdx[s] = k
	}
	set := make([]bool, c.Layers*nKinds)
	if len(names) == 0 {
		for i := range set {
			set[i] = true
		}
	}
	for _, n := range names {
		if k, ok := kindIdx[n]; ok {
			for l := 0; l < c.Layers; l++ {
				set[l*nKinds+k] = true
			}
			continue
		}
		rest, ok := strings.CutPrefix(n, "blk.")
		ls, kind, ok2 := strings.Cut(rest, ".")
		l, err := strconv.Atoi(ls)
		k, ok3 := kindIdx[kind]
		if !ok || !ok2 || err != nil || !ok3 {
			return nil, fmt.Errorf("lora: target %q is not a linear weight kind (%s) or a name like \"blk.0.attn_q\"", n, strings.Join(ir.LinearKinds, ", "))
		}
		if l < 0 || l >= c.Layers {
			return nil, fmt.Errorf("lora: target %q: layer %d outside 0..%d", n, l, c.Layers-1)
		}
		set[l*nKinds+k] = true
	}
	var ts []target
	for i, on := range set {
		if on {
			ts = append(ts, target{layer: i / nKinds, kind: i % nKinds})
		}
	}
	return ts, nil
}

// setRanks gives every target rank def unless ranks names it (a full
// tensor name such as "blk.4.ffn_down" wins over a kind such as
// "ffn_down"), and checks each rank against the target's shape. A ranks
// key that names no target is an error, so a typo is not silently
// ignored. It returns the largest rank.
func setRanks(c ir.Config, ts []target, def int, ranks map[string]int, who string) (int, error) {
	used := map[string]bool{}
	hi := 0
	for i := range ts {
		t := &ts[i]
		t.rank = def
		if r, key, ok := GivenRank(ranks, t.name()); ok {
			t.rank, used[key] = r, true
		}
		if out, in := linShape(c, t.kind); t.rank < 1 || t.rank > min(out, in) {
			return 0, fmt.Errorf("%s: rank %d of target %q outside 1..min(out, in) = %d", who, t.rank, t.name(), min(out, in))
		}
		hi = max(hi, t.rank)
	}
	for _, k := range slices.Sorted(maps.Keys(ranks)) {
		if !used[k] {
			return 0, fmt.Errorf("%s: a rank is given for %q, which is not one of the adapted linears", who, k)
		}
	}
	return hi, nil
}

// GivenRank returns the rank that ranks (as Options.Ranks) gives the
// tensor name ("blk.L.kind"): its own entry, else its kind's; key is the
// entry used.
func GivenRank(ranks map[string]int, name string) (rank int, key string, ok bool) {
	if r, ok := ranks[name]; ok {
		return r, name, true
	}
	if _, kind, ok := strings.Cut(strings.TrimPrefix(name, "blk."), "."); ok {
		if r, ok := ranks[kind]; ok {
			return r, kind, true
		}
	}
	return 0, "", false
}

// RankForBudget returns the largest rank <= maxRank whose float16 adapters
// (2 bytes x rank x (in + out) per target) plus overhead(rank) bytes (what
// storing a set of that rank costs beyond its matrices, e.g. manifest
// entries; nil = 0) fit in budgetBytes, or an error when not even rank 1
// fits. targets are as in Options.Targets; targets that ranks names (as
// Options.Ranks) keep their given rank, and their bytes count against the
// budget first. When ranks covers every target, the result is maxRank if
// the set fits, else an error.
func RankForBudget(m *ir.Model, targets []string, ranks map[string]int, budgetBytes int64, maxRank int, overhead func(rank int) int64) (int, error) {
	ts, err := resolveTargets(m.Config, targets)
	if err != nil {
		return 0, err
	}
	if maxRank < 1 {
		return 0, fmt.Errorf("lora: requested rank %d, expected >= 1", maxRank)
	}
	if overhead == nil {
		overhead = func(int) int64 { return 0 }
	}
	// (validates the given ranks; the others' rank 1 is not used)
	if _, err := setRanks(m.Config, ts, 1, ranks, "lora"); err != nil {
		return 0, err
	}
	var perRank, fixed int64
	for _, t := range ts {
		out, in := linShape(m.Config, t.kind)
		if _, _, given := GivenRank(ranks, t.name()); given {
			fixed += 2 * int64(t.rank) * int64(in+out)
		} else {
			perRank += 2 * int64(in+out)
		}
	}
	if perRank == 0 {
		if fixed+overhead(maxRank) > budgetBytes {
			return 0, fmt.Errorf("lora: budget of %d bytes does not fit the given ranks (%d bytes and %d of overhead)", budgetBytes, fixed, overhead(maxRank))
		}
		return maxRank, nil
	}
	r := min(max(budgetBytes-fixed, 0)/perRank, int64(maxRank))
	for r >= 1 && fixed+r*perRank+overhead(int(r)) > budgetBytes {
		r--
	}
	if r < 1 {
		return 0, fmt.Errorf("lora: budget of %d bytes does not fit rank-1 adapters on %d targets (%d bytes, %d for the given ranks and %d of overhead)",
			budgetBytes, len(ts), perRank, fixed, overhead(1))
	}
	return int(r), nil
}

// TargetNames returns the tensor names ("blk.L.kind") the targets resolve
// to on a model of config c, in canonical order. targets are as in
// Options.Targets.
func TargetNames(c ir.Config, targets []string) ([]string, error) {
	ts, err := resolveTargets(c, targets)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.name()
	}
	return names, nil
}
