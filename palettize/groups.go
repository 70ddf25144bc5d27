package palettize

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// Per-group bit allocation (compile --granularity group).
//
// A tensor's rows are cut into blocks of Block rows (the last one may be
// shorter); each block is one LUT group and gets its own index width and
// row-scale choice. The allocator may instead keep the tensor whole (its
// per-tensor options, any group size). Consecutive blocks with the same
// choice become one part of an ir.LUTMIX tensor. Blocks are independent
// (a group's LUT, rounding and error feedback see only its own rows), so
// the damage of a block is measured once per option on the whole tensor
// (GroupDamage) and is exactly what the block costs in any part.

// TensorBlocks holds, for one tensor and one block size, the damage and
// cost of every block under every option.
type TensorBlocks struct {
	Name    string        `json:"name"`
	Shape   []int         `json:"shape"`
	Block   int           `json:"block"` // rows per block (= LUT group size)
	Options []BlockOption `json:"options"`
}

// BlockOption is one (bits, row scale) choice, priced per block.
type BlockOption struct {
	Bits        int       `json:"bits"`
	PerRowScale bool      `json:"per_row_scale"`
	Damage      []float64 `json:"damage"`    // per block
	SSE         []float64 `json:"sse"`       // per block: plain squared error
	CostBits    []int64   `json:"cost_bits"` // per block: 8 * PalettizedBytes(block rows, cols, Bits, block rows, PerRowScale)
}

// AddBlockOptions adds to each tensor's per-tensor options the ones its
// blocks already measured: a tensor with one LUT per Block rows costs what
// its blocks cost (groups are independent), so Candidates need not
// cluster those group sizes again. The damage is the blocks' sum in block
// order, which is EstimateDamage's sum, so the options are the same
// values Candidates would give. Options a tensor already has (same bits,
// resolved group size and scale) are kept; Options are re-sorted as
// Candidates sorts them.
func AddBlockOptions(cands []TensorCandidates, blocks []TensorBlocks) {
	idx := map[string]int{}
	for i, tc := range cands {
		idx[tc.Name] = i
	}
	for _, tb := range blocks {
		i, ok := idx[tb.Name]
		if !ok {
			continue
		}
		tc := &cands[i]
		rows, cols := tb.Shape[0], tb.Shape[1]
		g := min(tb.Block, rows)
		for _, o := range tb.Options {
			if slices.ContainsFunc(tc.Options, func(c Candidate) bool {
				return c.Bits == o.Bits && c.GroupSize == g && c.PerRowScale == o.PerRowScale
			}) {
				continue
			}
			var d, sse float64
			for k := range o.Damage {
				d += o.Damage[k]
				sse += o.SSE[k]
			}
			by := PalettizedBytes(rows, cols, o.Bits, g, o.PerRowScale)
			tc.Options = append(tc.Options, Candidate{Bits: o.Bits, GroupSize: g, PerRowScale: o.PerRowScale, Damage: d,
				Bytes: by, CostBits: 8 * by, MSE: sse / float64(rows*cols), Elems: int64(rows * cols)})
		}
		sortOptions(tc.Options)
	}
}

// NumBlocks is the number of blocks of tb's tensor.
func (tb *TensorBlocks) NumBlocks() int { return (tb.Shape[0] + tb.Block - 1) / tb.Block }

// GroupCandidates measures, for every tensor of opt.Tensors (nil: all
// palettizable ones) and every block size, the damage of each block under
// every bits x scale option of opt. GroupSizes and the sampling options of
// opt are ignored (every group is clustered: on a large model this costs a
// full palettization pass per option and block size). Block sizes larger
// than a tensor's rows are skipped for it.
func GroupCandidates(m *ir.Model, imp map[string][]float32, opt CandidateOptions, blocks []int) ([]TensorBlocks, error) {
	for _, b := range blocks {
		if b < 1 {
			return nil, fmt.Errorf("palettize: block size %d, expected >= 1 rows", b)
		}
	}
	bits, scales, names, tw, err := opt.resolve(m, imp)
	if err != nil {
		return nil, err
	}
	var out []TensorBlocks
	type job struct{ tb, o int }
	var jobs []job
	for _, name := range names {
		t, err := m.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("palettize: %w", err)
		}
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("palettize: tensor %q: shape %v, expected a matrix", name, t.Shape)
		}
		for _, b := range blocks {
			if b > t.Rows() {
				continue
			}
			tb := TensorBlocks{Name: name, Shape: slices.Clone(t.Shape), Block: b}
			for _, nb := range bits {
				for _, s := range scales {
					tb.Options = append(tb.Options, BlockOption{Bits: nb, PerRowScale: s})
					jobs = append(jobs, job{len(out), len(tb.Options) - 1})
				}
			}
			out = append(out, tb)
		}
	}
	var mu sync.Mutex
	err = runJobs(len(jobs), opt.Workers, opt.Progress, func(i int) error {
		jb := jobs[i]
		tb := &out[jb.tb]
		bo := &tb.Options[jb.o]
		o := Options{Bits: bo.Bits, GroupSize: tb.Block, PerRowScale: bo.PerRowScale,
			Method: opt.Method, Seed: opt.Seed, MaxBins: opt.MaxBins, FastBins: opt.FastBins, Workers: 1, RefitLUT: opt.RefitLUT}
		var d, sse []float64
		err := tw.fill(tb.Name, &o)
		if err == nil {
			d, sse, err = GroupDamage(m.Tensors[tb.Name], o)
		}
		rows, cols := tb.Shape[0], tb.Shape[1]
		cost := make([]int64, tb.NumBlocks())
		for k := range cost {
			br := min(tb.Block, rows-k*tb.Block)
			cost[k] = 8 * PalettizedBytes(br, cols, bo.Bits, br, bo.PerRowScale)
		}
		mu.Lock()
		bo.Damage, bo.SSE, bo.CostBits = d, sse, cost
		mu.Unlock()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// choice is one priced option of an allocation item.
type choice struct {
	cost int64
	dmg  float64
}

// allocMode is one way to encode a tensor: one item per block (or one
// item for the whole tensor in mode 0), each choosing one option.
type allocMode struct {
	blocks *TensorBlocks // nil: the per-tensor options
	items  [][]choice
}

// AllocateGroups is Allocate with per-group choices: each tensor is either
// encoded whole (one of its cands options, mode "tensor") or cut into the
// blocks of one of its TensorBlocks, each block with its own bits and
// scale choice. It minimises the total damage subject to total bits <=
// targetBPW * total weights by Lagrangian relaxation (a bisection on the
// price per bit lambda; for a given lambda each tensor takes the mode and
// options that minimise damage + lambda * bits) and a greedy fix-up of the
// leftover budget. The plan's LowerBound is the Lagrangian dual bound
// max over the lambdas tried of (sum of minima - lambda * budget): no
// choice of the same options within the budget does less damage.
//
// Costs are counted per block; a part of several blocks packs its indices
// in one stream, which can only be smaller (the 16-byte padding of each
// block but the last disappears), so the plan never exceeds the target.
func AllocateGroups(cands []TensorCandidates, blocks []TensorBlocks, targetBPW float64) (*Plan, error) {
	if len(cands) == 0 {
		return nil, errors.New("allocate: no tensors to palettize")
	}
	if !(targetBPW > 0) || math.IsInf(targetBPW, 0) {
		return nil, fmt.Errorf("allocate: target %v bpw, expected a positive number", targetBPW)
	}
	byName := map[string]int{}
	modes := make([][]allocMode, len(cands))
	var weights int64
	for i, tc := range cands {
		if len(tc.Options) == 0 {
			return nil, fmt.Errorf("allocate: tensor %q has no candidate options", tc.Name)
		}
		if tc.Weights <= 0 {
			return nil, fmt.Errorf("allocate: tensor %q has %d weights", tc.Name, tc.Weights)
		}
		byName[tc.Name] = i
		weights += tc.Weights
		it := make([]choice, len(tc.Options))
		for j, o := range tc.Options {
			if math.IsNaN(o.Damage) || o.Damage < 0 || o.CostBits <= 0 {
				return nil, fmt.Errorf("allocate: tensor %q option %d: damage %v, cost %d bits; expected damage >= 0 and cost > 0", tc.Name, j, o.Damage, o.CostBits)
			}
			it[j] = choice{o.CostBits, o.Damage}
		}
		modes[i] = []allocMode{{items: [][]choice{it}}}
	}
	for bi := range blocks {
		tb := &blocks[bi]
		i, ok := byName[tb.Name]
		if !ok {
			return nil, fmt.Errorf("allocate: block options for tensor %q, which has no per-tensor options", tb.Name)
		}
		if !slices.Equal(tb.Shape, cands[i].Shape) || tb.Block < 1 || len(tb.Options) == 0 {
			return nil, fmt.Errorf("allocate: tensor %q: block options of shape %v, block %d, %d options do not fit the tensor (shape %v)", tb.Name, tb.Shape, tb.Block, len(tb.Options), cands[i].Shape)
		}
		nb := tb.NumBlocks()
		items := make([][]choice, nb)
		for k := range items {
			items[k] = make([]choice, len(tb.Options))
		}
		for j, o := range tb.Options {
			if len(o.Damage) != nb || len(o.CostBits) != nb {
				return nil, fmt.Errorf("allocate: tensor %q block %d option %d: %d damages and %d costs, expected %d blocks", tb.Name, tb.Block, j, len(o.Damage), len(o.CostBits), nb)
			}
			for k := range nb {
				if math.IsNaN(o.Damage[k]) || o.Damage[k] < 0 || o.CostBits[k] <= 0 {
					return nil, fmt.Errorf("allocate: tensor %q block %d option %d, block %d: damage %v, cost %d bits; expected damage >= 0 and cost > 0", tb.Name, tb.Block, j, k, o.Damage[k], o.CostBits[k])
				}
				items[k][j] = choice{o.CostBits[k], o.Damage[k]}
			}
		}
		modes[i] = append(modes[i], allocMode{blocks: tb, items: items})
	}
	budget := int64(math.Floor(targetBPW * float64(weights)))

	// sel is a full selection: per tensor a mode and one option per item.
	type sel struct {
		mode []int
		opt  [][]int
		cost int64
		dmg  float64
		lag  float64 // sum of the minima of damage + lambda * cost
	}
	solve := func(lambda float64) sel {
		s := sel{mode: make([]int, len(cands)), opt: make([][]int, len(cands))}
		for t, ms := range modes {
			best := math.Inf(1)
			for mi, md := range ms {
				var v float64
				pick := make([]int, len(md.items))
				for k, it := range md.items {
					bv := math.Inf(1)
					for j, c := range it {
						if x := c.dmg + lambda*float64(c.cost); x < bv || (x == bv && c.cost < it[pick[k]].cost) {
							bv, pick[k] = x, j
						}
					}
					v += bv
				}
				if v < best {
					best, s.mode[t], s.opt[t] = v, mi, pick
				}
			}
			s.lag += best
			for k, j := range s.opt[t] {
				c := ms[s.mode[t]].items[k][j]
				s.cost += c.cost
				s.dmg += c.dmg
			}
		}
		return s
	}
	// The cheapest selection (lambda -> infinity: least cost, then least damage).
	var minBits int64
	for _, ms := range modes {
		mb := int64(math.MaxInt64)
		for _, md := range ms {
			var c int64
			for _, it := range md.items {
				ic := it[0].cost
				for _, x := range it {
					ic = min(ic, x.cost)
				}
				c += ic
			}
			mb = min(mb, c)
		}
		minBits += mb
	}
	if minBits > budget {
		return nil, fmt.Errorf("allocate: target %.4g bpw is below the minimum achievable %.4f bpw with these options (%d bits for %d weights)",
			targetBPW, float64(minBits)/float64(weights), minBits, weights)
	}
	lower := 0.0
	bound := func(s sel, lambda float64) {
		lower = max(lower, s.lag-lambda*float64(budget))
	}
	var best sel
	bestLambda := 0.0
	if s := solve(0); s.cost <= budget {
		best = s
		lower = s.dmg
	} else {
		lo, hi := 0.0, 1e-12
		var shi sel
		for {
			shi = solve(hi)
			bound(shi, hi)
			if shi.cost <= budget {
				break
			}
			lo, hi = hi, hi*4
			if hi > 1e30 {
				return nil, errors.New("allocate: no feasible price per bit found (damages out of range?)")
			}
		}
		for iter := 0; iter < 64 && hi-lo > 1e-12*hi; iter++ {
			mid := hi / 2
			if lo > 0 {
				mid = math.Sqrt(lo * hi) // bisection in log(lambda)
			}
			s := solve(mid)
			bound(s, mid)
			if s.cost <= budget {
				hi, shi = mid, s
			} else {
				lo = mid
			}
		}
		best, bestLambda = shi, hi
	}
	// Greedy fix-up of the leftover budget inside each tensor's mode.
	used := best.cost
	for iter := 0; iter < 4000; iter++ {
		bt, bk, bj := -1, -1, -1
		var gain float64
		for t := range modes {
			md := modes[t][best.mode[t]]
			for k, it := range md.items {
				cur := it[best.opt[t][k]]
				for j, c := range it {
					if used-cur.cost+c.cost > budget {
						continue
					}
					if g := cur.dmg - c.dmg; g > gain {
						gain, bt, bk, bj = g, t, k, j
					}
				}
			}
		}
		if bt < 0 {
			break
		}
		it := modes[bt][best.mode[bt]].items[bk]
		used += it[bj].cost - it[best.opt[bt][bk]].cost
		best.dmg -= gain
		best.opt[bt][bk] = bj
	}

	p := &Plan{Version: PlanVersion, TargetBPW: targetBPW, Lambda: bestLambda, Granularity: "group"}
	for t, tc := range cands {
		md := modes[t][best.mode[t]]
		var e PlanEntry
		if md.blocks == nil {
			c := tc.Options[best.opt[t][0]]
			e = PlanEntry{Name: tc.Name, Shape: slices.Clone(tc.Shape), Bits: c.Bits, GroupSize: c.GroupSize, PerRowScale: c.PerRowScale, Damage: c.Damage}
		} else {
			e = blockEntry(md.blocks, best.opt[t])
		}
		e.Bytes = e.bytes()
		e.BPW = 8 * float64(e.Bytes) / float64(tc.Weights)
		p.Tensors = append(p.Tensors, e)
		p.TotalBits += 8 * e.Bytes
		p.PredictedDamage += e.Damage
	}
	for _, tb := range blocks {
		if !slices.Contains(p.BlockSizes, tb.Block) {
			p.BlockSizes = append(p.BlockSizes, tb.Block)
		}
	}
	slices.Sort(p.BlockSizes)
	p.finish(cands, weights, lower)
	return p, nil
}

// blockEntry turns per-block choices into a plan entry: runs of blocks
// with the same bits and scale become parts; a single run is a plain
// entry with the block as its group size.
func blockEntry(tb *TensorBlocks, opt []int) PlanEntry {
	rows, cols := tb.Shape[0], tb.Shape[1]
	e := PlanEntry{Name: tb.Name, Shape: slices.Clone(tb.Shape)}
	for k, j := range opt {
		o := tb.Options[j]
		br := min(tb.Block, rows-k*tb.Block)
		n := len(e.Parts)
		if n > 0 && e.Parts[n-1].Bits == o.Bits && e.Parts[n-1].PerRowScale == o.PerRowScale {
			e.Parts[n-1].Rows += br
			e.Parts[n-1].Damage += o.Damage[k]
		} else {
			e.Parts = append(e.Parts, PlanPart{Rows: br, Bits: o.Bits, GroupSize: tb.Block, PerRowScale: o.PerRowScale, Damage: o.Damage[k]})
		}
		e.Damage += o.Damage[k]
	}
	for i := range e.Parts {
		pp := &e.Parts[i]
		pp.GroupSize = min(pp.GroupSize, pp.Rows)
		pp.Bytes = PalettizedBytes(pp.Rows, cols, pp.Bits, pp.GroupSize, pp.PerRowScale)
	}
	if len(e.Parts) == 1 {
		pp := e.Parts[0]
		e.Bits, e.GroupSize, e.PerRowScale, e.Parts = pp.Bits, pp.GroupSize, pp.PerRowScale, nil
	}
	return e
}
