package lorarecovery

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// gemmMinWork is the product size (T*I*O) from which gonum's Sgemm is used
// instead of the plain loops below.
const gemmMinWork = 4096

// Matmul kernels of the trainer. Every product is written as
// out[t, o] (+)= dot(inp[t, :], W[o, :]) with W row-major (O, I), so the
// inner loop runs over contiguous memory of both operands. Four token rows
// share each load of a weight row, and the weight rows are walked in blocks
// of about 64 KB so a block stays in cache while all tokens pass over it.
// The summation order is fixed, so results do not depend on threading.

// matmulForward: out (T,O) = inp (T,I) @ W^T, W (O,I).
func matmulForward(out, inp, W []float32, T, I, O int) {
	matmul(out, inp, W, T, I, O, false)
}

// matmulForwardAcc: out (T,O) += inp (T,I) @ W^T, W (O,I).
func matmulForwardAcc(out, inp, W []float32, T, I, O int) {
	matmul(out, inp, W, T, I, O, true)
}

func matmul(out, inp, W []float32, T, I, O int, acc bool) {
	if T == 0 || O == 0 {
		return
	}
	if T*I*O >= gemmMinWork {
		// gonum's Sgemm (SSE dot kernels on amd64): each output block is
		// summed in a fixed order, so it is deterministic too.
		beta := float32(0)
		if acc {
			beta = 1
		}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: T, Cols: I, Stride: I, Data: inp[:T*I]},
			blas32.General{Rows: O, Cols: I, Stride: I, Data: W[:O*I]},
			beta, blas32.General{Rows: T, Cols: O, Stride: O, Data: out[:T*O]})
		return
	}
	ob := 16384 / I
	if ob < 4 {
		ob = 4
	}
	for o0 := 0; o0 < O; o0 += ob {
		o1 := min(o0+ob, O)
		t := 0
		for ; t+4 <= T; t += 4 {
			x0 := inp[t*I : (t+1)*I]
			x1 := inp[(t+1)*I : (t+2)*I]
			x2 := inp[(t+2)*I : (t+3)*I]
			x3 := inp[(t+3)*I : (t+4)*I]
			r0 := out[t*O : (t+1)*O]
			r1 := out[(t+1)*O : (t+2)*O]
			r2 := out[(t+2)*O : (t+3)*O]
			r3 := out[(t+3)*O : (t+4)*O]
			for o := o0; o < o1; o++ {
				s0, s1, s2, s3 := dot4(W[o*I:(o+1)*I], x0, x1, x2, x3)
				if acc {
					r0[o] += s0
					r1[o] += s1
					r2[o] += s2
					r3[o] += s3
				} else {
					r0[o], r1[o], r2[o], r3[o] = s0, s1, s2, s3
				}
			}
		}
		for ; t < T; t++ {
			x := inp[t*I : (t+1)*I]
			r := out[t*O : (t+1)*O]
			for o := o0; o < o1; o++ {
				s := dot(W[o*I:(o+1)*I], x)
				if acc {
					r[o] += s
				} else {
					r[o] = s
				}
			}
		}
	}
}

// dot4 returns the dot products of w with four vectors of its length.
func dot4(w, x0, x1, x2, x3 []float32) (s0, s1, s2, s3 float32) {
	n := len(w)
	x0, x1, x2, x3 = x0[:n], x1[:n], x2[:n], x3[:n]
	for i, v := range w {
		s0 += v * x0[i]
		s1 += v * x1[i]
		s2 += v * x2[i]
		s3 += v * x3[i]
	}
	return
}

func dot(w, x []float32) float32 {
	x = x[:len(w)]
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(w); i += 2 {
		s0 += w[i] * x[i]
		s1 += w[i+1] * x[i+1]
	}
	if i < len(w) {
		s0 += w[i] * x[i]
	}
	return s0 + s1
}

// transpose returns W^T (I,O) of W (O,I).
func transpose(W []float32, O, I int) []float32 {
	out := make([]float32, len(W))
	const bs = 32
	for o0 := 0; o0 < O; o0 += bs {
		for i0 := 0; i0 < I; i0 += bs {
			for o := o0; o < min(o0+bs, O); o++ {
				for i := i0; i < min(i0+bs, I); i++ {
					out[i*O+o] = W[o*I+i]
				}
			}
		}
	}
	return out
}
