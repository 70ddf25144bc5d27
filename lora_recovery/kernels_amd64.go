//go:build amd64 && !purego

package lorarecovery

import "golang.org/x/sys/cpu"

// The trainer's assembly kernels (amd64, AVX2 + FMA): the gemm tiles
// gemm4x16/gemm4x8 (gemm_amd64.s). The purego tag and other architectures
// use the Go loops (kernels_other.go). Exponentials go through
// runtime/kernels (expRow).

var useFMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func gemm4x16(a *float32, sam, sak int, b *float32, ldb int, c *float32, ldc int, k int, acc int)

//go:noescape
func gemm4x8(a *float32, sam, sak int, b *float32, ldb int, c *float32, ldc int, k int, acc int)

// gemmTiles runs the 4-row tiles of gemm (16 columns, then 8) with
// AVX2/FMA and returns the rows and columns they covered (0, 0 without the
// instructions).
func gemmTiles(C []float32, ldc int, A []float32, sam, sak int, B []float32, ldb int, M, N, K int, acc bool) (m4, n8 int) {
	if !useFMA || K == 0 {
		return 0, 0
	}
	m4, n16, n8 := M&^3, N&^15, N&^7
	if m4 == 0 || n8 == 0 {
		return 0, 0
	}
	// Bounds of every element the tiles read and write.
	_ = A[(m4-1)*sam+(K-1)*sak]
	_ = B[(K-1)*ldb+n8-1]
	_ = C[(m4-1)*ldc+n8-1]
	ac := 0
	if acc {
		ac = 1
	}
	for i := 0; i < m4; i += 4 {
		for j := 0; j < n16; j += 16 {
			gemm4x16(&A[i*sam], sam, sak, &B[j], ldb, &C[i*ldc+j], ldc, K, ac)
		}
		if n8 > n16 {
			gemm4x8(&A[i*sam], sam, sak, &B[n16], ldb, &C[i*ldc+n16], ldc, K, ac)
		}
	}
	return m4, n8
}
