//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math/rand"
	"sync"
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

// BenchmarkI8Threads is BenchmarkI8Stream on one and two goroutines (each
// half of the rows), beside the same kernels on an 8 MiB tensor that stays
// in the last-level cache ("hot"), and the streaming probe on one and two
// goroutines (one stream per goroutine, "sum", and two, "sum2"). Where the
// hot rate on two goroutines is no higher than the DRAM rate, decode on that many threads is bound by the core, not by
// memory (on the 2-vCPU build machine the two vCPUs are one core:
// docs/PERF.md, session 7). Gw/s counts weights.
func BenchmarkI8Threads(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	const cols = 2048
	prev := SetMode(ModeInt8)
	defer SetMode(prev)
	x := randVec(rng, cols)
	split := func(nt, n int, f func(lo, hi int)) {
		var wg sync.WaitGroup
		for t := range nt {
			wg.Add(1)
			go func() { defer wg.Done(); f(t*n/nt, (t+1)*n/nt) }()
		}
		wg.Wait()
	}
	for _, bits := range []int{4, 3, 2} {
		for _, mem := range []struct {
			name string
			mib  int
		}{{"dram", 64}, {"hot", 8}} {
			rows := (mem.mib << 20) * 8 / bits / cols
			w := bigLUTTensor(rng, bits, rows, cols)
			out := make([]float32, rows)
			nb := float64(len(w.Data))
			for _, nt := range []int{1, 2} {
				b.Run(fmt.Sprintf("%s/lut%d/t%d", mem.name, bits, nt), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						split(nt, rows, func(lo, hi int) { MatVec(w, x, out, lo, hi) })
					}
					s := b.Elapsed().Seconds()
					b.ReportMetric(nb*float64(b.N)/s/1e9, "GB/s")
					b.ReportMetric(nb*8/float64(bits)*float64(b.N)/s/1e9, "Gw/s")
				})
			}
		}
	}
	a := make([]float32, (64<<20)/4)
	for i := range a {
		a[i] = float32(i & 7) // touched: untouched pages all read the one zero page
	}
	for _, nt := range []int{1, 2} {
		b.Run(fmt.Sprintf("sum/t%d", nt), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				split(nt, len(a), func(lo, hi int) { Sum(a[lo:hi]) })
			}
			b.ReportMetric(float64(4*len(a))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		// two streams per goroutine, as the decode kernels read since session 9
		b.Run(fmt.Sprintf("sum2/t%d", nt), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				split(nt, len(a), func(lo, hi int) { Sum2(a[lo:hi]) })
			}
			b.ReportMetric(float64(4*len(a))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
