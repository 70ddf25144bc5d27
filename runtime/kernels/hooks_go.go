//go:build !amd64 || purego

package kernels

// Pure-Go hooks shared by every build without the amd64 assembly: the
// architectures without assembly and purego (kernels_other.go), and arm64
// (kernels_arm64.go), whose NEON kernels fall back to these for short
// tails, with setAsm(false), and for the hooks that have no NEON version
// (dot4, the int8 kernels).

func dotF32Go(a, b []float32) float32 {
	n := len(a)
	if n > len(b) {
		n = len(b)
	}
	return dotGo(a[:n], b[:n])
}

func f16ToF32Go(src []uint16, dst []float32) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = f16(h)
	}
}

func sumGo(a []float32) float32 {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i]
		s1 += a[i+1]
		s2 += a[i+2]
		s3 += a[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(a float32, x, y []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

func dot4(w, x []float32, stride int, out *[4]float32) { dot4Go(w, x, stride, out) }

// lutPrepX: no kernel here wants x rearranged (the NEON byte-plane
// decoder produces elements in order).
func lutPrepX(bits int, x, scratch []float32) []float32 { return nil }

func i8Asm() bool { return false }

func i8Rows(bits int, p0, p1 []byte, rowB [2]int, nrows int, q *qx, tab *i8Tab, g0, gs, first int, out []float32) {
	panic("kernels: int8 kernels need the amd64 assembly")
}

func amaxQ8(x []float32, a []float32) bool { return false }

func q8ScalesRun(d []float32, D float32, is []int32, inv []float32) int32 {
	return q8ScalesGo(d, D, is, inv)
}

func quantQ8(x []float32, inv []float32, qn []int8, isum []int32) bool { return false }

func i8Tile(bits int, p0a, p0b, p1a, p1b, ta, tb []byte, qb *qxBatch, t, c0, c1 int, out *[8]float32) bool {
	return false
}

func i8TileBits(bits int) bool { return false }

func fitSums(gq []int32, cs *fitCands, lv int32, su, suu, sug *[fitNC]int32) bool { return false }

func gather8(idx []byte, tab *[256]float32, dst []float32) bool { return false }
