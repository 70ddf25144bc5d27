package palettize

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/squeeze-ml/squeeze/ir"
)

// DefaultMaxBins is the histogram size the exact method uses for a LUT
// group with more values than this (see KMeansBinned). With 1024 bins the
// cost gap to the unbinned optimum is about 1e-4 relative at 4 bits on a
// 16x2048 group (TestBinnedGap), and clustering cost no longer grows with
// the group size beyond one pass per step.
const DefaultMaxBins = 1024

// FastBins is the histogram size Options.FastBins uses for k centers:
// 16 bins per center up to 16 centers, then 8 (at least 256, at most
// DefaultMaxBins). The DP costs O(k bins log bins) per group: 4x less
// than DefaultMaxBins at 4 bits, 2x less at 6, for a relative cost gap of
// ~2e-3 to 3e-3 at k = 16 and ~3e-3 at k = 64 (TestBinnedGap).
func FastBins(k int) int { return min(DefaultMaxBins, max(256, 8*k)) }

// Options chooses how PalettizeTensor encodes one tensor.
type Options struct {
	Bits        int  // index width, one of ir.PaletteBits
	GroupSize   int  // consecutive rows sharing one LUT; 0 means all rows (one LUT per tensor)
	PerRowScale bool // store a scale per row (one byte: ir.ScaleCode, ~ max |w| of the row relative to its group's largest) and cluster w/scale
	// NoScaleRefit keeps the max-|w| row scales under error feedback
	// (otherwise each LUT refit round also refits every row's scale by
	// least squares on the Hessian).
	NoScaleRefit bool
	// Method is "exact" (default when empty: optimal 1-D k-means by DP,
	// on a histogram of MaxBins bins for large groups) or "lloyd"
	// (k-means++ then Lloyd, seeded).
	Method string
	Seed   uint64
	// Importance holds one non-negative weight per input channel (len =
	// cols), e.g. the mean square of that channel's activation from
	// calibration; nil means uniform. The damage of an error e at column c
	// is Importance[c] * e^2.
	Importance []float32
	// RowImportance holds one non-negative weight per row (len = rows),
	// e.g. Calibration.OutputFisher: an error at (r, c) costs
	// RowImportance[r] * Importance[c] * e^2. nil means 1.
	RowImportance []float32
	// Extra adds rank-one weight terms: the cost of an error at (r, c) is
	// increased by Row[r] * Col[c] * e^2 for each term (the tied token
	// embedding is both a lookup and the classifier). Not with Hessian.
	Extra []WeightTerm
	// Hessian, when set, rounds with error feedback (see gptq.go) onto the
	// k-means LUT, and the damage is sum_r RowImportance[r] (w_r - q_r) H
	// (w_r - q_r)^T with the full input second moment H (Importance is
	// then only used for the LUT's k-means weights, and should be H's
	// diagonal).
	Hessian *Hessian
	// RefitLUT (with Hessian) re-solves the LUT entries by weighted least
	// squares for the rounded assignments, then rounds again, RefitLUT
	// times.
	RefitLUT int
	// MaxBins: groups with more values than this are clustered on a
	// histogram (exact method only). 0 means DefaultMaxBins, < 0 never bins.
	MaxBins int
	// FastBins (with MaxBins 0) uses FastBins(1<<Bits) bins instead of
	// DefaultMaxBins: what compile does on big models.
	FastBins bool
	// Workers is the number of goroutines over LUT groups; 0 means
	// runtime.NumCPU(). Results do not depend on it.
	Workers int
	// NoStats skips measuring the damage and squared error (Stats.Damage
	// and Stats.MSE are then 0) where they cost a pass of their own (not
	// under error feedback): the encoding is the same.
	NoStats bool
}

// WeightTerm is a rank-one element weight: Row[r] * Col[c] (nil: 1).
type WeightTerm struct {
	Row, Col []float32
}

// Stats measures what palettization did to one tensor.
type Stats struct {
	Elems  int64   `json:"elems"`
	Damage float64 `json:"damage"` // sum_i imp(col_i) (x_i - q_i)^2 over the tensor
	MSE    float64 `json:"mse"`    // plain mean squared error
	Bytes  int64   `json:"bytes"`  // storage of the palettized tensor (indices + LUTs + scales)
	BPW    float64 `json:"bpw"`    // 8 * Bytes / Elems
}

// PalettizedBytes is the storage size (ir.Tensor.Bytes) of a rows x cols
// tensor palettized with the given index width and group size (0 = rows),
// with or without per-row scales (one byte per row, ir.ScaleCode).
func PalettizedBytes(rows, cols, bits, groupSize int, perRowScale bool) int64 {
	if groupSize <= 0 || groupSize > rows {
		groupSize = rows
	}
	ng := (rows + groupSize - 1) / groupSize
	b := ir.PackedBytes(bits, rows*cols) + 2*int64(ng)<<bits
	if perRowScale {
		b += int64(rows)
	}
	return b
}

// job is one validated palettization of one tensor.
type job struct {
	t          *ir.Tensor
	opt        Options
	rows, cols int
	g, ng      int
	k          int
	imp        []float64 // per column, nil = uniform
	rowW       []float64 // per row, nil = 1
	extra      [][2][]float64
	view       []float32 // the whole tensor when it is f32 and viewable
}

func newJob(t *ir.Tensor, opt Options) (*job, error) {
	if t == nil {
		return nil, errors.New("palettize: nil tensor")
	}
	if _, ok := ir.Encodings[t.Type]; !ok {
		return nil, fmt.Errorf("palettize: tensor %q: unknown encoding %d", t.Name, t.Type)
	}
	if len(t.Shape) != 2 {
		return nil, fmt.Errorf("palettize: tensor %q: shape %v, expected a matrix [rows, cols]", t.Name, t.Shape)
	}
	if err := t.Check(); err != nil {
		return nil, fmt.Errorf("palettize: %w", err)
	}
	if !slices.Contains(ir.PaletteBits, opt.Bits) {
		return nil, fmt.Errorf("palettize: tensor %q: bits = %d, expected one of %v", t.Name, opt.Bits, ir.PaletteBits)
	}
	j := &job{t: t, opt: opt, rows: t.Rows(), cols: t.Cols(), k: 1 << opt.Bits}
	j.g = opt.GroupSize
	if j.g == 0 {
		j.g = j.rows
	}
	if j.g < 0 || j.g > j.rows {
		return nil, fmt.Errorf("palettize: tensor %q: group size %d, expected 1..%d (its rows) or 0 for one LUT", t.Name, opt.GroupSize, j.rows)
	}
	j.ng = (j.rows + j.g - 1) / j.g
	switch opt.Method {
	case "", "exact", "lloyd":
	default:
		return nil, fmt.Errorf("palettize: tensor %q: method %q, expected \"exact\" or \"lloyd\"", t.Name, opt.Method)
	}
	if opt.Importance != nil {
		if len(opt.Importance) != j.cols {
			return nil, fmt.Errorf("palettize: tensor %q: importance has %d values, expected %d (its cols)", t.Name, len(opt.Importance), j.cols)
		}
		j.imp = make([]float64, j.cols)
		for c, v := range opt.Importance {
			if !(v >= 0) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("palettize: tensor %q: importance[%d] = %v, expected a finite value >= 0", t.Name, c, v)
			}
			j.imp[c] = float64(v)
		}
	}
	vec := func(what string, v []float32, n int) ([]float64, error) {
		if v == nil {
			return nil, nil
		}
		if len(v) != n {
			return nil, fmt.Errorf("palettize: tensor %q: %s has %d values, expected %d", t.Name, what, len(v), n)
		}
		out := make([]float64, n)
		for i, x := range v {
			if !(x >= 0) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("palettize: tensor %q: %s[%d] = %v, expected a finite value >= 0", t.Name, what, i, x)
			}
			out[i] = float64(x)
		}
		return out, nil
	}
	var err error
	if j.rowW, err = vec("row importance", opt.RowImportance, j.rows); err != nil {
		return nil, err
	}
	for i, e := range opt.Extra {
		r, err := vec(fmt.Sprintf("extra[%d].row", i), e.Row, j.rows)
		if err != nil {
			return nil, err
		}
		c, err := vec(fmt.Sprintf("extra[%d].col", i), e.Col, j.cols)
		if err != nil {
			return nil, err
		}
		j.extra = append(j.extra, [2][]float64{r, c})
	}
	if opt.Hessian != nil {
		if opt.Hessian.N != j.cols {
			return nil, fmt.Errorf("palettize: tensor %q: hessian is %d x %d, expected %d x %d (its cols)", t.Name, opt.Hessian.N, opt.Hessian.N, j.cols, j.cols)
		}
		if len(opt.Extra) > 0 {
			return nil, fmt.Errorf("palettize: tensor %q: a hessian and extra weight terms cannot be combined", t.Name)
		}
	}
	if t.Type == ir.F32 && len(t.Data) > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
		j.view = t.F32()
	}
	return j, nil
}

// weight returns the cost weight of an error at row r (absolute), col c.
func (j *job) weight(r, c int) float64 {
	w := 1.0
	if j.imp != nil {
		w = j.imp[c]
	}
	if j.rowW != nil {
		w *= j.rowW[r]
	}
	for _, e := range j.extra {
		a := 1.0
		if e[0] != nil {
			a = e[0][r]
		}
		if e[1] != nil {
			a *= e[1][c]
		}
		w += a
	}
	return w
}

// rowWeights writes f * weight(r, c) for every column c to out, with
// weight's rounding (then times f).
func (j *job) rowWeights(r int, f float64, out []float64) {
	rw := 1.0
	if j.rowW != nil {
		rw = j.rowW[r]
	}
	if j.imp != nil {
		for c, v := range j.imp {
			out[c] = v * rw
		}
	} else {
		for c := range out {
			out[c] = rw
		}
	}
	for _, e := range j.extra {
		a := 1.0
		if e[0] != nil {
			a = e[0][r]
		}
		if e[1] != nil {
			for c, v := range e[1] {
				out[c] += a * v
			}
		} else {
			for c := range out {
				out[c] += a
			}
		}
	}
	if f != 1 {
		for c := range out {
			out[c] *= f
		}
	}
}

// groupOut receives the encoding of one group (nil slices: not stored).
type groupOut struct {
	idx    []uint8  // indices of the group's elements
	lut    []uint16 // 1<<bits entries
	scales []uint16 // one per row of the group
	codes  []uint8  // their codes (ir.ScaleCode), one per row
}

// groupResult is the damage of one group.
type groupResult struct {
	damage, sse float64
	err         error
}

// lutSeed derives a per-group seed so that results do not depend on the
// order groups are processed in.
func (j *job) lutSeed(g int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(j.t.Name))
	return j.opt.Seed ^ h.Sum64() ^ (uint64(g)+1)*0x9e3779b97f4a7c15
}

// scratch is one worker's reusable buffers.
type scratch struct {
	buf  []float32 // decoded rows
	x, w []float64 // clustering values and weights
	fine []item
	nt   nearTable
	wrow []float64 // one row's damage weights
	idx  []uint8   // indices of a group whose caller keeps none
}

// group palettizes group g; sc is the worker's scratch.
func (j *job) group(g int, out groupOut, sc *scratch) groupResult {
	buf := &sc.buf
	r0 := g * j.g
	r1 := min(r0+j.g, j.rows)
	nr, cols := r1-r0, j.cols
	var src []float32
	if j.view != nil {
		src = j.view[r0*cols : r1*cols]
	} else {
		if cap(*buf) < nr*cols {
			*buf = make([]float32, nr*cols)
		}
		src = (*buf)[:nr*cols]
		for r := r0; r < r1; r++ {
			j.t.DecodeRow(r, src[(r-r0)*cols:(r-r0+1)*cols])
		}
	}
	if err := j.checkFinite(src, r0); err != nil {
		return groupResult{err: err}
	}
	// Per-row scale: the row's max |w| relative to the group's largest,
	// on the one-byte log grid of ir.ScaleCode (the group's largest row
	// gets code ir.ScaleCodeOne, scale 1; the LUT carries the magnitude).
	// All-zero rows get scale 1.
	scale := make([]float32, nr)
	sbits := make([]uint16, nr)
	codes := make([]uint8, nr)
	rowMax := make([]float32, nr)
	var gmax float32
	for r := range scale {
		scale[r], sbits[r], codes[r] = 1, ir.ScaleCodeF16(ir.ScaleCodeOne), ir.ScaleCodeOne
		if !j.opt.PerRowScale {
			continue
		}
		for _, v := range src[r*cols : (r+1)*cols] {
			rowMax[r] = max(rowMax[r], float32(math.Abs(float64(v))))
		}
		gmax = max(gmax, rowMax[r])
	}
	setScale := func(r int, c uint8) {
		codes[r], sbits[r] = c, ir.ScaleCodeF16(c)
		scale[r] = ir.F16ToF32(sbits[r])
	}
	for r := range scale {
		if j.opt.PerRowScale && rowMax[r] > 0 {
			setScale(r, ir.ScaleCode(rowMax[r]/gmax))
		}
	}
	// Clustering space: y = w / s, weight imp[c] * s^2, so the weighted
	// error in y equals the weighted error in w.
	n := nr * cols
	if cap(sc.x) < n {
		sc.x, sc.w = make([]float64, n), make([]float64, n)
	}
	xs, ws := sc.x[:n], sc.w[:n]
	// One pass builds the clustering values and weights and, for the
	// histogram, the range, total weight and weighted mean of the points
	// of positive weight (the same sums, in the same order, as
	// binnedCenters' own pass; see binnedStats).
	var tw, mu float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for r := 0; r < nr; r++ {
		s := float64(scale[r])
		inv, s2 := 1/s, s*s
		row := src[r*cols : (r+1)*cols]
		xr, wr := xs[r*cols : (r+1)*cols][:len(row)], ws[r*cols : (r+1)*cols][:len(row)]
		if len(j.extra) > 0 {
			j.rowWeights(r0+r, s2, wr)
		} else {
			// rowWeights' arithmetic, inline: imp[c] * rowW[r], then * s2.
			rw := 1.0
			if j.rowW != nil {
				rw = j.rowW[r0+r]
			}
			if j.imp != nil {
				imp := j.imp[:len(row)]
				if s2 != 1 {
					for c, v := range imp {
						wr[c] = v * rw * s2
					}
				} else {
					for c, v := range imp {
						wr[c] = v * rw
					}
				}
			} else {
				w := rw
				if s2 != 1 {
					w *= s2
				}
				for c := range wr {
					wr[c] = w
				}
			}
		}
		for c, v := range row {
			x := float64(v) * inv
			xr[c] = x
			w := wr[c]
			if !(w > 0) || w > math.MaxFloat64 { // not positive, NaN or +Inf
				wr[c] = 0
				continue
			}
			tw += w
			// min and max, with their order of -0 below +0, but with
			// plain comparisons (x is finite): the builtins' NaN and
			// zero handling cost more than the rest of this loop.
			if x <= lo && (x < lo || math.Signbit(x)) {
				lo = x
			}
			if x >= hi && (x > hi || !math.Signbit(x)) {
				hi = x
			}
			mu += w * x
		}
	}
	st := binnedStats{lo: lo, hi: hi, tw: tw, mu: mu}
	if tw == 0 { // every weight zero: uniform weights
		for i := range ws {
			ws[i] = 1
		}
	}
	maxBins := j.opt.MaxBins
	if maxBins == 0 {
		maxBins = DefaultMaxBins
		if j.opt.FastBins {
			maxBins = FastBins(j.k)
		}
	}
	var centers []float64
	if j.opt.Method == "lloyd" || maxBins < 0 || n <= maxBins {
		vals, wts, _ := distinct(xs, ws)
		if j.opt.Method == "lloyd" {
			centers = lloydCenters(vals, wts, j.k, j.lutSeed(g), 0)
		} else {
			centers = exactCenters(vals, wts, j.k)
		}
	} else {
		// FastBins: one Lloyd step on the histogram's cells; otherwise on
		// the points.
		var pre *binnedStats
		if tw > 0 {
			pre = &st
		}
		centers = binnedCentersWith(xs, ws, j.k, maxBins, &sc.fine, j.opt.FastBins, pre)
		if !j.opt.FastBins {
			centers = lloydStep(xs, ws, centers, &sc.nt)
		}
	}
	// LUT in float16, padded to 1<<bits by repeating the last entry.
	lut := make([]uint16, j.k)
	for i := range lut {
		c := centers[min(i, len(centers)-1)]
		lut[i] = ir.F32ToF16(float32(c))
		if f := ir.F16ToF32(lut[i]); math.IsInf(float64(f), 0) {
			return groupResult{err: fmt.Errorf("palettize: tensor %q: group %d: LUT entry %g is beyond float16 range (65504); use a per-row scale", j.t.Name, g, c)}
		}
	}
	// Float16 rounding is monotone, so the LUT stays sorted; sorting
	// anyway keeps -0 and +0 in a fixed order.
	slices.SortStableFunc(lut, func(a, b uint16) int {
		fa, fb := ir.F16ToF32(a), ir.F16ToF32(b)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	})
	// Re-assign every weight to the LUT entry nearest after decoding
	// exactly as ir's decoder does (f16 -> f32, times the f32 scale), or
	// round with error feedback when there is a Hessian.
	idx := out.idx
	if idx == nil {
		if cap(sc.idx) < nr*cols {
			sc.idx = make([]uint8, nr*cols)
		}
		idx = sc.idx[:nr*cols]
	}
	dec := make([]float64, j.k)
	decode := func(r int) {
		for i, h := range lut {
			dec[i] = float64(ir.F16ToF32(h) * scale[r])
		}
	}
	var res groupResult
	if hs := j.opt.Hessian; hs != nil {
		buf := make([]float64, cols)
		var rw []float64
		if j.rowW != nil {
			rw = j.rowW[r0:r1]
		}
		for round := 0; ; round++ {
			for r := 0; r < nr; r++ {
				decode(r)
				hs.roundRow(src[r*cols:(r+1)*cols], dec, idx[r*cols:(r+1)*cols], buf)
			}
			if round >= j.opt.RefitLUT {
				break
			}
			old := make([]float64, j.k)
			for i, h := range lut {
				old[i] = float64(ir.F16ToF32(h))
			}
			c := hs.refitLUT(src, nr, scale, rw, idx, old)
			for i, v := range c {
				lut[i] = ir.F32ToF16(float32(v))
				if f := ir.F16ToF32(lut[i]); math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
					lut[i] = ir.F32ToF16(float32(old[i]))
				}
			}
			sortLUT(lut, idx)
			if j.opt.PerRowScale && !j.opt.NoScaleRefit {
				// Refit each row's scale for its assignment (weighted
				// least squares on the Hessian), then round again with it.
				wq, q := make([]float64, cols), make([]float64, cols)
				for r := 0; r < nr; r++ {
					for c, v := range src[r*cols : (r+1)*cols] {
						wq[c] = float64(v)
						q[c] = float64(ir.F16ToF32(lut[idx[r*cols+c]]))
					}
					if s := hs.refitScale(wq, q); s > 0 {
						setScale(r, ir.ScaleCode(float32(s)))
					}
				}
			}
		}
		e := buf
		for r := 0; r < nr; r++ {
			decode(r)
			row := src[r*cols : (r+1)*cols]
			for c, v := range row {
				e[c] = float64(v) - dec[idx[r*cols+c]]
				res.sse += e[c] * e[c]
			}
			f := 1.0
			if rw != nil {
				f = rw[r]
			}
			res.damage += f * hs.quadForm(e)
		}
	} else {
		// The table is built on the LUT in clustering space; each row's
		// decoded LUT is the same entries times the row's scale, so
		// x / s lands next to its nearest entry and the walk (same
		// comparisons as nearest, on the decoded values) finishes.
		ys := make([]float64, j.k)
		for i, h := range lut {
			ys[i] = float64(ir.F16ToF32(h))
		}
		sc.nt.build(ys)
		if cap(sc.wrow) < cols {
			sc.wrow = make([]float64, cols)
		}
		for r := 0; r < nr; r++ {
			decode(r)
			inv := 1 / float64(scale[r])
			row := src[r*cols : (r+1)*cols]
			irow := idx[r*cols : (r+1)*cols]
			if scale[r] == 1 { // dec == ys
				sc.nt.assignPure(ys, row, irow)
			} else {
				sc.nt.assignScaled(dec, inv, row, irow)
			}
			if j.opt.NoStats {
				continue
			}
			// The damage weights are rowWeights(r, 1). A row without a
			// scale clustered on exactly those (cleaning only turns a -0
			// into +0: the weights are finite and non-negative), so they
			// are reused unless every weight was zero (then replaced by 1).
			wrow := ws[r*cols : (r+1)*cols]
			if scale[r] != 1 || tw == 0 {
				wrow = sc.wrow[:cols]
				j.rowWeights(r0+r, 1, wrow)
			}
			var sse, dmg float64
			for c, v := range row {
				f := float64(v)
				d := f - dec[irow[c]]
				sse += d * d
				dmg += wrow[c] * d * d
			}
			res.sse += sse
			res.damage += dmg
		}
	}
	if out.lut != nil {
		copy(out.lut, lut)
	}
	if out.scales != nil {
		copy(out.scales, sbits)
		copy(out.codes, codes)
	}
	return res
}

// checkFinite returns an error naming the first element of the group's
// rows src (starting at row r0) that is NaN or infinite. The scan tests
// the float32 exponent bits (all ones: Inf or NaN) four weights at a
// time, then finds the first bad one in order for the message.
func (j *job) checkFinite(src []float32, r0 int) error {
	const exp = 0x7f800000
	i := 0
	for ; i+4 <= len(src); i += 4 {
		a := math.Float32bits(src[i]) & exp
		b := math.Float32bits(src[i+1]) & exp
		c := math.Float32bits(src[i+2]) & exp
		d := math.Float32bits(src[i+3]) & exp
		if a == exp || b == exp || c == exp || d == exp {
			break
		}
	}
	for ; i < len(src); i++ {
		if v := src[i]; math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("palettize: tensor %q: element [%d, %d] is %v; weights must be finite", j.t.Name, r0+i/j.cols, i%j.cols, v)
		}
	}
	return nil
}

// run palettizes the listed groups with the given number of workers and
// returns the per-group results in the order of groups.
func (j *job) run(groups []int, workers int, out func(g int) groupOut) []groupResult {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	workers = min(workers, len(groups))
	res := make([]groupResult, len(groups))
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc scratch
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(groups) {
					return
				}
				res[i] = j.group(groups[i], out(groups[i]), &sc)
			}
		}()
	}
	wg.Wait()
	return res
}

// PalettizeTensor encodes t (any encoding, a matrix) as a palettized tensor
// with the given options: each group of GroupSize rows gets a float16 LUT
// of 1<<Bits entries from weighted 1-D k-means, each weight the index of its
// nearest stored LUT entry (nearest after float16 rounding and scaling, so
// the stored assignment is optimal for the stored LUT), packed with
// ir.PackIndices. When rows is not a multiple of GroupSize the last group
// is smaller. The result is deterministic for given inputs and Seed,
// whatever Workers is.
func PalettizeTensor(t *ir.Tensor, opt Options) (*ir.Tensor, Stats, error) {
	j, err := newJob(t, opt)
	if err != nil {
		return nil, Stats{}, err
	}
	n := j.rows * j.cols
	idx := make([]uint8, n)
	pal := &ir.Palette{GroupSize: j.g, LUT: make([]uint16, j.ng*j.k)}
	if opt.PerRowScale {
		pal.Scales, pal.ScaleCodes = make([]uint16, j.rows), make([]uint8, j.rows)
	}
	groups := make([]int, j.ng)
	for g := range groups {
		groups[g] = g
	}
	res := j.run(groups, opt.Workers, func(g int) groupOut {
		r0, r1 := g*j.g, min((g+1)*j.g, j.rows)
		o := groupOut{idx: idx[r0*j.cols : r1*j.cols], lut: pal.LUT[g*j.k : (g+1)*j.k]}
		if pal.Scales != nil {
			o.scales, o.codes = pal.Scales[r0:r1], pal.ScaleCodes[r0:r1]
		}
		return o
	})
	var st Stats
	for _, r := range res {
		if r.err != nil {
			return nil, Stats{}, r.err
		}
		st.Damage += r.damage
		st.MSE += r.sse
	}
	dt, ok := ir.LUTType(opt.Bits)
	if !ok {
		return nil, Stats{}, fmt.Errorf("palettize: tensor %q: no encoding for %d-bit indices", t.Name, opt.Bits)
	}
	out := &ir.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Type: dt, Data: packIndices(opt.Bits, idx, opt.Workers), Pal: pal}
	st.Elems = int64(n)
	st.MSE /= float64(n)
	st.Bytes = out.Bytes()
	st.BPW = 8 * float64(st.Bytes) / float64(n)
	return out, st, nil
}

// EstimateDamage returns the damage (and plain squared error sum) that
// PalettizeTensor would cause with opt, without building the tensor. When
// maxGroups > 0 and the tensor has more LUT groups, only maxGroups evenly
// spaced groups are clustered and the damage is scaled by rows / rows
// clustered (an estimate; exact otherwise). The second result reports
// whether it was estimated.
func EstimateDamage(t *ir.Tensor, opt Options, maxGroups int) (damage, sse float64, sampled bool, err error) {
	j, err := newJob(t, opt)
	if err != nil {
		return 0, 0, false, err
	}
	groups := make([]int, 0, j.ng)
	if maxGroups > 0 && j.ng > maxGroups {
		sampled = true
		for i := 0; i < maxGroups; i++ {
			g := int((int64(i)*int64(j.ng) + int64(j.ng)/2) / int64(maxGroups))
			groups = append(groups, min(g, j.ng-1))
		}
		groups = slices.Compact(groups)
	} else {
		for g := 0; g < j.ng; g++ {
			groups = append(groups, g)
		}
	}
	res := j.run(groups, opt.Workers, func(int) groupOut { return groupOut{} })
	var rows int
	for i, r := range res {
		if r.err != nil {
			return 0, 0, false, r.err
		}
		damage += r.damage
		sse += r.sse
		g := groups[i]
		rows += min((g+1)*j.g, j.rows) - g*j.g
	}
	if sampled {
		f := float64(j.rows) / float64(rows)
		damage *= f
		sse *= f
	}
	return damage, sse, sampled, nil
}

// GroupDamage returns the damage (and plain squared error) of every LUT
// group of t palettized with opt, in group order: the terms EstimateDamage sums (all groups, none
// sampled). Groups are independent (each has its own LUT and rounds its
// own rows), so a group's damage is what it costs in any row range that
// starts on a group boundary: the per-group allocation prices blocks
// with it.
func GroupDamage(t *ir.Tensor, opt Options) (damage, sse []float64, err error) {
	j, err := newJob(t, opt)
	if err != nil {
		return nil, nil, err
	}
	groups := make([]int, j.ng)
	for g := range groups {
		groups[g] = g
	}
	res := j.run(groups, opt.Workers, func(int) groupOut { return groupOut{} })
	damage, sse = make([]float64, j.ng), make([]float64, j.ng)
	for g, r := range res {
		if r.err != nil {
			return nil, nil, r.err
		}
		damage[g], sse[g] = r.damage, r.sse
	}
	return damage, sse, nil
}

// rowSlice returns rows [r0, r1) of a matrix in a fixed-width encoding
// (f32, f16, bf16) as a tensor viewing t's data.
func rowSlice(t *ir.Tensor, r0, r1 int) (*ir.Tensor, error) {
	var size int
	switch t.Type {
	case ir.F32:
		size = 4
	case ir.F16, ir.BF16:
		size = 2
	default:
		return nil, fmt.Errorf("palettize: tensor %q: per-group allocation reads rows of f32, f16 or bf16 weights, not %s", t.Name, ir.Encodings[t.Type].Name)
	}
	c := t.Cols()
	if err := t.Check(); err != nil {
		return nil, fmt.Errorf("palettize: %w", err)
	}
	return &ir.Tensor{Name: t.Name, Shape: []int{r1 - r0, c}, Type: t.Type, Data: t.Data[r0*c*size : r1*c*size]}, nil
}

// sortLUT sorts the LUT ascending (by decoded value, stable) and remaps
// the indices that point into it.
func sortLUT(lut []uint16, idx []uint8) {
	k := len(lut)
	order := make([]int, k)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		fa, fb := ir.F16ToF32(lut[a]), ir.F16ToF32(lut[b])
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	})
	where := make([]uint8, k)
	sorted := make([]uint16, k)
	for newPos, o := range order {
		where[o] = uint8(newPos)
		sorted[newPos] = lut[o]
	}
	copy(lut, sorted)
	for i, a := range idx {
		idx[i] = where[a]
	}
}
