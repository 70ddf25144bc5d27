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
