//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
	"time"
)

// BenchmarkI8Decode compares the int8 decode row kernels with the
// streaming probe measured in the same rounds: per round, the probe (the
// best of 3 Sum passes over a 64 MiB buffer, as StreamSumBuf), then one
// MatVec (ModeInt8) pass over 64 MiB of indices of each width at
// TinyLlama-1.1B's column counts (2048: q, k, v, o, gate, up; 5632:
// down). Each ratio is the kernel's GB/s of index bytes over the probe's
// GB/s of that round; the reported figure is the median over the rounds
// (b.N rounds; use -benchtime 15x or more), which tolerates a shared,
// noisy machine. "cache2048" (64 rows) and "cache8192" (16 rows) run the
// row kernel alone on 32 KiB of indices (L1/L2 resident): its compute
// ceiling as a ratio to the same probe, and (the difference) its per-row
// cost.
//
//	go test -run XXX -bench I8Decode -benchtime 21x ./runtime/kernels/
func BenchmarkI8Decode(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	prev := SetMode(ModeInt8)
	defer SetMode(prev)
	a := make([]float32, (64<<20)/4)
	for i := range a {
		a[i] = float32(i & 7)
	}
	type kcase struct {
		name string
		run  func() float64 // seconds per pass
		nb   float64        // index bytes per pass
	}
	var cases []kcase
	x := randVec(rng, 5632)
	for _, bits := range []int{2, 3, 4} {
		for _, cols := range []int{2048, 5632} {
			rows := (64 << 20) * 8 / bits / cols
			w := bigLUTTensor(rng, bits, rows, cols)
			out := make([]float32, rows)
			xc := x[:cols]
			cases = append(cases, kcase{fmt.Sprintf("lut%d/%d", bits, cols), func() float64 {
				t := time.Now()
				MatVec(w, xc, out, 0, rows)
				return time.Since(t).Seconds()
			}, float64(len(w.Data))})
		}
		// cache resident: 64 rows x 2048 (and 16 x 8192: per-row costs), 200 passes
		for _, rc := range [][2]int{{64, 2048}, {16, 8192}} {
			nr, nc := rc[0], rc[1]
			w := lutTensor(rng, bits, nr, nc, 16, false)
			L, _ := layoutOf(w)
			tab := i8TableOf(w, bits)
			q := new(qx)
			xx := randVec(rng, nc)
			q.quantize(xx)
			q.permute(bits)
			out := make([]float32, nr)
			cases = append(cases, kcase{fmt.Sprintf("lut%d/cache%d", bits, nc), func() float64 {
				p0, p1 := L.rowPlanes(w.Data, 0)
				t := time.Now()
				for i := 0; i < 200; i++ {
					i8Rows(bits, p0, p1, L.rowB, nr, q, tab, 0, 16, 16, out)
				}
				return time.Since(t).Seconds()
			}, 200 * float64(len(w.Data))})
		}
	}
	ratios := make([][]float64, len(cases))
	var probe []float64
	for _, c := range cases { // warm up: tables, pools, page faults
		c.run()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// the probe: best of 3 passes (as StreamSumBuf)
		gs := 0.0
		for p := 0; p < 3; p++ {
			t := time.Now()
			streamSink += Sum(a)
			gs = max(gs, float64(4*len(a))/time.Since(t).Seconds()/1e9)
		}
		probe = append(probe, gs)
		for k, c := range cases {
			ratios[k] = append(ratios[k], c.nb/c.run()/1e9/gs)
		}
	}
	b.StopTimer()
	med := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(probe), "probeGB/s")
	for k, c := range cases {
		b.ReportMetric(med(ratios[k]), c.name+"-x")
	}
}

// BenchmarkI8TabBuild times building the int8 tables of one 5632-row
// tensor's palette (352 groups of 16 rows), per width.
func BenchmarkI8TabBuild(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	for _, bits := range []int{2, 3, 4} {
		w := bigLUTTensor(rng, bits, 5632, 128)
		b.Run(fmt.Sprintf("lut%d", bits), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				buildI8Tab(w.Pal.LUT, bits)
			}
		})
	}
}
