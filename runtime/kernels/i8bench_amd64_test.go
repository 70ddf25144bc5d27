//go:build amd64 && !purego

package kernels

import (
	"fmt"
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
	for _, bits := range []int{4, 2} {
		b.Run(fmt.Sprintf("quantize/lut%d", bits), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				q.quantize(x)
				q.permute(bits)
			}
		})
	}
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
				i8Rows(bits, p0, p1, L.rowB, 64, q, tab, 0, 16, 16, out)
			}
			b.ReportMetric(float64(64*2048)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}

// BenchmarkI8Tile times the lut4 tile kernel alone on cache-resident data
// (64 rows x 2048 cols x 4 tokens): the compute ceiling of int8 prefill.
func BenchmarkI8Tile(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const rows, cols = 64, 2048
	w := lutTensor(rng, 4, rows, cols, 16, false)
	L, _ := layoutOf(w)
	tab := i8TableOf(w, 4)
	qb := new(qxBatch)
	qb.quantize(randVec(rng, 4*cols), 4, cols, 4)
	var o [8]float32
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < rows; r += 2 {
			pa, _ := L.rowPlanes(w.Data, r)
			pb, _ := L.rowPlanes(w.Data, r+1)
			i8Tile(4, pa, pb, nil, nil, tab.u[16*(r/16):], tab.u[16*(r/16):], qb, 0, 0, cols, &o)
		}
	}
	b.ReportMetric(float64(rows*cols*4)*float64(b.N)/b.Elapsed().Seconds()/1e9, "G-MAC/s")
}
