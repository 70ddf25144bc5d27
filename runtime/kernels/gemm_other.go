//go:build !amd64 || purego

package kernels

func dot3x4(w []float32, ldw int, x []float32, ldx, n int, out *[12]float32) {
	dot3x4Go(w, ldw, x, ldx, n, out)
}
