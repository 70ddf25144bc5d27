package talaria

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/squeeze-ml/squeeze/ir"
)

// TensorEncoding is how one weight tensor is stored. Bits 0 or 32 is
// float32, 16 is float16, and 1, 2, 3, 4, 6 or 8 is a palettized tensor
// (ir.PaletteBits) whose GroupSize consecutive output rows share one
// float16 LUT (GroupSize 0 means one LUT for the whole tensor), with an
// optional float16 scale per output row.
type TensorEncoding struct {
	Bits        int  `json:"bits"`
	GroupSize   int  `json:"group_size,omitempty"`
	PerRowScale bool `json:"per_row_scale,omitempty"`
	// Parts, when set, is a lutmix tensor (per-group widths): its rows
	// top to bottom, each part with its own encoding; Bits and the rest
	// are then unused. Bytes are the parts' sum; LUT decoding is costed at
	// the parts' row-weighted mean width over all their groups.
	Parts []PartEncoding `json:"parts,omitempty"`
}

// PartEncoding is one row part of a lutmix tensor.
type PartEncoding struct {
	Rows int `json:"rows"`
	TensorEncoding
}

// Plan says how every tensor is stored. Resolution order for a tensor:
// Tensors[name] if present; else, when BPW > 0 and the tensor is a linear
// weight, the embedding or the classifier, BPW bits per weight (bytes =
// BPW*elems/8, a uniform fractional mode); else Default (zero = float32).
// talaria does not depend on package palettize: a palettize.Plan converts to
// this map.
type Plan struct {
	Tensors map[string]TensorEncoding `json:"tensors,omitempty"`
	BPW     float64                   `json:"bpw,omitempty"`
	// BPWGroupSize is the LUT group size assumed for BPW-mode tensors when
	// counting LUT-decode group overhead (0: one LUT per tensor).
	BPWGroupSize int            `json:"bpw_group_size,omitempty"`
	Default      TensorEncoding `json:"default"`
}

// UniformBPW returns a plan with every linear weight and the embedding /
// classifier at bpw bits per weight and norms in float32.
func UniformBPW(bpw float64) Plan { return Plan{BPW: bpw} }

// Clone returns a deep copy.
func (p Plan) Clone() Plan {
	q := p
	q.Tensors = make(map[string]TensorEncoding, len(p.Tensors))
	for k, v := range p.Tensors {
		q.Tensors[k] = v
	}
	return q
}

// resolved is a tensor's storage under a plan.
type resolved struct {
	Name     string
	Rows     int
	Cols     int
	Elems    int64
	Bits     float64 // bits per index (palettized), 16 or 32 (dense), or the BPW
	Label    string  // "f32", "f16", "lut4/g16+s", "3.70bpw"
	LUTBits  float64 // index width for LUT decode; 0 for dense
	Groups   int     // LUT groups (0 when unknown, e.g. BPW mode without group size)
	Bytes    int64   // storage bytes, side data included
	IntBits  int     // Bits as an integer for damage look-ups; -1 when fractional
	Encoding TensorEncoding
}

// BPWEligible reports whether a tensor gets the uniform BPW: linear weights,
// the embedding and the classifier (not norms or biases).
func BPWEligible(name string) bool {
	if name == ir.NameTokenEmbd || name == ir.NameOutput {
		return true
	}
	for _, k := range ir.LinearKinds {
		if strings.HasSuffix(name, "."+k) {
			return true
		}
	}
	return false
}

// EncodedBytes is the storage size of a rows x cols tensor in encoding e:
// packed indices (ir.PackedBytes) + float16 LUTs + one-byte per-row scale codes
// for a palettized encoding, 2 or 4 bytes per element for a dense one.
func EncodedBytes(e TensorEncoding, rows, cols int) (int64, error) {
	n := rows * cols
	switch e.Bits {
	case 0, 32:
		return 4 * int64(n), nil
	case 16:
		return 2 * int64(n), nil
	}
	if !isPaletteBits(e.Bits) {
		return 0, fmt.Errorf("bits = %d, expected 0 or 32 (float32), 16 (float16) or a palette width %v", e.Bits, ir.PaletteBits)
	}
	if e.GroupSize < 0 {
		return 0, fmt.Errorf("group_size = %d, expected >= 0 (0: one LUT per tensor)", e.GroupSize)
	}
	b := ir.PackedBytes(e.Bits, n)
	b += int64(numGroups(e.GroupSize, rows)) * int64(1<<e.Bits) * 2
	if e.PerRowScale {
		b += int64(rows) // one-byte scale codes (ir.ScaleCode), as compile stores them
	}
	return b, nil
}

func numGroups(groupSize, rows int) int {
	if groupSize <= 0 || groupSize >= rows {
		return 1
	}
	return (rows + groupSize - 1) / groupSize
}

func encodingLabel(e TensorEncoding) string {
	if len(e.Parts) > 0 {
		return fmt.Sprintf("lutmix/%dparts", len(e.Parts))
	}
	switch e.Bits {
	case 0, 32:
		return "f32"
	case 16:
		return "f16"
	}
	s := fmt.Sprintf("lut%d", e.Bits)
	if e.GroupSize > 0 {
		s += fmt.Sprintf("/g%d", e.GroupSize)
	}
	if e.PerRowScale {
		s += "+s"
	}
	return s
}

// shapes returns the tensors of c by name.
func shapes(c ir.Config) (map[string]ir.NamedShape, []string) {
	m := map[string]ir.NamedShape{}
	var order []string
	for _, ns := range ir.ExpectedShapes(c) {
		m[ns.Name] = ns
		order = append(order, ns.Name)
	}
	return m, order
}

// resolve computes the storage of every tensor of c under p.
func (p Plan) resolve(c ir.Config) (map[string]resolved, error) {
	sh, order := shapes(c)
	for name := range p.Tensors {
		if _, ok := sh[name]; !ok {
			return nil, fmt.Errorf("plan: tensor %q is not a tensor of this model (%d tensors, e.g. %s)", name, len(order), strings.Join(order[:min(3, len(order))], ", "))
		}
	}
	if p.BPW < 0 || p.BPW > 32 || math.IsNaN(p.BPW) {
		return nil, fmt.Errorf("plan: bpw = %v, expected 0 (off) or a value in (0, 32]", p.BPW)
	}
	out := make(map[string]resolved, len(order))
	for _, name := range order {
		ns := sh[name]
		rows, cols := 1, ns.Shape[len(ns.Shape)-1]
		if len(ns.Shape) == 2 {
			rows = ns.Shape[0]
		}
		r := resolved{Name: name, Rows: rows, Cols: cols, Elems: int64(rows) * int64(cols), IntBits: -1}
		e, explicit := p.Tensors[name]
		if !explicit && p.BPW > 0 && BPWEligible(name) {
			r.Bits = p.BPW
			r.Bytes = int64(math.Round(p.BPW * float64(r.Elems) / 8))
			r.Label = fmt.Sprintf("%.2fbpw", p.BPW)
			if p.BPW < 16 {
				r.LUTBits = p.BPW
				if p.BPWGroupSize > 0 {
					r.Groups = numGroups(p.BPWGroupSize, rows)
				}
			}
			if p.BPW == math.Trunc(p.BPW) {
				r.IntBits = int(p.BPW)
			}
			out[name] = r
			continue
		}
		if !explicit {
			e = p.Default
		}
		if len(e.Parts) > 0 {
			if err := r.parts(e); err != nil {
				return nil, fmt.Errorf("plan: tensor %q: %v", name, err)
			}
			out[name] = r
			continue
		}
		b, err := EncodedBytes(e, rows, cols)
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("plan: tensor %q: %v", name, err)
			}
			return nil, fmt.Errorf("plan: default encoding: %v", err)
		}
		r.Bytes, r.Encoding, r.Label = b, e, encodingLabel(e)
		switch e.Bits {
		case 0, 32:
			r.Bits, r.IntBits = 32, 32
		case 16:
			r.Bits, r.IntBits = 16, 16
		default:
			r.Bits, r.IntBits, r.LUTBits = float64(e.Bits), e.Bits, float64(e.Bits)
			r.Groups = numGroups(e.GroupSize, rows)
		}
		out[name] = r
	}
	return out, nil
}

// parts resolves a lutmix encoding: bytes summed over the parts, the
// row-weighted mean width for the LUT-decode rate, every part's groups.
func (r *resolved) parts(e TensorEncoding) error {
	rows := 0
	var bits float64
	for i, p := range e.Parts {
		if p.Rows < 1 || len(p.Parts) > 0 || !isPaletteBits(p.Bits) {
			return fmt.Errorf("parts[%d]: %d rows, bits %d: expected >= 1 rows of a palette width %v", i, p.Rows, p.Bits, ir.PaletteBits)
		}
		b, err := EncodedBytes(p.TensorEncoding, p.Rows, r.Cols)
		if err != nil {
			return fmt.Errorf("parts[%d]: %v", i, err)
		}
		r.Bytes += b
		r.Groups += numGroups(p.GroupSize, p.Rows)
		bits += float64(p.Rows * p.Bits)
		rows += p.Rows
	}
	if rows != r.Rows {
		return fmt.Errorf("parts cover %d rows, the tensor has %d", rows, r.Rows)
	}
	r.Bits = bits / float64(rows)
	r.LUTBits = r.Bits
	r.Encoding, r.Label = e, encodingLabel(e)
	return nil
}

// TensorNames lists the canonical tensor names of a config, in order.
func TensorNames(c ir.Config) []string {
	_, order := shapes(c)
	return order
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
