package palettize

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// Candidate is one way to palettize one tensor, with its predicted damage
// and its exact storage cost.
type Candidate struct {
	Bits        int     `json:"bits"`
	GroupSize   int     `json:"group_size"` // resolved: rows for one LUT per tensor
	PerRowScale bool    `json:"per_row_scale"`
	Damage      float64 `json:"damage"`          // importance-weighted squared error
	Estimated   bool    `json:"estimated"`       // damage extrapolated from sampled groups
	Bytes       int64   `json:"bytes"`           // PalettizedBytes: indices + LUTs + scales
	CostBits    int64   `json:"cost_bits"`       // 8 * Bytes
	MSE         float64 `json:"mse,omitempty"`   // plain mean squared error
	Elems       int64   `json:"elems,omitempty"` // weights in the tensor
	Note        string  `json:"note,omitempty"`  // why an option was dropped, if it was
}

// TensorCandidates lists the options for one tensor.
type TensorCandidates struct {
	Name    string      `json:"name"`
	Shape   []int       `json:"shape"`
	Weights int64       `json:"weights"` // elements
	Options []Candidate `json:"options"`
}

// CandidateOptions chooses which options Candidates evaluates.
type CandidateOptions struct {
	Bits       []int // index widths; nil means ir.PaletteBits
	GroupSizes []int // rows per LUT; 0 means one LUT per tensor; nil means {16, 32, 64, 128, 0}
	// PerRowScale lists the scale settings to try; nil means {false}.
	PerRowScale []bool
	Tensors     []string // nil means PalettizableNames(m)
	Method      string   // "exact" (default) or "lloyd"
	Seed        uint64
	MaxBins     int // see Options.MaxBins
	// SampleGroups > 0 clusters at most that many evenly spaced LUT groups
	// per tensor and option and extrapolates the damage (see
	// EstimateDamage); bytes are always exact. 0 clusters everything.
	SampleGroups int
	// SampleRows > 0 also caps the sample at about that many rows per
	// option (at least one group): a tensor-wide LUT is then estimated
	// from one group of all rows, a 16-row LUT from SampleRows/16 groups.
	SampleRows int
	// MinGroupSavingBPW > 0 drops group sizes that save less than that
	// many bits per weight of LUT storage over the next smaller group size
	// kept (same bits and scale): on wide matrices every LUT is a tiny
	// overhead (16 rows x 2048 columns at 4 bits: 16*16/(16*2048) = 0.008
	// bpw), so the larger groups cannot buy the allocator anything but
	// damage. The smallest group size is always kept.
	MinGroupSavingBPW float64
	// FastBins clusters large groups on FastBins(k) histogram bins instead
	// of DefaultMaxBins (see Options.FastBins).
	FastBins bool
	// Calib, when it holds OutputFisher (CalibrateWith with Sensitivity),
	// weights the damage by output sensitivity too (see TensorWeights),
	// which makes damage comparable across tensors; imp is then ignored.
	Calib *Calibration
	// ErrorFeedback rounds with GPTQ-style error feedback on the Gram
	// matrices of Calib (which must hold them), RefitLUT rounds of LUT
	// least-squares refit after it.
	ErrorFeedback bool
	RefitLUT      int
	Workers       int // goroutines over (tensor, option) pairs; 0 = runtime.NumCPU()
	// Progress, if set, is called after each (tensor, option) pair, from
	// one goroutine at a time.
	Progress func(done, total int)
}

// PalettizableNames lists the tensors squeeze palettizes, in canonical
// order: the per-layer linear weights, token_embd, and the classifier
// "output" when the model has its own (untied).
func PalettizableNames(m *ir.Model) []string {
	var out []string
	if _, ok := m.Tensors[ir.NameTokenEmbd]; ok {
		out = append(out, ir.NameTokenEmbd)
	}
	for l := 0; l < m.Config.Layers; l++ {
		for _, k := range ir.LinearKinds {
			if _, ok := m.Tensors[ir.Blk(l, k)]; ok {
				out = append(out, ir.Blk(l, k))
			}
		}
	}
	if _, ok := m.Tensors[ir.NameOutput]; ok && !m.Config.TiedEmbed {
		out = append(out, ir.NameOutput)
	}
	return out
}

// ImportanceFor returns the per-column importance used for tensor name:
// imp[name] when present; for token_embd without its own entry, uniform
// (rows are looked up, every column matters alike) or, when the
// classifier is tied to it and imp["output"] is given, the average of
// uniform and the classifier importance, each normalised to mean 1 (a
// heuristic: the tensor serves both uses). nil means uniform.
func ImportanceFor(m *ir.Model, name string, imp map[string][]float32) []float32 {
	if v, ok := imp[name]; ok {
		return v
	}
	if name == ir.NameTokenEmbd && m.Config.TiedEmbed {
		out, ok := imp[ir.NameOutput]
		if !ok || len(out) == 0 {
			return nil
		}
		var mean float64
		for _, v := range out {
			mean += float64(v)
		}
		mean /= float64(len(out))
		if !(mean > 0) {
			return nil
		}
		mix := make([]float32, len(out))
		for i, v := range out {
			mix[i] = float32(0.5 + 0.5*float64(v)/mean)
		}
		return mix
	}
	return nil
}

// Candidates computes, for every tensor and every option (bits x group
// size x scale), the predicted damage and the storage cost, in parallel
// over (tensor, option) pairs. The result is in tensor order with options
// sorted by cost then damage; it does not depend on Workers. Group sizes
// larger than a tensor's rows are resolved to its rows (and deduplicated).
func Candidates(m *ir.Model, imp map[string][]float32, opt CandidateOptions) ([]TensorCandidates, error) {
	gs := opt.GroupSizes
	if gs == nil {
		gs = []int{16, 32, 64, 128, 0}
	}
	for _, g := range gs {
		if g < 0 {
			return nil, fmt.Errorf("palettize: candidate group size %d, expected >= 1 or 0 for one LUT per tensor", g)
		}
	}
	bits, scales, names, tw, err := opt.resolve(m, imp)
	if err != nil {
		return nil, err
	}
	type pair struct{ t, o int }
	var jobs []pair
	out := make([]TensorCandidates, len(names))
	for ti, name := range names {
		t, err := m.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("palettize: %w", err)
		}
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("palettize: tensor %q: shape %v, expected a matrix", name, t.Shape)
		}
		rows, cols := t.Rows(), t.Cols()
		tc := TensorCandidates{Name: name, Shape: slices.Clone(t.Shape), Weights: int64(t.Elems())}
		seen := map[[3]int]bool{}
		var rgs []int // resolved group sizes, ascending, distinct
		for _, g := range gs {
			if g == 0 || g > rows {
				g = rows
			}
			if !slices.Contains(rgs, g) {
				rgs = append(rgs, g)
			}
		}
		slices.Sort(rgs)
		for _, b := range bits {
			kept := -1
			for _, g := range rgs {
				if opt.MinGroupSavingBPW > 0 && kept > 0 {
					save := 8 * float64(PalettizedBytes(rows, cols, b, kept, false)-PalettizedBytes(rows, cols, b, g, false)) / float64(t.Elems())
					if save < opt.MinGroupSavingBPW {
						continue
					}
				}
				kept = g
				for _, s := range scales {
					key := [3]int{b, g, boolInt(s)}
					if seen[key] {
						continue
					}
					seen[key] = true
					by := PalettizedBytes(rows, cols, b, g, s)
					tc.Options = append(tc.Options, Candidate{Bits: b, GroupSize: g, PerRowScale: s, Bytes: by, CostBits: 8 * by, Elems: int64(t.Elems())})
					jobs = append(jobs, pair{ti, len(tc.Options) - 1})
				}
			}
		}
		out[ti] = tc
	}
	var mu sync.Mutex
	err = runJobs(len(jobs), opt.Workers, opt.Progress, func(i int) error {
		jb := jobs[i]
		tc := &out[jb.t]
		c := &tc.Options[jb.o]
		t := m.Tensors[tc.Name]
		o := Options{Bits: c.Bits, GroupSize: c.GroupSize, PerRowScale: c.PerRowScale,
			Method: opt.Method, Seed: opt.Seed, MaxBins: opt.MaxBins, FastBins: opt.FastBins, Workers: 1, RefitLUT: opt.RefitLUT}
		var d, sse float64
		var sampled bool
		maxGroups := opt.SampleGroups
		if opt.SampleRows > 0 {
			mg := max(1, (opt.SampleRows+c.GroupSize-1)/c.GroupSize)
			if maxGroups == 0 || mg < maxGroups {
				maxGroups = mg
			}
		}
		err := tw.fill(tc.Name, &o)
		if err == nil {
			d, sse, sampled, err = EstimateDamage(t, o, maxGroups)
		}
		mu.Lock()
		c.Damage, c.Estimated, c.MSE = d, sampled, sse/float64(t.Elems())
		mu.Unlock()
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		sortOptions(out[i].Options)
	}
	return out, nil
}

// resolve checks opt's widths and fills in the defaults shared by
// Candidates and GroupCandidates: the widths (nil: ir.PaletteBits), the
// scale settings (nil: none), the tensors (nil: PalettizableNames) and the
// error weighting.
func (opt *CandidateOptions) resolve(m *ir.Model, imp map[string][]float32) (bits []int, scales []bool, names []string, tw *weighter, err error) {
	bits = opt.Bits
	if bits == nil {
		bits = ir.PaletteBits
	}
	for _, b := range bits {
		if !slices.Contains(ir.PaletteBits, b) {
			return nil, nil, nil, nil, fmt.Errorf("palettize: candidate bits %d, expected one of %v", b, ir.PaletteBits)
		}
	}
	scales = opt.PerRowScale
	if scales == nil {
		scales = []bool{false}
	}
	names = opt.Tensors
	if names == nil {
		names = PalettizableNames(m)
	}
	tw, err = newWeighter(m, imp, opt.Calib, opt.ErrorFeedback)
	return bits, scales, names, tw, err
}

// runJobs runs f(0..n-1) on up to workers goroutines (0 = all CPUs),
// calls progress (if set) after each job from one goroutine at a time,
// stops handing out jobs after the first error and returns it.
func runJobs(n, workers int, progress func(done, total int), f func(i int) error) error {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	workers = max(1, min(workers, n))
	var (
		mu       sync.Mutex
		next     int
		done     int
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || firstErr != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				err := f(i)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				done++
				if progress != nil {
					progress(done, n)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// sortOptions orders options by cost, then damage (stable).
func sortOptions(opts []Candidate) {
	slices.SortStableFunc(opts, func(a, b Candidate) int {
		switch {
		case a.CostBits != b.CostBits:
			return cmpInt64(a.CostBits, b.CostBits)
		case a.Damage < b.Damage:
			return -1
		case a.Damage > b.Damage:
			return 1
		}
		return 0
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DamageCell is one entry of a damage table.
type DamageCell struct {
	Damage    float64 `json:"damage"`
	Bytes     int64   `json:"bytes"`
	GroupSize int     `json:"group_size"`
}

// DamageTable condenses candidates into damage[name][bits] for the talaria
// what-if: for each tensor and index width, the option with the given
// group size (0 or more than the rows: one LUT per tensor), without
// per-row scale if that exists, else with. A (tensor, bits) pair with no
// such option is absent.
func DamageTable(cands []TensorCandidates, groupSize int) map[string]map[int]DamageCell {
	out := map[string]map[int]DamageCell{}
	for _, tc := range cands {
		rows := 1
		if len(tc.Shape) > 0 {
			rows = tc.Shape[0]
		}
		g := groupSize
		if g <= 0 || g > rows {
			g = rows
		}
		row := map[int]DamageCell{}
		for _, c := range tc.Options {
			if c.GroupSize != g {
				continue
			}
			if prev, ok := row[c.Bits]; ok && c.PerRowScale && prev.GroupSize == g {
				continue // prefer the unscaled option
			}
			row[c.Bits] = DamageCell{Damage: c.Damage, Bytes: c.Bytes, GroupSize: g}
		}
		out[tc.Name] = row
	}
	return out
}

// weighter resolves the damage weighting of each tensor, and prepares each
// distinct Gram matrix's Hessian once.
type weighter struct {
	m     *ir.Model
	imp   map[string][]float32
	calib *Calibration
	ef    bool
	mu    sync.Mutex
	hess  map[*float64]*Hessian
}

func newWeighter(m *ir.Model, imp map[string][]float32, c *Calibration, ef bool) (*weighter, error) {
	if ef && (c == nil || c.Gram == nil) {
		return nil, fmt.Errorf("palettize: error feedback needs calibration with Gram matrices (CalibrateOptions.Gram)")
	}
	return &weighter{m: m, imp: imp, calib: c, ef: ef, hess: map[*float64]*Hessian{}}, nil
}

func (w *weighter) fill(name string, o *Options) error {
	imp, row, extra := TensorWeights(w.m, name, w.imp, w.calib)
	o.Importance, o.RowImportance, o.Extra = imp, row, extra
	if !w.ef || extra != nil {
		return nil
	}
	g := w.calib.Gram[name]
	if g == nil {
		if name == ir.NameTokenEmbd {
			return nil // a lookup: no input second moment
		}
		return fmt.Errorf("palettize: tensor %q: calibration has no Gram matrix", name)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	h, ok := w.hess[&g[0]]
	if !ok {
		n := int(math.Round(math.Sqrt(float64(len(g)))))
		var err error
		if h, err = NewHessian(g, n, DefaultDamp); err != nil {
			return fmt.Errorf("palettize: tensor %q: %w", name, err)
		}
		w.hess[&g[0]] = h
	}
	o.Hessian = h
	return nil
}

// TensorWeights returns how errors in tensor name are weighted. Without a
// sensitivity calibration (c nil or without OutputFisher) it is
// ImportanceFor(m, name, imp) per column only. With one, an error at (r,
// c) of a linear costs OutputFisher[name][r] * Importance[name][c] (see
// sensitivity.go: twice the predicted KL divergence per position); the
// token embedding costs EmbedRowFisher[r] * EmbedColFisher[c] as a
// lookup, plus the classifier's term when it is tied.
func TensorWeights(m *ir.Model, name string, imp map[string][]float32, c *Calibration) (col, row []float32, extra []WeightTerm) {
	if c == nil || c.OutputFisher == nil {
		return ImportanceFor(m, name, imp), nil, nil
	}
	if name == ir.NameTokenEmbd {
		look := WeightTerm{Row: c.EmbedRowFisher, Col: c.EmbedColFisher}
		if m.Config.TiedEmbed {
			return c.Importance[ir.NameOutput], c.OutputFisher[ir.NameOutput], []WeightTerm{look}
		}
		return look.Col, look.Row, nil
	}
	return c.Importance[name], c.OutputFisher[name], nil
}
