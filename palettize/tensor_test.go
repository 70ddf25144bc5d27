package palettize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func randTensor(name string, rows, cols int, seed uint64) *ir.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.02 * math.Exp(0.5*rng.NormFloat64()))
	}
	return ir.NewF32(name, v, rows, cols)
}

func TestPackIndicesExhaustive(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, bits := range ir.PaletteBits {
		for n := 0; n <= 300; n++ {
			idx := make([]uint8, n)
			for i := range idx {
				idx[i] = uint8(rng.IntN(1 << bits))
			}
			data := ir.PackIndices(bits, idx)
			if int64(len(data)) != ir.PackedBytes(bits, n) {
				t.Fatalf("bits %d n %d: %d bytes, PackedBytes %d", bits, n, len(data), ir.PackedBytes(bits, n))
			}
			for e := range idx {
				if got := ir.UnpackIndex(bits, data, n, e); got != idx[e] {
					t.Fatalf("bits %d n %d e %d: got %d want %d", bits, n, e, got, idx[e])
				}
			}
			if !bytes.Equal(ir.UnpackIndices(bits, data, n), idx) && n > 0 {
				t.Fatalf("bits %d n %d: UnpackIndices differs", bits, n)
			}
		}
		// every value in every position of one block
		per := 128
		for v := 0; v < 1<<bits; v++ {
			idx := make([]uint8, per+5)
			for i := range idx {
				idx[i] = uint8((v + i) % (1 << bits))
			}
			data := ir.PackIndices(bits, idx)
			for e := range idx {
				if got := ir.UnpackIndex(bits, data, len(idx), e); got != idx[e] {
					t.Fatalf("bits %d value %d e %d: got %d", bits, v, e, got)
				}
			}
		}
	}
}

func TestPalettizeRoundTripEveryLayout(t *testing.T) {
	rows, cols := 37, 24
	src := randTensor("blk.0.attn_q", rows, cols, 1)
	orig := src.F32()
	imp := make([]float32, cols)
	for c := range imp {
		imp[c] = float32(0.1 + float64(c%5))
	}
	for _, bits := range ir.PaletteBits {
		for _, g := range []int{1, 16, rows, 10, 0} {
			for _, scale := range []bool{false, true} {
				for _, method := range []string{"exact", "lloyd"} {
					opt := Options{Bits: bits, GroupSize: g, PerRowScale: scale, Method: method, Seed: 3, Importance: imp, MaxBins: 64}
					pt, st, err := PalettizeTensor(src, opt)
					if err != nil {
						t.Fatalf("bits %d g %d scale %v: %v", bits, g, scale, err)
					}
					if err := pt.Check(); err != nil {
						t.Fatal(err)
					}
					gs := g
					if gs == 0 {
						gs = rows
					}
					if pt.Pal.GroupSize != gs || pt.NumGroups() != (rows+gs-1)/gs {
						t.Fatalf("group size %d, groups %d", pt.Pal.GroupSize, pt.NumGroups())
					}
					if want := PalettizedBytes(rows, cols, bits, g, scale); st.Bytes != want || pt.Bytes() != want {
						t.Fatalf("bytes %d / %d, PalettizedBytes %d", st.Bytes, pt.Bytes(), want)
					}
					// Decode and check: decoded = LUT[idx]*scale, the chosen
					// entry is the nearest of its LUT, and the damage adds up.
					row := make([]float32, cols)
					var damage, sse float64
					for r := 0; r < rows; r++ {
						pt.DecodeRow(r, row)
						grp := r / gs
						lut := pt.Pal.LUT[grp<<bits : (grp+1)<<bits]
						s := float32(1)
						if scale {
							s = ir.F16ToF32(pt.Pal.Scales[r])
						}
						for c := 0; c < cols; c++ {
							e := r*cols + c
							id := ir.UnpackIndex(bits, pt.Data, rows*cols, e)
							if row[c] != ir.F16ToF32(lut[id])*s {
								t.Fatalf("bits %d g %d: decoded %v != LUT entry %v", bits, g, row[c], ir.F16ToF32(lut[id])*s)
							}
							x := float64(orig[e])
							d := math.Abs(x - float64(row[c]))
							for _, h := range lut {
								if alt := math.Abs(x - float64(ir.F16ToF32(h)*s)); alt < d {
									t.Fatalf("bits %d g %d: element %d assigned at distance %g, LUT has %g", bits, g, e, d, alt)
								}
							}
							damage += float64(imp[c]) * d * d
							sse += d * d
						}
					}
					if math.Abs(damage-st.Damage) > 1e-9*math.Max(damage, 1e-12) || math.Abs(sse/float64(rows*cols)-st.MSE) > 1e-9*st.MSE+1e-20 {
						t.Fatalf("bits %d g %d: stats damage %g mse %g, recomputed %g %g", bits, g, st.Damage, st.MSE, damage, sse/float64(rows*cols))
					}
				}
			}
		}
	}
}

func TestPalettizeLosslessAt8Bits(t *testing.T) {
	rows, cols := 20, 50
	v := make([]float32, rows*cols)
	rng := rand.New(rand.NewPCG(2, 2))
	levels := make([]float32, 200)
	for i := range levels {
		levels[i] = ir.F16ToF32(ir.F32ToF16(float32(rng.NormFloat64())))
	}
	for i := range v {
		v[i] = levels[rng.IntN(len(levels))]
	}
	src := ir.NewF32("t", v, rows, cols)
	for _, maxBins := range []int{0, 64} { // unbinned and binned paths
		pt, st, err := PalettizeTensor(src, Options{Bits: 8, MaxBins: maxBins})
		if err != nil {
			t.Fatal(err)
		}
		if st.Damage != 0 || st.MSE != 0 {
			t.Fatalf("maxBins %d: damage %g mse %g, expected lossless", maxBins, st.Damage, st.MSE)
		}
		got := pt.F32()
		for i := range v {
			if got[i] != v[i] {
				t.Fatalf("element %d: %v want %v", i, got[i], v[i])
			}
		}
	}
}

func TestPalettizeErrors(t *testing.T) {
	src := randTensor("blk.1.ffn_up", 8, 16, 1)
	cases := []struct {
		opt  Options
		want string
	}{
		{Options{Bits: 5}, "bits = 5"},
		{Options{Bits: 4, GroupSize: 9}, "group size 9"},
		{Options{Bits: 4, GroupSize: -1}, "group size -1"},
		{Options{Bits: 4, Importance: make([]float32, 3)}, "importance has 3 values, expected 16"},
		{Options{Bits: 4, Importance: append(make([]float32, 15), float32(math.NaN()))}, "importance[15]"},
		{Options{Bits: 4, Method: "magic"}, "method \"magic\""},
	}
	for _, c := range cases {
		_, _, err := PalettizeTensor(src, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "blk.1.ffn_up") {
			t.Fatalf("%+v: error %v, expected it to mention %q and the tensor", c.opt, err, c.want)
		}
	}
	v := src.F32()
	bad := append([]float32(nil), v...)
	bad[3*16+5] = float32(math.Inf(1))
	_, _, err := PalettizeTensor(ir.NewF32("w", bad, 8, 16), Options{Bits: 2})
	if err == nil || !strings.Contains(err.Error(), "[3, 5]") || !strings.Contains(err.Error(), "\"w\"") {
		t.Fatalf("Inf weight: %v", err)
	}
	bad[3*16+5] = float32(math.NaN())
	_, _, err = PalettizeTensor(ir.NewF32("w", bad, 8, 16), Options{Bits: 2, GroupSize: 2})
	if err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("NaN weight: %v", err)
	}
	// Out of float16 range without a scale: error; with a scale: fine.
	big := ir.NewF32("big", []float32{1e6, -1e6, 1, 2}, 2, 2)
	if _, _, err := PalettizeTensor(big, Options{Bits: 1}); err == nil || !strings.Contains(err.Error(), "float16") {
		t.Fatalf("overflow: %v", err)
	}
	_, _, err = PalettizeTensor(ir.NewF32("v", []float32{1, 2}, 2), Options{Bits: 1})
	if err == nil || !strings.Contains(err.Error(), "matrix") {
		t.Fatalf("vector: %v", err)
	}
}

func TestPalettizeDeterministicAcrossWorkers(t *testing.T) {
	src := randTensor("blk.0.ffn_down", 64, 96, 5)
	for _, method := range []string{"exact", "lloyd"} {
		a, _, err := PalettizeTensor(src, Options{Bits: 3, GroupSize: 8, Method: method, Seed: 9, Workers: 1, MaxBins: 128})
		if err != nil {
			t.Fatal(err)
		}
		b, _, _ := PalettizeTensor(src, Options{Bits: 3, GroupSize: 8, Method: method, Seed: 9, Workers: 7, MaxBins: 128})
		if !bytes.Equal(a.Data, b.Data) || !equalU16(a.Pal.LUT, b.Pal.LUT) {
			t.Fatalf("%s: results depend on Workers", method)
		}
	}
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPerRowScaleHelpsUnevenRows(t *testing.T) {
	rows, cols := 32, 64
	rng := rand.New(rand.NewPCG(4, 4))
	v := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		s := math.Exp(2 * rng.NormFloat64())
		for c := 0; c < cols; c++ {
			v[r*cols+c] = float32(s * rng.NormFloat64())
		}
	}
	src := ir.NewF32("t", v, rows, cols)
	_, plain, _ := PalettizeTensor(src, Options{Bits: 2})
	_, scaled, _ := PalettizeTensor(src, Options{Bits: 2, PerRowScale: true})
	if !(scaled.Damage < plain.Damage) {
		t.Fatalf("per-row scale damage %g not below plain %g on rows of very different scale", scaled.Damage, plain.Damage)
	}
}

func TestEstimateDamage(t *testing.T) {
	src := randTensor("t", 64, 32, 8)
	opt := Options{Bits: 2, GroupSize: 4}
	_, st, _ := PalettizeTensor(src, opt)
	d, _, sampled, err := EstimateDamage(src, opt, 0)
	if err != nil || sampled || math.Abs(d-st.Damage) > 1e-12*st.Damage {
		t.Fatalf("full estimate %g (sampled %v, err %v), actual %g", d, sampled, err, st.Damage)
	}
	d, _, sampled, _ = EstimateDamage(src, opt, 4)
	if !sampled || math.Abs(d-st.Damage) > 0.5*st.Damage {
		t.Fatalf("sampled estimate %g, actual %g", d, st.Damage)
	}
}
