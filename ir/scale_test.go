package ir

import (
	"math"
	"testing"
)

// The scale-code grid: code 32 is exactly 1, neighbours are 2.2% apart
// and increasing codes give decreasing scales; ScaleCode inverts it and
// picks the nearest code in log terms, clamping at the ends.
func TestScaleCodes(t *testing.T) {
	if F16ToF32(ScaleCodeF16(ScaleCodeOne)) != 1 || F16ToF32(ScaleCodeF16(0)) != 2 {
		t.Fatalf("code 32 = %v, code 0 = %v", F16ToF32(ScaleCodeF16(32)), F16ToF32(ScaleCodeF16(0)))
	}
	for c := 0; c < 256; c++ {
		s := F16ToF32(ScaleCodeF16(uint8(c)))
		want := math.Exp2(float64(32-c) / 32)
		if math.Abs(float64(s)-want) > want*1e-3 {
			t.Fatalf("code %d: %v, expected %v", c, s, want)
		}
		if c > 0 && !(s < F16ToF32(ScaleCodeF16(uint8(c-1)))) {
			t.Fatalf("code %d: %v not below code %d", c, s, c-1)
		}
		if got := ScaleCode(s); got != uint8(c) {
			t.Fatalf("ScaleCode(scale of %d = %v) = %d", c, s, got)
		}
		// just off the grid, towards the neighbour: still nearest
		if got := ScaleCode(float32(want * math.Exp2(0.4/32))); c > 0 && got != uint8(c) {
			t.Fatalf("ScaleCode slightly above code %d's scale = %d", c, got)
		}
	}
	for s, want := range map[float32]uint8{0: 255, -1: 255, 100: 0, 1e-9: 255, float32(math.NaN()): 255} {
		if got := ScaleCode(s); got != want {
			t.Errorf("ScaleCode(%v) = %d, expected %d", s, got, want)
		}
	}
	p := &Palette{ScaleCodes: []uint8{32, 0, 200}}
	p.ExpandScaleCodes()
	tt := &Tensor{Name: "w", Shape: []int{3, 16}, Type: LUT2, Data: PackIndices(2, make([]uint8, 48)), Pal: p}
	p.GroupSize, p.LUT = 3, make([]uint16, 4)
	if err := tt.Check(); err != nil {
		t.Fatal(err)
	}
	if b := tt.Bytes(); b != int64(len(tt.Data))+8+3 {
		t.Fatalf("Bytes = %d: codes must count one byte per row", b)
	}
	p.Scales[1] = F32ToF16(1.5)
	if err := tt.Check(); err == nil {
		t.Fatal("a scale off its code passed Check")
	}
}
