//go:build amd64 && !purego

package kernels

import (
	"golang.org/x/sys/cpu"
)

// useAVX2 selects the AVX2+FMA+F16C assembly paths. Tests flip it to hold
// the pure-Go paths to the reference on this machine as well.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

func archImpl() string {
	if useAVX2 {
		return "avx2"
	}
	return "go"
}

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func dotF16AVX2(w *uint16, x *float32, n int) float32

//go:noescape
func f16ToF32AVX2(src *uint16, dst *float32, n int)

//go:noescape
func sumAVX2(a *float32, n int) float32

//go:noescape
func dot4AVX2(w, x *float32, stride, n int, out *float32)

//go:noescape
func lut4DotAVX2(idx *byte, nblk int, x *float32, lut *uint16) float32

//go:noescape
func lut4DecAVX2(idx *byte, nblk int, dst *float32, lut *uint16)

//go:noescape
func lut2DotAVX2(idx *byte, nblk int, x *float32, lut *uint16) float32

//go:noescape
func lut2DecAVX2(idx *byte, nblk int, dst *float32, lut *uint16)

//go:noescape
func lut1DotAVX2(idx *byte, nblk int, x *float32, tab *float32) float32

//go:noescape
func lut3DotAVX2(p0, p1 *byte, nsb int, x *float32, lut *uint16) float32

func dotF32(a, b []float32) float32 {
	n := len(a)
	if n > len(b) {
		n = len(b)
	}
	if !useAVX2 || n < 8 {
		return dotGo(a[:n], b[:n])
	}
	m := n &^ 7
	s := dotAVX2(&a[0], &b[0], m)
	for i := m; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

func dotF16(w []uint16, x []float32) float32 {
	n := len(x)
	w = w[:n]
	if !useAVX2 || n < 8 {
		return dotF16Go(w, x)
	}
	m := n &^ 7
	s := dotF16AVX2(&w[0], &x[0], m)
	for i := m; i < n; i++ {
		s += f16(w[i]) * x[i]
	}
	return s
}

func f16ToF32(src []uint16, dst []float32) {
	n := len(dst)
	src = src[:n]
	m := 0
	if useAVX2 && n >= 8 {
		m = n &^ 7
		f16ToF32AVX2(&src[0], &dst[0], m)
	}
	for i := m; i < n; i++ {
		dst[i] = f16(src[i])
	}
}

func sum(a []float32) float32 {
	n := len(a)
	m := 0
	var s float32
	if useAVX2 && n >= 64 {
		m = n &^ 63
		s = sumAVX2(&a[0], m)
	}
	for _, v := range a[m:] {
		s += v
	}
	return s
}

// dot4 sets out[i] = dot(w, x[i*stride:][:len(w)]) for i < 4.
func dot4(w, x []float32, stride int, out *[4]float32) {
	n := len(w)
	_ = x[3*stride+n-1]
	if !useAVX2 || n < 8 {
		dot4Go(w, x, stride, out)
		return
	}
	m := n &^ 7
	dot4AVX2(&w[0], &x[0], stride, m, &out[0])
	for i := 0; i < 4; i++ {
		xi := x[i*stride:]
		for j := m; j < n; j++ {
			out[i] += w[j] * xi[j]
		}
	}
}

// lutRowDot returns sum_c LUT[idx[c]] * x[c] for one row of a palettized
// tensor whose row starts on a block boundary in every plane; p0 and p1 are
// the row's bytes in plane 0 and plane 1 (nil for single-plane widths), lut
// the row's group table (1<<bits float16 entries).
// ok is false when no assembly path exists for bits.
func lutRowDot(bits int, p0, p1 []byte, x, xp []float32, lut []uint16, tab *lutTable) (float32, bool) {
	if !useAVX2 {
		return 0, false
	}
	n := len(x)
	switch bits {
	case 4:
		nb := n / 32
		_ = p0[16*nb-1]
		_ = lut[15]
		if xp != nil {
			_ = xp[n-1]
			return lut4DotBP(&p0[0], nb, &xp[0], &lut[0]), true
		}
		return lut4DotAVX2(&p0[0], nb, &x[0], &lut[0]), true
	case 2:
		nb := n / 64
		_ = p0[16*nb-1]
		_ = lut[3]
		return lut2DotAVX2(&p0[0], nb, &x[0], &lut[0]), true
	case 1:
		nb := n / 128
		_ = p0[16*nb-1]
		return lut1DotAVX2(&p0[0], nb, &x[0], &tab.rep8[0]), true
	case 3:
		if n%128 != 0 {
			return 0, false
		}
		nb := n / 128
		_ = p0[32*nb-1]
		_ = p1[16*nb-1]
		_ = lut[7]
		return lut3DotAVX2(&p0[0], &p1[0], nb, &x[0], &lut[0]), true
	}
	return 0, false
}

// lutPrepX returns x rearranged for the row kernels of the given width
// (into scratch), or nil when they take x as it is.
func lutPrepX(bits int, x, scratch []float32) []float32 {
	if !useAVX2 || bits != 4 || len(x)%32 != 0 {
		return nil
	}
	permuteX4(x, scratch)
	return scratch[:len(x)]
}

// lutRowDecode decodes one block-aligned row into dst (len cols) with the
// assembly decoders; ok is false when none exists for bits.
func lutRowDecode(bits int, p0 []byte, dst []float32, lut []uint16) bool {
	if !useAVX2 {
		return false
	}
	n := len(dst)
	switch bits {
	case 4:
		nb := n / 32
		_ = p0[16*nb-1]
		_ = lut[15]
		lut4DecAVX2(&p0[0], nb, &dst[0], &lut[0])
		return true
	case 2:
		nb := n / 64
		_ = p0[16*nb-1]
		_ = lut[3]
		lut2DecAVX2(&p0[0], nb, &dst[0], &lut[0])
		return true
	}
	return false
}

//go:noescape
func lut4DotBP(idx *byte, nblk int, xp *float32, lut *uint16) float32

// setAsm turns the assembly paths on or off (tests use it to hold the
// pure-Go paths to the reference too) and returns the previous setting.
func setAsm(on bool) bool {
	prev := useAVX2
	useAVX2 = on && cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	return prev
}

// asmBuilt reports whether this build contains assembly kernels.
const asmBuilt = true
