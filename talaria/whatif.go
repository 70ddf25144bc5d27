package talaria

import (
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// Override sets the bits of every tensor whose canonical name matches a
// glob pattern (path.Match syntax: '*' matches any run of characters,
// dots included, since tensor names have no '/').
type Override struct {
	Pattern string `json:"pattern"`
	Bits    int    `json:"bits"`
}

// ParseWhatIf parses "blk.*.ffn_*=2,blk.0.*=4": comma-separated
// PATTERN=BITS entries; later entries override earlier ones where both
// match. BITS is 32 or 0 (float32), 16 (float16) or a palette width.
func ParseWhatIf(s string) ([]Override, error) {
	var out []Override
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("what-if %q: entry %d is empty, expected PATTERN=BITS", s, i+1)
		}
		pat, val, ok := strings.Cut(part, "=")
		pat, val = strings.TrimSpace(pat), strings.TrimSpace(val)
		if !ok || pat == "" || val == "" {
			return nil, fmt.Errorf("what-if entry %d %q: expected PATTERN=BITS", i+1, part)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("what-if entry %d %q: bad glob pattern %q: %v", i+1, part, pat, err)
		}
		b, err := strconv.Atoi(val)
		if err != nil || !(b == 0 || b == 32 || b == 16 || isPaletteBits(b)) {
			return nil, fmt.Errorf("what-if entry %d %q: bits %q, expected 32 or 0 (f32), 16 (f16) or one of %v", i+1, part, val, paletteList())
		}
		out = append(out, Override{Pattern: pat, Bits: b})
	}
	return out, nil
}

func paletteList() string {
	var s []string
	for _, b := range []int{1, 2, 3, 4, 6, 8} {
		s = append(s, strconv.Itoa(b))
	}
	return strings.Join(s, ", ")
}

// ApplyOverrides returns a copy of base with the overrides applied in order
// to the tensors of names (canonical names of the model). A tensor that
// moves to a palette width keeps its group size and per-row scale when it
// was already palettized explicitly, takes base.BPWGroupSize when it came
// from the uniform BPW, and one LUT per tensor otherwise. A pattern that
// matches no tensor is an error (it is almost always a typo).
func ApplyOverrides(names []string, base Plan, ovs []Override) (Plan, error) {
	p := base.Clone()
	for _, ov := range ovs {
		hit := 0
		for _, n := range names {
			if ok, _ := path.Match(ov.Pattern, n); !ok {
				continue
			}
			hit++
			old, explicit := p.Tensors[n]
			e := TensorEncoding{Bits: ov.Bits}
			if isPaletteBits(ov.Bits) {
				switch {
				case explicit && isPaletteBits(old.Bits):
					e.GroupSize, e.PerRowScale = old.GroupSize, old.PerRowScale
				case !explicit && base.BPW > 0 && BPWEligible(n):
					e.GroupSize = base.BPWGroupSize
				}
			}
			p.Tensors[n] = e
		}
		if hit == 0 {
			return Plan{}, fmt.Errorf("what-if pattern %q matches no tensor of this model (names look like %s)", ov.Pattern, exampleNames(names))
		}
	}
	return p, nil
}

func exampleNames(names []string) string {
	var ex []string
	for _, n := range names {
		if len(ex) < 3 && (strings.HasPrefix(n, "blk.0.") || !strings.HasPrefix(n, "blk.")) {
			ex = append(ex, n)
		}
	}
	return strings.Join(ex, ", ")
}

// Damage is a caller-supplied table: predicted damage (any additive measure,
// e.g. KL divergence contribution) of storing a tensor at a bit width.
// Float32 (32) is taken as 0 when absent.
type Damage map[string]map[int]float64

func (dm Damage) lookup(tensor string, bits int) (float64, bool) {
	if bits < 0 {
		return 0, false // fractional uniform bpw
	}
	if v, ok := dm[tensor][bits]; ok {
		return v, true
	}
	if bits == 32 || bits == 0 {
		return 0, true
	}
	return 0, false
}

// OpDelta is one op before and after a what-if.
type OpDelta struct {
	Name            string   `json:"name"`
	Weight          string   `json:"weight,omitempty"`
	BitsBefore      float64  `json:"bits_before"`
	BitsAfter       float64  `json:"bits_after"`
	WeightBytesDiff int64    `json:"weight_bytes_diff"`
	LatencyUsBefore float64  `json:"latency_us_before"`
	LatencyUsAfter  float64  `json:"latency_us_after"`
	EnergyUJBefore  float64  `json:"energy_uj_before"`
	EnergyUJAfter   float64  `json:"energy_uj_after"`
	DamageBefore    *float64 `json:"damage_before,omitempty"`
	DamageAfter     *float64 `json:"damage_after,omitempty"`
}

// TotalsDelta compares whole-model figures.
type TotalsDelta struct {
	WeightBytesBefore     int64    `json:"weight_bytes_before"`
	WeightBytesAfter      int64    `json:"weight_bytes_after"`
	DecodeMsBefore        float64  `json:"decode_ms_per_token_before"`
	DecodeMsAfter         float64  `json:"decode_ms_per_token_after"`
	PromptMsBefore        float64  `json:"ms_per_prompt_token_before"`
	PromptMsAfter         float64  `json:"ms_per_prompt_token_after"`
	EnergyMJBefore        float64  `json:"energy_mj_per_token_before"`
	EnergyMJAfter         float64  `json:"energy_mj_per_token_after"`
	PeakMemoryBytesBefore int64    `json:"peak_memory_bytes_before"`
	PeakMemoryBytesAfter  int64    `json:"peak_memory_bytes_after"`
	DamageBefore          float64  `json:"damage_before"`
	DamageAfter           float64  `json:"damage_after"`
	DamageKnown           bool     `json:"damage_known"`
	DamageMissingTensors  []string `json:"damage_missing_tensors,omitempty"`
}

// WhatIfResult is the comparison of a plan with and without overrides.
type WhatIfResult struct {
	Overrides []Override  `json:"overrides"`
	Changed   []string    `json:"changed_tensors"`
	Ops       []OpDelta   `json:"ops"` // only ops whose weight changed
	Totals    TotalsDelta `json:"totals"`
	Before    *Result     `json:"-"`
	After     *Result     `json:"-"`
}

// WhatIf profiles opts.Plan and opts.Plan with the overrides, and reports
// per op and in total the change in size, latency, energy and (when dmg is
// non-nil) predicted damage, summed once per changed tensor.
func WhatIf(opts Options, ovs []Override, dmg Damage) (*WhatIfResult, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	// Bit changes apply to the weight matrices (linears, embedding,
	// classifier); a pattern such as blk.*.ffn_* must not turn a norm
	// vector into a palette.
	var names []string
	for _, n := range TensorNames(opts.Config) {
		if BPWEligible(n) {
			names = append(names, n)
		}
	}
	after, err := ApplyOverrides(names, opts.Plan, ovs)
	if err != nil {
		return nil, err
	}
	encB, err := opts.Plan.resolve(opts.Config)
	if err != nil {
		return nil, err
	}
	encA, err := after.resolve(opts.Config)
	if err != nil {
		return nil, err
	}
	rb, ra := profileResolved(opts, encB), profileResolved(opts, encA)
	w := &WhatIfResult{Overrides: ovs, Before: rb, After: ra}
	changed := map[string]bool{}
	for _, n := range names {
		if encB[n].Bytes != encA[n].Bytes || encB[n].Label != encA[n].Label {
			changed[n] = true
			w.Changed = append(w.Changed, n)
		}
	}
	td := &w.Totals
	td.DamageKnown = dmg != nil
	for _, n := range w.Changed {
		if dmg == nil {
			break
		}
		b, okb := dmg.lookup(n, encB[n].IntBits)
		a, oka := dmg.lookup(n, encA[n].IntBits)
		if !okb || !oka {
			td.DamageKnown = false
			td.DamageMissingTensors = append(td.DamageMissingTensors, n)
			continue
		}
		td.DamageBefore += b
		td.DamageAfter += a
	}
	for i, ob := range rb.Ops {
		oa := ra.Ops[i]
		if ob.Weight == "" || !changed[ob.Weight] {
			continue
		}
		d := OpDelta{Name: ob.Name, Weight: ob.Weight, BitsBefore: ob.Bits, BitsAfter: oa.Bits,
			WeightBytesDiff: oa.WeightBytes - ob.WeightBytes,
			LatencyUsBefore: ob.LatencyUs, LatencyUsAfter: oa.LatencyUs,
			EnergyUJBefore: ob.EnergyUJ, EnergyUJAfter: oa.EnergyUJ}
		if dmg != nil {
			if v, ok := dmg.lookup(ob.Weight, encB[ob.Weight].IntBits); ok {
				d.DamageBefore = &v
			}
			if v, ok := dmg.lookup(ob.Weight, encA[ob.Weight].IntBits); ok {
				d.DamageAfter = &v
			}
		}
		w.Ops = append(w.Ops, d)
	}
	td.WeightBytesBefore, td.WeightBytesAfter = rb.Totals.WeightBytes, ra.Totals.WeightBytes
	td.DecodeMsBefore, td.DecodeMsAfter = rb.Totals.DecodeMsPerToken, ra.Totals.DecodeMsPerToken
	td.PromptMsBefore, td.PromptMsAfter = rb.Totals.MsPerPromptToken, ra.Totals.MsPerPromptToken
	td.EnergyMJBefore, td.EnergyMJAfter = rb.Totals.EnergyMJPerToken, ra.Totals.EnergyMJPerToken
	td.PeakMemoryBytesBefore, td.PeakMemoryBytesAfter = rb.Totals.PeakMemoryBytes, ra.Totals.PeakMemoryBytes
	return w, nil
}

// RenderWhatIf writes the what-if comparison as a table with totals at the
// foot. Per-op figures are for the phase the options chose.
func RenderWhatIf(w io.Writer, r *WhatIfResult) error {
	fmt.Fprintf(w, "what-if on %s (%s): %d tensors changed\n", r.Before.Model, r.Before.Device, len(r.Changed))
	t := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off), tablewriter.WithFooterAutoFormat(tw.Off))
	t.Header("op", "bits", "Δ weights", "latency µs", "Δ latency", "energy µJ", "Δ energy", "damage")
	for _, d := range r.Ops {
		dm := "-"
		if d.DamageBefore != nil && d.DamageAfter != nil {
			dm = fmt.Sprintf("%.4g → %.4g", *d.DamageBefore, *d.DamageAfter)
		}
		if err := t.Append(d.Name, fmt.Sprintf("%s → %s", fmtBits(d.BitsBefore), fmtBits(d.BitsAfter)), human(d.WeightBytesDiff),
			fmt.Sprintf("%.1f → %.1f", d.LatencyUsBefore, d.LatencyUsAfter), pct(d.LatencyUsBefore, d.LatencyUsAfter),
			fmt.Sprintf("%.1f → %.1f", d.EnergyUJBefore, d.EnergyUJAfter), pct(d.EnergyUJBefore, d.EnergyUJAfter), dm); err != nil {
			return err
		}
	}
	T := r.Totals
	dm := "no damage table"
	switch {
	case T.DamageKnown:
		dm = fmt.Sprintf("%.4g → %.4g", T.DamageBefore, T.DamageAfter)
	case len(T.DamageMissingTensors) > 0:
		dm = fmt.Sprintf("unknown for %d tensors", len(T.DamageMissingTensors))
	}
	t.Footer("TOTAL", "", human(T.WeightBytesAfter-T.WeightBytesBefore),
		fmt.Sprintf("%.2f → %.2f ms", T.DecodeMsBefore, T.DecodeMsAfter), pct(T.DecodeMsBefore, T.DecodeMsAfter),
		fmt.Sprintf("%.2f → %.2f mJ", T.EnergyMJBefore, T.EnergyMJAfter), pct(T.EnergyMJBefore, T.EnergyMJAfter), dm)
	if err := t.Render(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "size %s → %s; ms per prompt token %.3f → %.3f; decode %.1f → %.1f tokens/s\n",
		human(T.WeightBytesBefore), human(T.WeightBytesAfter), T.PromptMsBefore, T.PromptMsAfter, 1e3/T.DecodeMsBefore, 1e3/T.DecodeMsAfter)
	return err
}

func fmtBits(b float64) string {
	if b == math.Trunc(b) {
		return strconv.Itoa(int(b))
	}
	return fmt.Sprintf("%.2f", b)
}

func pct(a, b float64) string {
	if a == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", 100*(b-a)/a)
}
