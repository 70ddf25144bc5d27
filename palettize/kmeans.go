package palettize

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// This file holds the weighted 1-D k-means solvers. All of them minimise
//
//	cost = sum_i w_i (x_i - c(x_i))^2
//
// over k centers c_1 <= ... <= c_k, where c(x_i) is the center x_i is
// assigned to. Conventions shared by every solver:
//
//   - Weights that are negative, NaN or +Inf count as 0. Points of weight 0 do not
//     move the centers; they are assigned to the nearest center. If every
//     weight is 0 the solvers use uniform weights (1 per point) instead, so
//     an all-zero importance still gives a sane LUT; the returned cost then
//     uses those uniform weights.
//   - centers are sorted ascending and are distinct; there are
//     min(k, number of distinct values) of them (callers that need exactly
//     k entries, such as a LUT, pad them).
//   - assign[i] indexes centers; ties go to the lower center.
//   - n = 0 or k <= 0 gives nil centers, an empty assignment and cost 0.

// item is one point (or one histogram bin) of the DP: its total weight and
// the weighted first and second moments of the values it holds, with the
// values shifted by a common offset to limit cancellation.
type item struct{ w, wx, wx2 float64 }

// prep cleans the weights: it returns the effective weight of each point
// (negative and NaN clamped to 0, all-zero replaced by uniform).
func prep(x, w []float64) []float64 {
	ew := make([]float64, len(x))
	var tot float64
	for i := range x {
		var v float64 = 1
		if w != nil {
			v = w[i]
		}
		if !(v > 0) || math.IsInf(v, 1) {
			v = 0
		}
		ew[i] = v
		tot += v
	}
	if tot == 0 {
		for i := range ew {
			ew[i] = 1
		}
	}
	return ew
}

// distinct merges duplicate values: it returns the sorted distinct values
// of positive weight with their summed weights, and for each input point
// the index of its value in that list (-1 for a value all of whose points
// have weight 0).
func distinct(x, ew []float64) (vals, wts []float64, which []int) {
	type pair struct {
		x float64
		i int32
	}
	ps := make([]pair, len(x))
	for i, v := range x {
		ps[i] = pair{v, int32(i)}
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if a.x < b.x {
			return -1
		}
		if a.x > b.x {
			return 1
		}
		return int(a.i - b.i)
	})
	which = make([]int, len(x))
	for s := 0; s < len(ps); {
		e := s
		var sw float64
		for e < len(ps) && ps[e].x == ps[s].x {
			sw += ew[ps[e].i]
			e++
		}
		id := -1
		if sw > 0 {
			id = len(vals)
			vals = append(vals, ps[s].x)
			wts = append(wts, sw)
		}
		for j := s; j < e; j++ {
			which[ps[j].i] = id
		}
		s = e
	}
	return vals, wts, which
}

// dpPartition splits the ordered items into k contiguous clusters of least
// total within-cluster weighted squared error, exactly, by dynamic
// programming: D_j(i) = min_t D_{j-1}(t) + cost(t, i), with cost(t, i) in
// O(1) from prefix sums. The optimal split t is monotone in i for 1-D
// k-means, so each layer is solved by divide and conquer in O(m log m),
// O(k m log m) in all. It returns the k+1 cluster boundaries (cluster c is
// items [b[c], b[c+1])) and the optimal cost. Every item must have w > 0
// and k must be in 1..len(items).
func dpPartition(items []item, k int) ([]int, float64) {
	m := len(items)
	s0 := make([]float64, m+1)
	s1 := make([]float64, m+1)
	s2 := make([]float64, m+1)
	for i, it := range items {
		s0[i+1] = s0[i] + it.w
		s1[i+1] = s1[i] + it.wx
		s2[i+1] = s2[i] + it.wx2
	}
	cost := func(a, b int) float64 {
		w := s0[b] - s0[a]
		if w <= 0 {
			return 0
		}
		d := s1[b] - s1[a]
		c := s2[b] - s2[a] - d*d/w
		if c < 0 {
			return 0
		}
		return c
	}
	bounds := make([]int, k+1)
	bounds[k] = m
	if k == 1 {
		return bounds, cost(0, m)
	}
	prev := make([]float64, m+1)
	cur := make([]float64, m+1)
	for i := 1; i <= m; i++ {
		prev[i] = cost(0, i)
	}
	// arg[j][i] (j = 2..k) is the optimal last split for i items in j
	// clusters.
	arg := make([][]int32, k+1)
	var solve func(j, lo, hi, optLo, optHi int)
	solve = func(j, lo, hi, optLo, optHi int) {
		for lo <= hi {
			mid := (lo + hi) / 2
			best, bt := math.Inf(1), optLo
			top := min(mid-1, optHi)
			// cost(t, mid) inlined: this loop is the whole solver.
			b0, b1, b2 := s0[mid], s1[mid], s2[mid]
			for t := optLo; t <= top; t++ {
				w := b0 - s0[t]
				d := b1 - s1[t]
				c := b2 - s2[t] - d*d/w
				if c < 0 {
					c = 0
				}
				if v := prev[t] + c; v < best {
					best, bt = v, t
				}
			}
			cur[mid] = best
			arg[j][mid] = int32(bt)
			// Recurse on the smaller half, loop on the other.
			if mid-lo < hi-mid {
				solve(j, lo, mid-1, optLo, bt)
				lo, optLo = mid+1, bt
			} else {
				solve(j, mid+1, hi, bt, optHi)
				hi, optHi = mid-1, bt
			}
		}
	}
	for j := 2; j <= k; j++ {
		arg[j] = make([]int32, m+1)
		// j clusters over i items need i >= j, and the remaining k-j
		// clusters need m-i >= k-j items.
		lo, hi := j, m-(k-j)
		if j == k {
			lo = m
		}
		solve(j, lo, hi, j-1, hi-1)
		prev, cur = cur, prev
	}
	i := m
	for j := k; j >= 2; j-- {
		i = int(arg[j][i])
		bounds[j-1] = i
	}
	return bounds, prev[m]
}

// nearest returns the index of the center closest to v (ties to the lower
// index). c must be sorted ascending and non-empty.
func nearest(c []float64, v float64) int {
	// Binary search for the first c[i] >= v, by hand: sort.Search's
	// closure costs more than the search itself here.
	lo, hi := 0, len(c)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if c[h] < v {
			lo = h + 1
		} else {
			hi = h
		}
	}
	if lo == len(c) {
		return lo - 1
	}
	if lo > 0 && v-c[lo-1] <= c[lo]-v {
		return lo - 1
	}
	return lo
}

// finish assigns every point to its nearest center and returns the
// assignment and the weighted cost.
func finish(x, ew, centers []float64) ([]int, float64) {
	assign := make([]int, len(x))
	var cost float64
	for i, v := range x {
		a := nearest(centers, v)
		assign[i] = a
		d := v - centers[a]
		cost += ew[i] * d * d
	}
	return assign, cost
}

// KMeansExact returns the exact optimum of weighted 1-D k-means (see the
// conventions at the top of this file). Duplicate values are merged first
// (weights summed), so the cost is O(n log n + k m log m) for m distinct
// values. When k >= m every distinct value is its own center and the cost
// is 0.
func KMeansExact(x, w []float64, k int) (centers []float64, assign []int, cost float64) {
	if len(x) == 0 || k <= 0 {
		return nil, []int{}, 0
	}
	ew := prep(x, w)
	vals, wts, _ := distinct(x, ew)
	centers = exactCenters(vals, wts, k)
	assign, cost = finish(x, ew, centers)
	return centers, assign, cost
}

// exactCenters solves the DP on sorted distinct values of positive weight.
func exactCenters(vals, wts []float64, k int) []float64 {
	m := len(vals)
	if k >= m {
		return append([]float64(nil), vals...)
	}
	var tw, mu float64
	for i := range vals {
		tw += wts[i]
		mu += wts[i] * vals[i]
	}
	mu /= tw
	items := make([]item, m)
	for i, v := range vals {
		d := v - mu
		items[i] = item{wts[i], wts[i] * d, wts[i] * d * d}
	}
	b, _ := dpPartition(items, k)
	return boundsToCenters(items, b, mu)
}

// boundsToCenters returns the weighted mean of each cluster of items.
func boundsToCenters(items []item, b []int, mu float64) []float64 {
	c := make([]float64, len(b)-1)
	for j := range c {
		var w, wx float64
		for _, it := range items[b[j]:b[j+1]] {
			w += it.w
			wx += it.wx
		}
		c[j] = wx/w + mu
	}
	return dedupSorted(c)
}

// dedupSorted sorts c and removes equal neighbours.
func dedupSorted(c []float64) []float64 {
	sort.Float64s(c)
	out := c[:0]
	for i, v := range c {
		if i == 0 || v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

// KMeansBinned is KMeansExact on a histogram: when the points have more
// than maxBins distinct values, they are first put into at most about
// maxBins weighted bins of consecutive values, and the DP then finds the
// exact optimum among clusterings that keep each bin whole (with exact
// costs: each bin carries its weight and first and second moments). Two
// Lloyd steps on the original points then refine the centers (each step
// can only lower the cost) and every point is assigned to its nearest
// center. The cost is thus independent of the group size beyond one O(n)
// pass per step, and is at most the optimum plus the within-bin error the
// bin constraint forces; TestBinnedGap measures the gap.
//
// Bins are cut from a fine equal-width histogram (16*maxBins cells over
// the value range), closing a bin when it would hold more than 2/maxBins
// of the total weight or span more than 2/maxBins of the range, so both
// the dense centre and the sparse tails of a weight distribution are
// resolved. maxBins <= 0, or n <= maxBins, gives KMeansExact.
func KMeansBinned(x, w []float64, k, maxBins int) (centers []float64, assign []int, cost float64) {
	if len(x) == 0 || k <= 0 {
		return nil, []int{}, 0
	}
	if maxBins <= 0 || len(x) <= maxBins {
		return KMeansExact(x, w, k)
	}
	ew := prep(x, w)
	centers = binnedCenters(x, ew, k, maxBins, nil, false)
	for it := 0; it < 2; it++ {
		centers = lloydStep(x, ew, centers, nil)
	}
	assign, cost = finish(x, ew, centers)
	return centers, assign, cost
}

// binnedCenters runs the DP on a histogram of the positive-weight points
// (w nil: every weight 1). It returns nil if no point has positive
// weight. fine, if not nil, is scratch for the fine histogram. With
// refine, one Lloyd step on the fine histogram's cells (each cell moved
// whole to the center nearest its mean, with its exact moments) refines
// the centers: the same as a Lloyd step on the points except for points
// in the few cells that straddle a boundary between two centers, for
// O(16 maxBins) work instead of O(n).
func binnedCenters(x, w []float64, k, maxBins int, fine *[]item, refine bool) []float64 {
	return binnedCentersWith(x, w, k, maxBins, fine, refine, nil)
}

// binnedStats are the range (lo, hi), total weight tw and weighted sum mu
// (sum w_i x_i, not yet divided) of the points of positive weight, summed
// in index order: what binnedCenters' first pass computes.
type binnedStats struct{ lo, hi, tw, mu float64 }

// binnedCentersWith is binnedCenters with the first pass's sums given by
// the caller (pre, computed while it built x and w; nil: computed here).
// pre must come from the same x and w, with w non-nil, for the result to
// be binnedCenters'.
func binnedCentersWith(x, w []float64, k, maxBins int, fine *[]item, refine bool, pre *binnedStats) []float64 {
	wt := func(i int) float64 {
		if w == nil {
			return 1
		}
		return w[i]
	}
	// At most k distinct values: each is a center, exactly (this pass
	// stops at the (k+1)-th distinct value, so it is cheap otherwise).
	var seen []float64
	for i, v := range x {
		if wt(i) > 0 && !slices.Contains(seen, v) {
			seen = append(seen, v)
			if len(seen) > k {
				break
			}
		}
	}
	if len(seen) == 0 {
		return nil
	}
	if len(seen) <= k {
		return dedupSorted(seen)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	var tw, mu float64
	if pre != nil && w != nil {
		lo, hi, tw, mu = pre.lo, pre.hi, pre.tw, pre.mu
	} else if w == nil {
		for _, v := range x {
			lo, hi = min(lo, v), max(hi, v)
			mu += v
		}
		tw = float64(len(x))
	} else {
		for i, v := range x {
			if wi := w[i]; wi > 0 {
				lo, hi = min(lo, v), max(hi, v)
				tw += wi
				mu += wi * v
			}
		}
	}
	if !(tw > 0) {
		return nil
	}
	mu /= tw
	if lo == hi {
		return []float64{lo}
	}
	nf := 16 * maxBins
	var fb []item
	if fine != nil {
		if cap(*fine) < nf {
			*fine = make([]item, nf)
		}
		fb = (*fine)[:nf]
		clear(fb)
	} else {
		fb = make([]item, nf)
	}
	scale := float64(nf) / (hi - lo)
	for i, v := range x {
		wi := wt(i)
		if wi <= 0 {
			continue
		}
		f := int((v - lo) * scale)
		if f >= nf {
			f = nf - 1
		}
		d := v - mu
		it := &fb[f]
		it.w += wi
		it.wx += wi * d
		it.wx2 += wi * d * d
	}
	capW := 2 * tw / float64(maxBins)
	capSpan := 2 * nf / maxBins
	var bins []item
	start := -1
	for f, it := range fb {
		if it.w <= 0 {
			continue
		}
		if start >= 0 {
			last := &bins[len(bins)-1]
			if last.w+it.w <= capW && f-start < capSpan {
				last.w += it.w
				last.wx += it.wx
				last.wx2 += it.wx2
				continue
			}
		}
		bins = append(bins, it)
		start = f
	}
	if k >= len(bins) {
		c := make([]float64, len(bins))
		for i, b := range bins {
			c[i] = b.wx/b.w + mu
		}
		return dedupSorted(c)
	}
	b, _ := dpPartition(bins, k)
	centers := boundsToCenters(bins, b, mu)
	if !refine {
		return centers
	}
	kk := len(centers)
	sw := make([]float64, kk)
	sx := make([]float64, kk)
	var nt nearTable
	nt.build(centers)
	for _, it := range fb {
		if it.w <= 0 {
			continue
		}
		a := nt.find(centers, it.wx/it.w+mu)
		sw[a] += it.w
		sx[a] += it.wx
	}
	for j := range centers {
		if sw[j] > 0 {
			centers[j] = sx[j]/sw[j] + mu
		}
	}
	return dedupSorted(centers)
}

// lloydStep assigns each point to its nearest center and returns the
// weighted means (a center that loses all its points keeps its value);
// w nil means every weight 1. nt, if not nil, is scratch for the lookup.
func lloydStep(x, w, centers []float64, nt *nearTable) []float64 {
	k := len(centers)
	sw := make([]float64, k)
	sx := make([]float64, k)
	if nt == nil {
		nt = &nearTable{}
	}
	nt.build(centers)
	for i, v := range x {
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		if wi <= 0 {
			continue
		}
		a := nt.find(centers, v)
		sw[a] += wi
		sx[a] += wi * (v - centers[a])
	}
	out := make([]float64, k)
	for j := range out {
		out[j] = centers[j]
		if sw[j] > 0 {
			out[j] += sx[j] / sw[j]
		}
	}
	return dedupSorted(out)
}

// nearTable finds nearest centers fast: a table over the centers' range
// gives a starting index, and a short walk finishes the search with the
// same comparisons as nearest, so find(c, v) == nearest(c, v) exactly
// (TestNearTable) for any sorted c, including c scaled per row when the
// table was built on the unscaled values (the walk then just takes a few
// more steps).
type nearTable struct {
	lo, scale float64
	tab       []uint8
	pure      []bool // no boundary between two centers within (a margin of) the cell
}

// nearCells is the table size: ~4 cells per center at 8 bits.
const nearCells = 1024

// build prepares the table for sorted centers c (at most 256).
func (t *nearTable) build(c []float64) {
	t.tab, t.pure = t.tab[:0], t.pure[:0]
	if len(c) < 2 || !(c[len(c)-1] > c[0]) {
		t.scale = 0
		return
	}
	t.lo = c[0]
	t.scale = nearCells / (c[len(c)-1] - c[0])
	if math.IsInf(t.scale, 0) || math.IsNaN(t.scale) {
		t.scale = 0
		return
	}
	// The probe points rise with i, so each nearest center is found by
	// walking on from the previous one (nearWalk gives nearest exactly):
	// O(nearCells + len(c)) instead of a binary search per probe.
	a, b := 0, 0
	for i := 0; i < nearCells; i++ {
		// A cell is pure when the nearest center is the same a hundredth
		// of a cell beyond both of its ends: far more than the rounding
		// of (v - lo) * scale, so every v that lands in it has that
		// nearest center.
		a = nearWalk(c, t.lo+(float64(i)-0.01)/t.scale, a)
		b = nearWalk(c, t.lo+(float64(i)+1.01)/t.scale, b)
		t.tab = append(t.tab, uint8(a))
		t.pure = append(t.pure, a == b)
	}
}

// find returns nearest(c, v). c must be the centers the table was built
// on, or any sorted slice of the same length (then it is only slower).
func (t *nearTable) find(c []float64, v float64) int {
	a := 0
	if t.scale != 0 {
		f := (v - t.lo) * t.scale
		if f >= nearCells {
			a = int(t.tab[nearCells-1])
		} else if f > 0 {
			a = int(t.tab[int(f)])
		}
	}
	return nearWalk(c, v, a)
}

// findPure is find for c == the centers the table was built on: a value in
// a pure cell needs no comparison.
func (t *nearTable) findPure(c []float64, v float64) int {
	if t.scale != 0 {
		f := (v - t.lo) * t.scale
		if f > 0 && f < nearCells {
			i := int(f)
			if t.pure[i] {
				return int(t.tab[i])
			}
			return nearWalk(c, v, int(t.tab[i]))
		}
		if f >= nearCells {
			return nearWalk(c, v, int(t.tab[nearCells-1]))
		}
	}
	return nearWalk(c, v, 0)
}

// assignPure sets out[i] = findPure(c, float64(row[i])) for c the centers
// the table was built on (the same arithmetic, with the table's fields
// held in locals: findPure itself is too big to inline).
func (t *nearTable) assignPure(c []float64, row []float32, out []uint8) {
	out = out[:len(row)]
	if t.scale == 0 {
		for i, v := range row {
			out[i] = uint8(nearWalk(c, float64(v), 0))
		}
		return
	}
	lo, scale := t.lo, t.scale
	tab, pure := t.tab[:nearCells], t.pure[:nearCells]
	for i, v := range row {
		x := float64(v)
		f := (x - lo) * scale
		var a int
		switch {
		case f > 0 && f < nearCells:
			j := int(f)
			a = int(tab[j])
			if !pure[j] {
				a = nearWalk(c, x, a)
			}
		case f >= nearCells:
			a = nearWalk(c, x, int(tab[nearCells-1]))
		default:
			a = nearWalk(c, x, 0)
		}
		out[i] = uint8(a)
	}
}

// assignScaled sets out[i] = nearest(dec, x) for x = float64(row[i]), dec
// a row's decoded LUT (the table's centers times the row's scale; inv
// = 1/scale): the table cell of x*inv gives a start next to the answer,
// and nearWalk from any start ends at nearest exactly.
func (t *nearTable) assignScaled(dec []float64, inv float64, row []float32, out []uint8) {
	out = out[:len(row)]
	if t.scale == 0 {
		for i, v := range row {
			out[i] = uint8(nearWalk(dec, float64(v), 0))
		}
		return
	}
	lo, scale := t.lo, t.scale
	tab := t.tab[:nearCells]
	for i, v := range row {
		x := float64(v)
		y := x * inv
		a := 0
		if f := (y - lo) * scale; f >= nearCells {
			a = int(tab[nearCells-1])
		} else if f > 0 {
			a = int(tab[int(f)])
		}
		out[i] = uint8(nearWalk(dec, x, a))
	}
}

// nearWalk returns nearest(c, v) by walking from a: the predicate
// P(a) = v-c[a] > c[a+1]-v is true then false along sorted c, and nearest
// is the first a where it is false (or the last index).
func nearWalk(c []float64, v float64, a int) int {
	k := len(c)
	if a >= k {
		a = k - 1
	}
	for a > 0 && v-c[a-1] <= c[a]-v {
		a--
	}
	for a+1 < k && v-c[a] > c[a+1]-v {
		a++
	}
	return a
}

// KMeansLloyd is weighted k-means++ initialisation followed by Lloyd
// iterations (at most iters; iters <= 0 means 100), stopping when the
// assignment no longer changes. It works on the merged distinct values, so
// it is deterministic for a given seed and input, whatever the input order
// of equal values. It is a local optimum: KMeansExact is never worse.
func KMeansLloyd(x, w []float64, k int, seed uint64, iters int) (centers []float64, assign []int, cost float64) {
	if len(x) == 0 || k <= 0 {
		return nil, []int{}, 0
	}
	if iters <= 0 {
		iters = 100
	}
	ew := prep(x, w)
	vals, wts, _ := distinct(x, ew)
	centers = lloydCenters(vals, wts, k, seed, iters)
	assign, cost = finish(x, ew, centers)
	return centers, assign, cost
}

// lloydCenters runs k-means++ and Lloyd on sorted distinct weighted values.
func lloydCenters(vals, wts []float64, k int, seed uint64, iters int) []float64 {
	m := len(vals)
	if k >= m {
		return append([]float64(nil), vals...)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b6d65616e73)) // "kmeans"
	pick := func(p []float64, tot float64) int {
		r := rng.Float64() * tot
		for i, v := range p {
			r -= v
			if r < 0 {
				return i
			}
		}
		for i := m - 1; i >= 0; i-- { // rounding: last positive entry
			if p[i] > 0 {
				return i
			}
		}
		return m - 1
	}
	var tw float64
	for _, v := range wts {
		tw += v
	}
	centers := []float64{vals[pick(wts, tw)]}
	d2 := make([]float64, m)
	p := make([]float64, m)
	for i, v := range vals {
		d := v - centers[0]
		d2[i] = d * d
	}
	for len(centers) < k {
		var tot float64
		for i := range p {
			p[i] = wts[i] * d2[i]
			tot += p[i]
		}
		if tot <= 0 {
			break // every value already is a center
		}
		c := vals[pick(p, tot)]
		centers = append(centers, c)
		for i, v := range vals {
			d := v - c
			d2[i] = min(d2[i], d*d)
		}
	}
	centers = dedupSorted(centers)
	assign := make([]int, m)
	for i := range assign {
		assign[i] = -1
	}
	for it := 0; it < iters; it++ {
		changed := false
		k := len(centers)
		sw := make([]float64, k)
		sx := make([]float64, k)
		for i, v := range vals {
			a := nearest(centers, v)
			if a != assign[i] {
				changed = true
				assign[i] = a
			}
			sw[a] += wts[i]
			sx[a] += wts[i] * v
		}
		if !changed {
			break
		}
		for j := range centers {
			if sw[j] > 0 {
				centers[j] = sx[j] / sw[j]
			}
		}
		// In 1-D Lloyd keeps the centers ordered; sorting guards against
		// an empty cluster left behind. Distinct values stay distinct
		// because their cells are disjoint and non-empty.
		if !slices.IsSorted(centers) {
			sort.Float64s(centers)
			for i := range assign {
				assign[i] = -1
			}
		}
	}
	return dedupSorted(centers)
}
