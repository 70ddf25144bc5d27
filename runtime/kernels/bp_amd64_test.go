//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func TestBP(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	cols := 256
	idx := make([]uint8, cols)
	for i := range idx {
		idx[i] = uint8(rng.Intn(16))
	}
	data := ir.PackIndices(4, idx)
	lut := make([]uint16, 16)
	for i := range lut {
		lut[i] = ir.F32ToF16(float32(rng.NormFloat64()))
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	var want float32
	for i := range x {
		want += ir.F16ToF32(lut[idx[i]]) * x[i]
	}
	xp := make([]float32, cols)
	permuteX4(x, xp)
	got := lut4DotBP(&data[0], cols/32, &xp[0], &lut[0])
	if math.Abs(float64(got-want)) > 1e-4 {
		t.Fatalf("got %v want %v", got, want)
	}
}

func BenchmarkLut4Variants(b *testing.B) {
	cols := 2048 * 16
	data := make([]byte, cols/2)
	rand.Read(data)
	lut := make([]uint16, 16)
	for i := range lut {
		lut[i] = ir.F32ToF16(float32(i) * 0.01)
	}
	x := make([]float32, cols)
	xp := make([]float32, cols)
	b.Run("vpermps", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			streamSink += lut4DotAVX2(&data[0], cols/32, &x[0], &lut[0])
		}
		b.ReportMetric(float64(cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	})
	b.Run("byteplane", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			streamSink += lut4DotBP(&data[0], cols/32, &xp[0], &lut[0])
		}
		b.ReportMetric(float64(cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	})
}
