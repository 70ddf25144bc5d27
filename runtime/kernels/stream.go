package kernels

import (
	"time"
)

// StreamSum measures single-thread streaming read bandwidth: it sums a
// float32 array of the given size (bytes; use well above the last-level
// cache, e.g. 256 MiB) with the SIMD sum kernel, repeating for at least
// minTime and at least 3 passes, and returns the best pass in GB/s
// (1e9 bytes per second). It is the yardstick the kernel benchmarks quote
// their bandwidth against ("squeeze bench" reports it too).
func StreamSum(bytes int, minTime time.Duration) float64 {
	n := bytes / 4 &^ 63
	if n < 64 {
		n = 64
	}
	a := make([]float32, n)
	for i := range a {
		a[i] = float32(i & 7)
	}
	return StreamSumBuf(a, minTime)
}

// StreamSumBuf is StreamSum over a caller-owned array. Each pass reads
// the array once as one stream (Sum) and once as two (Sum2, its halves
// side by side); the best of either is the bandwidth. Until session 9 the
// probe read one stream only, which on the build machine understated
// what one thread can stream by ~20% (and more than the two-stream decode
// kernels then read).
func StreamSumBuf(a []float32, minTime time.Duration) float64 {
	best := 0.0
	start := time.Now()
	var sink float32
	reads := [...]func([]float32) float32{Sum, Sum2}
	for pass := 0; pass < 3 || time.Since(start) < minTime; pass++ {
		for _, f := range reads {
			t := time.Now()
			sink += f(a)
			d := time.Since(t).Seconds()
			if d > 0 {
				if g := float64(4*len(a)) / d / 1e9; g > best {
					best = g
				}
			}
		}
	}
	streamSink = sink
	return best
}

var streamSink float32
