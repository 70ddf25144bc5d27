package ir

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// Tensor is one named weight. Data holds the encoded bytes exactly as the
// encoding lays them out; for a tensor loaded from an uncompressed file it is
// usually a slice of a memory-mapped file, not a copy.
type Tensor struct {
	Name  string
	Shape []int // row-major; [out, in] for matrices, [n] for vectors
	Type  DType
	Data  []byte
	// Pal holds the lookup tables (and optional per-row scales) of a
	// palettized tensor (Type LUT1..LUT8). Data then holds the packed indices.
	Pal *Palette
	// Parts holds the row parts of a LUTMIX tensor, top to bottom: part i
	// is an ordinary palettized tensor (Type LUT1..LUT8, its own Pal and
	// Data) whose rows are the next Parts[i].Rows() rows of t. nil for
	// every other encoding.
	Parts []*Tensor
}

// PartAt returns the part of a LUTMIX tensor that holds row r, and r's row
// within it.
func (t *Tensor) PartAt(r int) (*Tensor, int) {
	for _, p := range t.Parts {
		n := p.Rows()
		if r < n {
			return p, r
		}
		r -= n
	}
	panic(fmt.Sprintf("tensor %q: row out of range of its parts", t.Name))
}

// IsPalettized reports whether t is palettized (LUT1..LUT8 or LUTMIX).
func (t *Tensor) IsPalettized() bool {
	return t.Type == LUTMIX || (Encodings[t.Type].Bits > 0 && t.Pal != nil)
}

// Palette is the side data of a palettized tensor: weight[r][c] =
// LUT[group(r)][index(r, c)] * Scales[r] (Scales nil means 1).
type Palette struct {
	GroupSize int      // consecutive output rows that share one LUT (>= 1)
	LUT       []uint16 // float16 bits, NumGroups x (1 << bits) entries
	Scales    []uint16 // optional float16 bits, one per output row
	// ScaleCodes, when set, is how the row scales are stored: one byte per
	// row, Scales[r] = ScaleCodeF16(ScaleCodes[r]) (a log-spaced grid; the
	// LUTs carry the magnitude). Scales then holds the expanded values the
	// kernels read, and storage counts the codes only.
	ScaleCodes []uint8
}

// Row scale codes: scale(c) = 2^((32 - c) / 32) rounded to float16, for c
// in 0..255, so 1 is code 32, the largest scale 2 and the smallest
// 2^-6.97 (steps of 2.2%). Per-row scales normalise rows that share a
// LUT; one byte per row instead of a float16 halves their cost, which on
// narrow matrices (64 columns: 0.25 -> 0.125 bits per weight) buys more
// index bits than it costs in precision.
const ScaleCodeOne = 32

var scaleCodeTab = func() (t [256]uint16) {
	for c := range t {
		t[c] = F32ToF16(float32(math.Exp2(float64(ScaleCodeOne-c) / 32)))
	}
	return
}()

// ScaleCodeF16 is the float16 scale of code c.
func ScaleCodeF16(c uint8) uint16 { return scaleCodeTab[c] }

// ScaleCode returns the code whose scale is nearest to s in log terms
// (s <= 0 or NaN gives the smallest, 255; beyond the range, the end).
func ScaleCode(s float32) uint8 {
	if !(s > 0) {
		return 255
	}
	c := math.Round(ScaleCodeOne - 32*math.Log2(float64(s)))
	return uint8(max(0, min(255, c)))
}

// ExpandScaleCodes sets p.Scales from p.ScaleCodes.
func (p *Palette) ExpandScaleCodes() {
	p.Scales = make([]uint16, len(p.ScaleCodes))
	for r, c := range p.ScaleCodes {
		p.Scales[r] = scaleCodeTab[c]
	}
}

// Rows is the number of output rows (1 for a vector).
func (t *Tensor) Rows() int {
	if len(t.Shape) < 2 {
		return 1
	}
	return t.Shape[0]
}

// Cols is the length of one row (the input width of a matrix).
func (t *Tensor) Cols() int {
	if len(t.Shape) == 0 {
		return 0
	}
	return t.Shape[len(t.Shape)-1]
}

// Elems is the number of elements.
func (t *Tensor) Elems() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// NumGroups is the number of LUT groups of a palettized tensor.
func (t *Tensor) NumGroups() int {
	if t.Pal == nil || t.Pal.GroupSize <= 0 {
		return 0
	}
	return (t.Rows() + t.Pal.GroupSize - 1) / t.Pal.GroupSize
}

// Bytes is the storage size of the tensor in its encoding, side data included.
func (t *Tensor) Bytes() int64 {
	n := int64(len(t.Data))
	for _, p := range t.Parts {
		n += p.Bytes()
	}
	if t.Pal != nil {
		n += 2 * int64(len(t.Pal.LUT))
		if t.Pal.ScaleCodes != nil {
			n += int64(len(t.Pal.ScaleCodes))
		} else {
			n += 2 * int64(len(t.Pal.Scales))
		}
	}
	return n
}

// Check verifies that Data (and Pal) have exactly the size the encoding
// requires for Shape.
func (t *Tensor) Check() error {
	enc, ok := Encodings[t.Type]
	if !ok {
		return fmt.Errorf("tensor %q: unknown encoding %d", t.Name, t.Type)
	}
	for _, d := range t.Shape {
		if d <= 0 {
			return fmt.Errorf("tensor %q: shape %v has a non-positive dimension", t.Name, t.Shape)
		}
	}
	if t.Type == LUTMIX {
		return t.checkParts()
	}
	if t.Parts != nil {
		return fmt.Errorf("tensor %q (%s): has row parts, which only lutmix tensors have", t.Name, enc.Name)
	}
	want := enc.DataBytes(t.Elems())
	if int64(len(t.Data)) != want {
		return fmt.Errorf("tensor %q (%s, shape %v): data is %d bytes, expected %d", t.Name, enc.Name, t.Shape, len(t.Data), want)
	}
	if enc.Bits > 0 { // palettized
		if t.Pal == nil || t.Pal.GroupSize <= 0 {
			return fmt.Errorf("tensor %q (%s): missing palette", t.Name, enc.Name)
		}
		if g := t.NumGroups() * (1 << enc.Bits); len(t.Pal.LUT) != g {
			return fmt.Errorf("tensor %q (%s): LUT has %d entries, expected %d", t.Name, enc.Name, len(t.Pal.LUT), g)
		}
		if t.Pal.Scales != nil && len(t.Pal.Scales) != t.Rows() {
			return fmt.Errorf("tensor %q (%s): %d scales, expected %d", t.Name, enc.Name, len(t.Pal.Scales), t.Rows())
		}
		if c := t.Pal.ScaleCodes; c != nil {
			if len(c) != len(t.Pal.Scales) {
				return fmt.Errorf("tensor %q (%s): %d scale codes for %d scales, expected %d", t.Name, enc.Name, len(c), len(t.Pal.Scales), t.Rows())
			}
			for r, k := range c {
				if t.Pal.Scales[r] != scaleCodeTab[k] {
					return fmt.Errorf("tensor %q (%s): row %d: scale %v is not its code %d's %v", t.Name, enc.Name, r, F16ToF32(t.Pal.Scales[r]), k, F16ToF32(scaleCodeTab[k]))
				}
			}
		}
	}
	return nil
}

// checkParts verifies a LUTMIX tensor: a matrix whose parts are valid
// palettized matrices of its width that cover its rows exactly.
func (t *Tensor) checkParts() error {
	if len(t.Shape) != 2 {
		return fmt.Errorf("tensor %q (lutmix): shape %v, expected a matrix", t.Name, t.Shape)
	}
	if len(t.Data) != 0 || t.Pal != nil {
		return fmt.Errorf("tensor %q (lutmix): has data or a palette of its own; a lutmix tensor's data is in its parts", t.Name)
	}
	if len(t.Parts) == 0 {
		return fmt.Errorf("tensor %q (lutmix): no parts", t.Name)
	}
	rows := 0
	for i, p := range t.Parts {
		if p == nil {
			return fmt.Errorf("tensor %q (lutmix): part %d is missing", t.Name, i)
		}
		if p.Type == LUTMIX || Encodings[p.Type].Bits == 0 {
			return fmt.Errorf("tensor %q (lutmix): part %d is %s, expected a palettized encoding lut1..lut8", t.Name, i, Encodings[p.Type].Name)
		}
		if len(p.Shape) != 2 || p.Shape[1] != t.Shape[1] {
			return fmt.Errorf("tensor %q (lutmix): part %d has shape %v, expected [rows, %d]", t.Name, i, p.Shape, t.Shape[1])
		}
		if err := p.Check(); err != nil {
			return fmt.Errorf("tensor %q (lutmix): part %d: %w", t.Name, i, err)
		}
		rows += p.Shape[0]
	}
	if rows != t.Shape[0] {
		return fmt.Errorf("tensor %q (lutmix): parts hold %d rows, expected %d", t.Name, rows, t.Shape[0])
	}
	return nil
}

// F32 returns the tensor as float32 values. For an F32 tensor whose bytes are
// 4-aligned this is a view of Data, not a copy; other encodings are decoded
// into a new slice with the encoding's reference decoder.
func (t *Tensor) F32() []float32 {
	if t.Type == F32 && len(t.Data) > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), len(t.Data)/4)
	}
	out := make([]float32, t.Elems())
	cols := t.Cols()
	for r := 0; r < t.Rows(); r++ {
		t.DecodeRow(r, out[r*cols:(r+1)*cols])
	}
	return out
}

// DecodeRow decodes row r into dst (len Cols) with the reference decoder.
func (t *Tensor) DecodeRow(r int, dst []float32) {
	Encodings[t.Type].DecodeRow(t, r, dst)
}

// NewF32 makes an F32 tensor that owns a copy of v.
func NewF32(name string, v []float32, shape ...int) *Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return &Tensor{Name: name, Shape: append([]int(nil), shape...), Type: F32, Data: b}
}

// F16ToF32 converts IEEE half bits to float32.
func F16ToF32(h uint16) float32 { return float16.Frombits(h).Float32() }

// F32ToF16 converts float32 to IEEE half bits, rounding to nearest even.
func F32ToF16(f float32) uint16 { return float16.Fromfloat32(f).Bits() }

// BF16ToF32 converts bfloat16 bits to float32.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
