//go:build arm64 && !purego

package kernels

// useNEON selects the NEON assembly (kernels_arm64.s). Advanced SIMD is
// part of every arm64 CPU Go runs on and the kernels use only ARMv8.0
// instructions (FCVTL widens float16 without the FP16 extension), so there
// is no feature test; tests flip it to hold the pure-Go paths to the
// reference too. Hooks without a NEON kernel (dot4, the int8 kernels, LUT
// widths 1, 6, 8 and lut3 decoding) are the pure-Go ones of hooks_go.go.
var useNEON = true

func archImpl() string {
	if useNEON {
		return "neon"
	}
	return "go"
}

//go:noescape
func dotNEON(a, b *float32, n int) float32

//go:noescape
func sumNEON(a *float32, n int) float32

//go:noescape
func axpyNEON(a float32, x, y *float32, n int)

//go:noescape
func dotF16NEON(w *uint16, x *float32, n int) float32

//go:noescape
func f16ToF32NEON(src *uint16, dst *float32, n int)

//go:noescape
func lut4DotNEON(idx *byte, nblk int, x *float32, lut *uint16) float32

//go:noescape
func lut4DecNEON(idx *byte, nblk int, dst *float32, lut *uint16)

//go:noescape
func lut2DotNEON(idx *byte, nblk int, x *float32, lut *uint16) float32

//go:noescape
func lut3DotNEON(p0, p1 *byte, nsb int, x *float32, lut *uint16) float32

//go:noescape
func lut2DecNEON(idx *byte, nblk int, dst *float32, lut *uint16)

func dotF32(a, b []float32) float32 {
	n := len(a)
	if n > len(b) {
		n = len(b)
	}
	if !useNEON || n < 8 {
		return dotGo(a[:n], b[:n])
	}
	m := n &^ 3
	s := dotNEON(&a[0], &b[0], m)
	for i := m; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func dotF16(w []uint16, x []float32) float32 {
	n := len(x)
	w = w[:n]
	if !useNEON || n < 8 {
		return dotF16Go(w, x)
	}
	m := n &^ 7
	s := dotF16NEON(&w[0], &x[0], m)
	for i := m; i < n; i++ {
		s += f16(w[i]) * x[i]
	}
	return s
}

// rowsF32 and rowsF16 (one call for many rows) are amd64 assembly only:
// here MatVec calls dotF32 / dotF16 per row.
func rowsF32(w []float32, x []float32, cols int, out []float32) bool { return false }

func rowsF16(w []uint16, x []float32, cols int, out []float32) bool { return false }

func f16ToF32(src []uint16, dst []float32) {
	n := len(dst)
	src = src[:n]
	m := 0
	if useNEON && n >= 8 {
		m = n &^ 7
		f16ToF32NEON(&src[0], &dst[0], m)
	}
	f16ToF32Go(src[m:], dst[m:])
}

// sum2 is sum here: the two-stream probe pattern is amd64 assembly only.
func sum2(a []float32) float32 { return sum(a) }

func sum(a []float32) float32 {
	n := len(a)
	if !useNEON || n < 16 {
		return sumGo(a)
	}
	m := n &^ 3
	s := sumNEON(&a[0], m)
	for _, v := range a[m:] {
		s += v
	}
	return s
}

func axpy(a float32, x, y []float32) {
	n := len(y)
	x = x[:n]
	m := 0
	if useNEON && n >= 4 {
		m = n &^ 3
		axpyNEON(a, &x[0], &y[0], m)
	}
	axpyGo(a, x[m:], y[m:])
}

// lutRowDot: see kernels_amd64.go. NEON covers lut4, lut2 and lut3
// (cols % 128 == 0; xp is
// always nil here: lutPrepX declines).
func lutRowDot(bits int, p0, p1 []byte, x, xp []float32, lut []uint16, tab *lutTable) (float32, bool) {
	if !useNEON {
		return 0, false
	}
	n := len(x)
	switch bits {
	case 4:
		nb := n / 32
		if nb == 0 {
			return 0, true
		}
		_ = p0[16*nb-1]
		_ = x[32*nb-1]
		_ = lut[15]
		return lut4DotNEON(&p0[0], nb, &x[0], &lut[0]), true
	case 2:
		nb := n / 64
		if nb == 0 {
			return 0, true
		}
		_ = p0[16*nb-1]
		_ = x[64*nb-1]
		_ = lut[3]
		return lut2DotNEON(&p0[0], nb, &x[0], &lut[0]), true
	case 3:
		if n%128 != 0 {
			return 0, false
		}
		nb := n / 128
		if nb == 0 {
			return 0, true
		}
		_ = p0[32*nb-1]
		_ = p1[16*nb-1]
		_ = x[128*nb-1]
		_ = lut[7]
		return lut3DotNEON(&p0[0], &p1[0], nb, &x[0], &lut[0]), true
	}
	return 0, false
}

// lutRowDecode decodes one block-aligned row into dst (len cols) with the
// NEON decoders; ok is false when none exists for bits.
func lutRowDecode(bits int, p0 []byte, dst []float32, lut []uint16) bool {
	if !useNEON {
		return false
	}
	n := len(dst)
	switch bits {
	case 4:
		nb := n / 32
		if nb == 0 {
			return true
		}
		_ = p0[16*nb-1]
		_ = dst[32*nb-1]
		_ = lut[15]
		lut4DecNEON(&p0[0], nb, &dst[0], &lut[0])
		return true
	case 2:
		nb := n / 64
		if nb == 0 {
			return true
		}
		_ = p0[16*nb-1]
		_ = dst[64*nb-1]
		_ = lut[3]
		lut2DecNEON(&p0[0], nb, &dst[0], &lut[0])
		return true
	}
	return false
}

// setAsm turns the NEON paths on or off and returns the previous setting.
func setAsm(on bool) bool {
	prev := useNEON
	useNEON = on
	return prev
}

// asmBuilt reports whether this build contains assembly kernels.
const asmBuilt = true
