package palettize

import (
	"fmt"
	"maps"
	"slices"

	"github.com/squeeze-ml/squeeze/ir"
)

// ApplyOptions tunes Apply. Zero values take the plan's Method and Seed.
type ApplyOptions struct {
	Method  string // overrides plan.Method when set
	Seed    uint64 // overrides plan.Seed when non-zero
	MaxBins int    // see Options.MaxBins
	// FastBins: see Options.FastBins.
	FastBins bool
	// Calib weights the k-means (and, with the plan's ErrorFeedback, holds
	// the Gram matrices); see CandidateOptions.Calib. imp is ignored when
	// it holds OutputFisher.
	Calib   *Calibration
	Workers int // goroutines over the LUT groups of one tensor; 0 = runtime.NumCPU()
	// NoStats: see Options.NoStats (the Progress stats then carry no
	// damage or error; the result is the same).
	NoStats bool
	// Progress, if set, is called after each tensor with the running count,
	// the total and the tensor's stats.
	Progress func(done, total int, name string, st Stats)
}

// Apply returns a new model whose planned tensors are palettized. Other
// tensors (and the tokenizer and config) are shared with m, not copied, so
// m must stay open while the result is used; the result registers no
// closers of its own. Tensors are encoded one at a time (each with its LUT
// groups in parallel), so peak memory holds one tensor's decoded copy at
// most, never two full-precision models. The result is byte-identical for
// the same model, plan, importance and seed, whatever Workers is.
//
// imp holds the calibration importance per weight tensor (see
// ImportanceFor); nil means uniform everywhere. An importance whose
// length is not the tensor's cols is an error.
func Apply(m *ir.Model, plan *Plan, imp map[string][]float32, opt ApplyOptions) (*ir.Model, error) {
	if err := plan.Validate(m); err != nil {
		return nil, err
	}
	method := plan.Method
	if opt.Method != "" {
		method = opt.Method
	}
	seed := plan.Seed
	if opt.Seed != 0 {
		seed = opt.Seed
	}
	out := &ir.Model{Config: m.Config, Tensors: maps.Clone(m.Tensors), Tokenizer: m.Tokenizer,
		Format: m.Format, Source: m.Source, Meta: maps.Clone(m.Meta)}
	tw, err := newWeighter(m, imp, opt.Calib, plan.ErrorFeedback)
	if err != nil {
		return nil, fmt.Errorf("apply plan: %w", err)
	}
	for i, e := range plan.Tensors {
		t := m.Tensors[e.Name]
		o := Options{Bits: e.Bits, GroupSize: e.GroupSize, PerRowScale: e.PerRowScale,
			Method: method, Seed: seed, MaxBins: opt.MaxBins, FastBins: opt.FastBins, Workers: opt.Workers, RefitLUT: plan.RefitLUT, NoStats: opt.NoStats}
		if err := tw.fill(e.Name, &o); err != nil {
			return nil, fmt.Errorf("apply plan: %w", err)
		}
		var pt *ir.Tensor
		var st Stats
		if len(e.Parts) == 0 {
			pt, st, err = PalettizeTensor(t, o)
		} else {
			pt, st, err = palettizeParts(t, e.Parts, o)
		}
		if err != nil {
			return nil, fmt.Errorf("apply plan: %w", err)
		}
		out.Tensors[e.Name] = pt
		if opt.Progress != nil {
			opt.Progress(i+1, len(plan.Tensors), e.Name, st)
		}
	}
	return out, nil
}

// palettizeParts encodes t as a LUTMIX tensor: each part's rows with the
// part's options (o's weights cut to the part's rows).
func palettizeParts(t *ir.Tensor, parts []PlanPart, o Options) (*ir.Tensor, Stats, error) {
	out := &ir.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Type: ir.LUTMIX}
	var st Stats
	r0 := 0
	for k, pp := range parts {
		r1 := r0 + pp.Rows
		sub, err := rowSlice(t, r0, r1)
		if err != nil {
			return nil, Stats{}, err
		}
		sub.Name = fmt.Sprintf("%s#%d", t.Name, k)
		po := o
		po.Bits, po.GroupSize, po.PerRowScale = pp.Bits, pp.GroupSize, pp.PerRowScale
		if o.RowImportance != nil {
			po.RowImportance = o.RowImportance[r0:r1]
		}
		po.Extra = nil
		for _, x := range o.Extra {
			if x.Row != nil {
				x.Row = x.Row[r0:r1]
			}
			po.Extra = append(po.Extra, x)
		}
		p, ps, err := PalettizeTensor(sub, po)
		if err != nil {
			return nil, Stats{}, err
		}
		out.Parts = append(out.Parts, p)
		st.Damage += ps.Damage
		st.MSE += ps.MSE * float64(ps.Elems)
		st.Elems += ps.Elems
		r0 = r1
	}
	st.MSE /= float64(st.Elems)
	st.Bytes = out.Bytes()
	st.BPW = 8 * float64(st.Bytes) / float64(st.Elems)
	return out, st, out.Check()
}
