package ir

import (
	"bytes"
	"math"
	"testing"
)

func modelRate(m *Model) float64 {
	var b, n float64
	for _, t := range m.Tensors {
		if len(t.Shape) == 2 {
			b += 8 * float64(t.Bytes())
			n += float64(t.Elems())
		}
	}
	return b / n
}

func TestSyntheticPalettized(t *testing.T) {
	for _, c := range []struct {
		name string
		bpw  float64
	}{{"stories110M", 3.7}, {"stories260K", 4}, {"stories260K", 2}, {"stories260K", 3}, {"stories260K", 16}} {
		m, err := SyntheticPalettized(c.name, c.bpw, 16, 7)
		if err != nil {
			t.Fatalf("%s %g: %v", c.name, c.bpw, err)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("%s %g: %v", c.name, c.bpw, err)
		}
		r := modelRate(m)
		if c.bpw != float64(int(c.bpw)) && math.Abs(r-c.bpw) > 0.05 {
			t.Errorf("%s %g: rate %.4f", c.name, c.bpw, r)
		}
		// Decoded weights look like N(0, 0.02) quantiles.
		if n := m.Tensors[Blk(0, FFNUp)]; c.bpw == 16 && n.Type != F16 || c.bpw == 3 && n.Type != LUT3 {
			t.Errorf("%s %g: ffn_up is %s", c.name, c.bpw, Encodings[n.Type].Name)
		}
		w := m.Tensors[Blk(0, AttnQ)]
		row := make([]float32, w.Cols())
		w.DecodeRow(1, row)
		var ss float64
		for _, v := range row {
			ss += float64(v * v)
		}
		if sd := math.Sqrt(ss / float64(len(row))); sd < 0.01 || sd > 0.03 {
			t.Errorf("%s %g: row sd %.4f, want about 0.02", c.name, c.bpw, sd)
		}
	}
	// Deterministic.
	a, _ := SyntheticPalettized("stories260K", 3.7, 16, 3)
	b, _ := SyntheticPalettized("stories260K", 3.7, 16, 3)
	for n, ta := range a.Tensors {
		if !bytes.Equal(ta.Data, b.Tensors[n].Data) {
			t.Fatalf("%s differs between two builds", n)
		}
	}
	if _, err := SyntheticPalettized("stories110M", 0.5, 16, 1); err == nil {
		t.Error("0.5 bpw accepted")
	}
	if _, err := SyntheticPalettized("nope", 4, 16, 1); err == nil {
		t.Error("unknown shape accepted")
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	a, _ := Synthetic("stories260K", 5)
	b, _ := Synthetic("stories260K", 5)
	for n, ta := range a.Tensors {
		if !bytes.Equal(ta.Data, b.Tensors[n].Data) {
			t.Fatalf("%s differs", n)
		}
	}
	v := a.Tensors[Blk(0, FFNUp)].F32()
	var s, ss float64
	for _, x := range v {
		s += float64(x)
		ss += float64(x * x)
	}
	mean, sd := s/float64(len(v)), math.Sqrt(ss/float64(len(v)))
	if math.Abs(mean) > 0.001 || math.Abs(sd-0.02) > 0.001 {
		t.Errorf("mean %v sd %v", mean, sd)
	}
}
