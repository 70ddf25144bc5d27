//go:build amd64 && !purego

package kernels

//go:noescape
func dot3x4AVX2(w *float32, ldw int, x *float32, ldx int, n int, out *float32)

// dot3x4 sets out[t*3+r] = sum_{k<n} w[r*ldw+k] * x[t*ldx+k] for r < 3,
// t < 4; n is a positive multiple of 8.
func dot3x4(w []float32, ldw int, x []float32, ldx, n int, out *[12]float32) {
	_ = w[2*ldw+n-1]
	_ = x[3*ldx+n-1]
	if !useAVX2 {
		dot3x4Go(w, ldw, x, ldx, n, out)
		return
	}
	dot3x4AVX2(&w[0], ldw, &x[0], ldx, n, &out[0])
}
