package ir

import (
	"math/rand"
	"testing"
)

// TestUnpackIndexRange: for every width and ragged sizes, every range of
// the packed indices unpacks to what was packed (and to UnpackIndex), and a
// palettized row decodes to LUT[index] * row scale, bit for bit, for rows
// that start mid-block (172 columns: the stories260K FFN width).
func TestUnpackIndexRange(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, bits := range PaletteBits {
		for _, n := range []int{1, 15, 16, 17, 127, 128, 129, 1000, 172 * 7} {
			idx := make([]uint8, n)
			for i := range idx {
				idx[i] = uint8(rng.Intn(1 << bits))
			}
			data := PackIndices(bits, idx)
			all := UnpackIndices(bits, data, n)
			for i := range idx {
				if all[i] != idx[i] || UnpackIndex(bits, data, n, i) != idx[i] {
					t.Fatalf("bits %d n %d: element %d unpacks to %d / %d, packed %d", bits, n, i, all[i], UnpackIndex(bits, data, n, i), idx[i])
				}
			}
			for it := 0; it < 50; it++ {
				e0 := rng.Intn(n)
				cnt := rng.Intn(n - e0 + 1)
				dst := make([]uint8, cnt)
				for i := range dst {
					dst[i] = 0xff // must be overwritten
				}
				UnpackIndexRange(bits, data, n, e0, dst)
				for i, v := range dst {
					if v != idx[e0+i] {
						t.Fatalf("bits %d n %d range [%d,+%d): element %d is %d, packed %d", bits, n, e0, cnt, e0+i, v, idx[e0+i])
					}
				}
			}
		}
		// rows of 172 columns with per-row scales: DecodeRow is LUT * scale
		const rows, cols, gs = 7, 172, 2
		idx := make([]uint8, rows*cols)
		for i := range idx {
			idx[i] = uint8(rng.Intn(1 << bits))
		}
		dt, _ := LUTType(bits)
		lut := make([]uint16, ((rows+gs-1)/gs)<<bits)
		for i := range lut {
			lut[i] = F32ToF16(float32(rng.NormFloat64()))
		}
		sc := make([]uint16, rows)
		for i := range sc {
			sc[i] = F32ToF16(0.5 + rng.Float32())
		}
		w := &Tensor{Name: "w", Shape: []int{rows, cols}, Type: dt, Data: PackIndices(bits, idx), Pal: &Palette{GroupSize: gs, LUT: lut, Scales: sc}}
		row := make([]float32, cols)
		for r := 0; r < rows; r++ {
			w.DecodeRow(r, row)
			for c, v := range row {
				want := F16ToF32(lut[(r/gs)<<bits+int(idx[r*cols+c])]) * F16ToF32(sc[r])
				if v != want {
					t.Fatalf("bits %d row %d col %d: %v, want %v", bits, r, c, v, want)
				}
			}
		}
	}
}
