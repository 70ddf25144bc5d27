package talaria

import (
	"fmt"
	"math/rand/v2"

	"github.com/squeeze-ml/squeeze/ir"
)

// EncodeForPlan returns a copy of m (sharing untouched tensors) whose
// matrices are stored as plan says, for measuring a plan's speed on a
// synthetic model: a palettized entry gets uniformly random indices packed
// with ir.PackIndices, one float16 LUT of normal-ish values per group of
// GroupSize rows (0: one LUT) and float16 per-row scales near 1 when asked;
// a 16-bit entry converts the float32 values to float16; 0 or 32 keeps the
// tensor. The values are not a compression of m's weights: speed only. A
// uniform-rate plan (Plan.BPW) is refused (use ir.SyntheticPalettized).
func EncodeForPlan(m *ir.Model, p Plan, seed uint64) (*ir.Model, error) {
	if p.BPW != 0 {
		return nil, fmt.Errorf("encode for plan: uniform bpw %g has no per-tensor encodings (use ir.SyntheticPalettized)", p.BPW)
	}
	if p.Default.Bits != 0 && p.Default.Bits != 32 {
		return nil, fmt.Errorf("encode for plan: default encoding %d bits: only float32 defaults are supported", p.Default.Bits)
	}
	out := *m
	out.Tensors = make(map[string]*ir.Tensor, len(m.Tensors))
	for k, v := range m.Tensors {
		out.Tensors[k] = v
	}
	for _, name := range sortedKeys(p.Tensors) {
		e := p.Tensors[name]
		t, ok := m.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("encode for plan: tensor %q is not a tensor of %s", name, m.Source)
		}
		if len(t.Shape) != 2 {
			return nil, fmt.Errorf("encode for plan: tensor %q has shape %v, expected a matrix", name, t.Shape)
		}
		rows, cols := t.Rows(), t.Cols()
		if len(e.Parts) > 0 {
			// (it would otherwise be measured as float32, Bits being 0)
			return nil, fmt.Errorf("encode for plan: tensor %q has per-group parts (a lutmix entry): measuring those on synthetic weights is not supported; use a per-tensor plan (compile --granularity tensor)", name)
		}
		switch {
		case e.Bits == 0 || e.Bits == 32:
			continue
		case e.Bits == 16:
			f := t.F32()
			if f == nil {
				return nil, fmt.Errorf("encode for plan: tensor %q is %v, expected float32 to convert to float16", name, t.Type)
			}
			out.Tensors[name] = f16Tensor(name, f, rows, cols)
		case isPaletteBits(e.Bits):
			if e.GroupSize < 0 {
				return nil, fmt.Errorf("encode for plan: tensor %q: group_size %d, expected >= 0", name, e.GroupSize)
			}
			rng := rand.New(rand.NewPCG(seed, uint64(len(name))<<32^uint64(rows*cols)))
			gs := e.GroupSize
			if gs <= 0 || gs > rows {
				gs = rows
			}
			nt := lutTensor(rng, e.Bits, rows, cols, gs)
			nt.Name = name
			if e.PerRowScale {
				nt.Pal.ScaleCodes = make([]uint8, rows)
				for i := range nt.Pal.ScaleCodes {
					nt.Pal.ScaleCodes[i] = ir.ScaleCode(float32(1 + 0.1*rng.NormFloat64()))
				}
				nt.Pal.ExpandScaleCodes()
			}
			if err := nt.Check(); err != nil {
				return nil, fmt.Errorf("encode for plan: %w", err)
			}
			out.Tensors[name] = nt
		default:
			return nil, fmt.Errorf("encode for plan: tensor %q: bits %d, expected 0/32, 16 or a palette width %v", name, e.Bits, ir.PaletteBits)
		}
	}
	out.Source = m.Source + "+plan"
	return &out, nil
}

// f16Tensor is an F16 tensor holding f (rows x cols) rounded to float16.
func f16Tensor(name string, f []float32, rows, cols int) *ir.Tensor {
	b := make([]byte, 2*len(f))
	for i, v := range f {
		h := ir.F32ToF16(v)
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return &ir.Tensor{Name: name, Shape: []int{rows, cols}, Type: ir.F16, Data: b}
}
