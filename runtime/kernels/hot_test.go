package kernels

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// BenchmarkHot runs the kernels on a matrix that fits in L2 to show their
// compute throughput (elements per ns) without the DRAM limit.
func BenchmarkHot(b *testing.B) {
	for _, dt := range []ir.DType{ir.F32, ir.F16, ir.LUT4, ir.LUT3, ir.LUT2, ir.LUT1, ir.LUT6, ir.LUT8} {
		rows, cols := 64, 2048
		b.Run(fmt.Sprintf("%s/%dx%d", ir.Encodings[dt].Name, rows, cols), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			w := benchTensor(rng, dt, rows, cols)
			x := make([]float32, cols)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			out := make([]float32, rows)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				MatVec(w, x, out, 0, rows)
			}
			b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
