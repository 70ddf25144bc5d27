//go:build amd64 && !purego

package kernels

import (
	"math/rand"
	"testing"
)

// BenchmarkI8Parts times the int8 pieces separately on a cache-resident
// 64x2048 lut4 tensor: activation quantization, table lookup, the row
// kernel alone.
func BenchmarkI8Parts(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	w := lutTensor(rng, 4, 64, 2048, 16, false)
	x := randVec(rng, 2048)
	L, _ := layoutOf(w)
	q := new(qx)
	b.Run("quantize", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			q.quantize(x)
			q.permute(4)
		}
	})
	b.Run("table", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			i8TableOf(w, 4)
		}
	})
	tab := i8TableOf(w, 4)
	out := make([]float32, 64)
	for _, bits := range []int{4, 2, 3} {
		w := lutTensor(rng, bits, 64, 2048, 16, false)
		L, _ = layoutOf(w)
		tab = i8TableOf(w, bits)
		q.quantize(x)
		q.permute(bits)
		b.Run("rows"+string(rune('0'+bits)), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p0, p1 := L.rowPlanes(w.Data, 0)
				i8Rows(bits, p0, p1, L.rowB, 64, q, tab.u, 16, 16, out)
			}
			b.ReportMetric(float64(64*2048)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
