//go:build amd64 && !purego

package kernels

import (
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// bigLUTTensor is a palettized tensor with random index bytes (uniform
// indices) too large for the caches, for streaming benchmarks.
func bigLUTTensor(rng *rand.Rand, bits, rows, cols int) *ir.Tensor {
	dt, _ := ir.LUTType(bits)
	data := make([]byte, ir.PackedBytes(bits, rows*cols))
	rng.Read(data)
	gs := 16
	ng := (rows + gs - 1) / gs
	pal := &ir.Palette{GroupSize: gs, LUT: make([]uint16, ng<<bits)}
	for i := range pal.LUT {
		pal.LUT[i] = ir.F32ToF16(float32(rng.NormFloat64()))
	}
	return &ir.Tensor{Name: "w", Shape: []int{rows, cols}, Type: dt, Data: data, Pal: pal}
}

// BenchmarkI8Stream times MatVec in ModeInt8 over a 64 MiB tensor of
// indices (2048 columns, twice the 32 MiB L3 of the build machine), as
// decode streams weights; GB/s of index bytes. "sum" is the streaming
// probe over a buffer of the same size: the bound.
func BenchmarkI8Stream(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const cols = 2048
	prev := SetMode(ModeInt8)
	defer SetMode(prev)
	x := randVec(rng, 5632)
	for _, bits := range []int{4, 3, 2} {
		rows := (64 << 20) * 8 / bits / cols
		w := bigLUTTensor(rng, bits, rows, cols)
		out := make([]float32, rows)
		nb := float64(len(w.Data))
		b.Run("lut"+string(rune('0'+bits)), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				MatVec(w, x[:cols], out, 0, rows)
			}
			b.ReportMetric(nb*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
	a := make([]float32, (64<<20)/4)
	for i := range a {
		a[i] = float32(i & 7)
	}
	b.Run("sum", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Sum(a)
		}
		b.ReportMetric(float64(4*len(a))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	})
}
