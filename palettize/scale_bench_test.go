package palettize

import "testing"

// BenchmarkPalettizeTinyLlamaLayer palettizes one TinyLlama-shaped
// 2048x2048 projection (synthetic weights) at 4 bits, 16 rows per LUT.
func BenchmarkPalettizeTinyLlamaLayer(b *testing.B) {
	src := randTensor("blk.0.attn_q", 2048, 2048, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := PalettizeTensor(src, Options{Bits: 4, GroupSize: 16, Workers: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackMul is the calibration backward product dY W for one
// TinyLlama ffn_down (2048 x 5632) over 128 positions, single goroutine.
func BenchmarkBackMul(b *testing.B) {
	w := transposeOf(randTensor("blk.0.ffn_down", 2048, 5632, 1))
	const n = 128
	dy := make([]float32, n*2048)
	for i := range dy {
		dy[i] = float32(i%7) - 3
	}
	dx := make([]float32, n*5632)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.backMul(dy, dx, n, 1)
	}
}

// BenchmarkPalettizeFast is the compile --fast path on one TinyLlama-shaped
// 2048x2048 projection: FastBins, per-column importance, no stats (as
// Apply in compile), 16 rows per LUT, one goroutine.
func BenchmarkPalettizeFast(b *testing.B) {
	src := randTensor("blk.0.attn_q", 2048, 2048, 1)
	imp := make([]float32, 2048)
	for i := range imp {
		imp[i] = float32(1 + i%13)
	}
	for _, scale := range []bool{false, true} {
		name := "noscale"
		if scale {
			name = "rowscale"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, _, err := PalettizeTensor(src, Options{Bits: 4, GroupSize: 16, PerRowScale: scale, Importance: imp, FastBins: true, NoStats: true, Workers: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
