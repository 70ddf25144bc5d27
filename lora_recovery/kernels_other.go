//go:build !amd64 || purego

package lorarecovery

// Portable build: no gemm tiles; gemm runs its Go loops for every element.

// gemmTiles: no vector kernel here; gemm's loops do every element.
func gemmTiles(C []float32, ldc int, A []float32, sam, sak int, B []float32, ldb int, M, N, K int, acc bool) (m4, n16 int) {
	return 0, 0
}
