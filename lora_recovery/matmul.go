package lorarecovery

import (
	"sync"

	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// Matmul kernels of the trainer. The big products run through gemm, an
// outer-product kernel (C += a[i, k] * B[k, :] over k; AVX2/FMA tiles of
// 4 rows x 16 (or 8) columns on amd64, plain loops for the edges and elsewhere):
// forward out = inp W^T with W^T (lin.WT) as B, the input gradient
// dinp += dout W with W as B, and the weight gradient dW = dout^T inp with
// inp as B. Every output is summed over k in order by the same code
// whatever the batch or thread split, so results do not depend on
// threading. Products without a transposed weight at hand (the LoRA A x)
// run on runtime/kernels.MatMulF32 (dot-product form).

// matmulForward: out (T,O) = inp (T,I) @ W^T, W (O,I).
func matmulForward(out, inp, W []float32, T, I, O int) {
	if T == 0 || O == 0 {
		return
	}
	kernels.MatMulF32(W[:O*I], O, I, inp[:T*I], out[:T*O], T)
}

// matmulT: out (T,O) (+)= inp (T,I) @ WT, WT (I,O) -- the forward
// product with the transposed weight, or the input gradient dout @ W.
func matmulT(out, inp, WT []float32, T, I, O int, acc bool) {
	gemm(out, O, inp, I, 1, WT, O, T, O, I, acc)
}

// matmulForwardAcc: out (T,O) += inp (T,I) @ W^T, W (O,I).
func matmulForwardAcc(out, inp, W []float32, T, I, O int) {
	if T == 0 || O == 0 {
		return
	}
	buf := getScratch(T * O)
	tmp := (*buf)[:T*O]
	kernels.MatMulF32(W[:O*I], O, I, inp[:T*I], tmp, T)
	addTo(out[:T*O], tmp)
	putScratch(buf)
}

// gemmTN: C (M x N) = A^T B with A (T x M), B (T x N), all row-major.
func gemmTN(C, A, B []float32, T, M, N int) {
	gemm(C, N, A, 1, M, B, N, M, N, T, false)
}

// gemm: C[i*ldc+j] (+ when acc)= sum_{k<K} A[i*sam+k*sak] * B[k*ldb+j]
// for i < M, j < N (strides in elements).
func gemm(C []float32, ldc int, A []float32, sam, sak int, B []float32, ldb int, M, N, K int, acc bool) {
	if M == 0 || N == 0 {
		return
	}
	m4, n8 := gemmTiles(C, ldc, A, sam, sak, B, ldb, M, N, K, acc)
	gemmLoops(C, ldc, A, sam, sak, B, ldb, 0, m4, n8, N, K, acc)
	gemmLoops(C, ldc, A, sam, sak, B, ldb, m4, M, 0, N, K, acc)
}

// gemmLoops is gemm for rows [i0, i1) and columns [j0, j1) in plain Go.
func gemmLoops(C []float32, ldc int, A []float32, sam, sak int, B []float32, ldb int, i0, i1, j0, j1, K int, acc bool) {
	if j0 >= j1 {
		return
	}
	for i := i0; i < i1; i++ {
		c := C[i*ldc+j0 : i*ldc+j1]
		if !acc {
			clear(c)
		}
		for k := 0; k < K; k++ {
			a := A[i*sam+k*sak]
			b := B[k*ldb+j0 : k*ldb+j1]
			b = b[:len(c)]
			for j, v := range b {
				c[j] += a * v
			}
		}
	}
}

// addTo: y += x.
func addTo(y, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += v
	}
}

// scratchPool holds float32 buffers for the kernels' temporaries, so the
// hot loop does not allocate.
var scratchPool sync.Pool

func getScratch(n int) *[]float32 {
	if p, ok := scratchPool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n)
	return &s
}

func putScratch(p *[]float32) { scratchPool.Put(p) }

// transpose returns W^T (I,O) of W (O,I).
func transpose(W []float32, O, I int) []float32 {
	out := make([]float32, len(W))
	transposeInto(out, W, O, I)
	return out
}

// transposeInto writes W^T (I,O) of W (O,I) to out.
func transposeInto(out, W []float32, O, I int) {
	const bs = 32
	for o0 := 0; o0 < O; o0 += bs {
		for i0 := 0; i0 < I; i0 += bs {
			for o := o0; o < min(o0+bs, O); o++ {
				w := W[o*I : (o+1)*I]
				for i := i0; i < min(i0+bs, I); i++ {
					out[i*O+o] = w[i]
				}
			}
		}
	}
}
