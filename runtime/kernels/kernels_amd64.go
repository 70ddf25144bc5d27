//go:build amd64 && !purego

package kernels

import (
	"unsafe"

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
func rows2F32AVX2(w0, w1, x *float32, n, npairs int, out0, out1 *float32)

//go:noescape
func rows2F16AVX2(w0, w1 *uint16, x *float32, n, npairs int, out0, out1 *float32)

//go:noescape
func f16ToF32AVX2(src *uint16, dst *float32, n int)

//go:noescape
func sumAVX2(a *float32, n int) float32

//go:noescape
func sum2AVX2(a, b *float32, n int) float32

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

// rowsF32 sets out[r] = dotF32(w[r*cols:(r+1)*cols], x) for r < len(out),
// with the same bits: the first and second half of the rows are read side
// by side, two streams in one loop (rows2F32AVX2), and an odd last row on
// its own. false: not served here (cols not a multiple of 8).
func rowsF32(w []float32, x []float32, cols int, out []float32) bool {
	return rows2(w, x, cols, out, rows2F32AVX2, dotAVX2)
}

// rowsF16 is rowsF32 for float16 rows (dotF16's bits).
func rowsF16(w []uint16, x []float32, cols int, out []float32) bool {
	return rows2(w, x, cols, out, rows2F16AVX2, dotF16AVX2)
}

// rows2 is rowsF32/rowsF16 over the element type's pair kernel and its
// one-row dot kernel.
func rows2[T float32 | uint16](w []T, x []float32, cols int, out []float32,
	pair func(w0, w1 *T, x *float32, n, npairs int, out0, out1 *float32),
	one func(w *T, x *float32, n int) float32) bool {
	n := len(out)
	if !useAVX2 || cols < 8 || cols%8 != 0 || n == 0 {
		return false
	}
	_, _ = w[n*cols-1], x[cols-1]
	if h := n / 2; h > 0 {
		pair(&w[0], &w[h*cols], &x[0], cols, h, &out[0], &out[h])
	}
	if n%2 == 1 {
		out[n-1] = one(&w[(n-1)*cols], &x[0], cols)
	}
	return true
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

// sum2 sums a's two halves read side by side (two streams).
func sum2(a []float32) float32 {
	h := len(a) / 2 &^ 31
	if !useAVX2 || h == 0 {
		return sum(a)
	}
	return sum2AVX2(&a[0], &a[h], h) + sum(a[2*h:])
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

//go:noescape
func i8Lut4Rows(idx *byte, rowBytes, nrows, n64 int, xq *int8, sc *float32, tab *byte, gs, first int, out *float32)

// i8Lut2Rows and i8Lut3Rows: i8rows_amd64.go

// i8Asm reports whether the int8 kernels can run.
func i8Asm() bool { return useAVX2 }

// i8Rows runs the int8 row kernel over nrows rows starting at p0/p1 (the
// first row's bytes; later rows follow at rowB strides, which layoutOf
// has checked lie inside the tensor), g0 the first row's group, first
// rows left in that group, out[:nrows] receiving the raw sums. The groups
// the rows span must lie in tab.
func i8Rows(bits int, p0, p1 []byte, rowB [2]int, nrows int, q *qx, tab *i8Tab, g0, gs, first int, out []float32) {
	if nrows <= 0 {
		return
	}
	_ = out[nrows-1]
	gl := g0 + (nrows-first+gs-1)/gs // last group the rows reach
	n := q.n
	xq, sc := &q.perm[0], &q.sc[0]
	// row i of plane 0 (rows follow at rowB strides, checked by layoutOf)
	r0 := unsafe.Pointer(&p0[0])
	row0 := func(i int) *byte { return (*byte)(unsafe.Add(r0, i*rowB[0])) }
	switch bits {
	case 4:
		u := tab.u[16*g0 : 16*gl+16]
		if i8Pairs && nrows >= 2 {
			i8RowPairs(nrows, gs, first,
				func(a, b, np, ga, gb int) {
					i8Lut4Rows2(row0(a), row0(b), rowB[0], np, n/64, xq, sc, &u[16*ga], &u[16*gb], &out[a], &out[b])
				},
				func(i, g, left int) {
					i8Lut4Rows(row0(i), rowB[0], 1, n/64, xq, sc, &u[16*g], gs, left, &out[i])
				})
			return
		}
		i8Lut4Rows(&p0[0], rowB[0], nrows, n/64, xq, sc, &u[0], gs, first, &out[0])
	case 2:
		u := tab.u2[32*g0 : 32*gl+32]
		isc, sd := &q.isc[0], &q.sd[0]
		if i8Pairs && nrows >= 2 {
			i8RowPairs(nrows, gs, first,
				func(a, b, np, ga, gb int) {
					i8Lut2Rows2(row0(a), row0(b), rowB[0], np, n/128, xq, isc, sd, &u[32*ga], &u[32*gb], &out[a], &out[b])
				},
				func(i, g, left int) {
					i8Lut2Rows(row0(i), rowB[0], 1, n/128, xq, isc, sd, &u[32*g], gs, left, &out[i])
				})
			return
		}
		i8Lut2Rows(&p0[0], rowB[0], nrows, n/128, xq, isc, sd, &u[0], gs, first, &out[0])
	case 3:
		u := tab.u3[32*g0 : 32*gl+32]
		// one stream: a two-stream lut3 kernel (four index streams, its
		// constants as memory operands for want of registers) measured
		// 3-7% slower than this one (docs/PERF.md, session 9)
		i8Lut3Rows(&p0[0], rowB[0], &p1[0], rowB[1], nrows, n/128, xq, sc, &u[0], gs, first, &out[0])
	default:
		panic("kernels: no int8 kernel for this width")
	}
}

// i8Pairs selects the two-stream lut4 and lut2 row kernels (i8RowPairs;
// tests compare them with the one-stream kernels).
var i8Pairs = true

// groupAt returns the group (counted from the first row's) of row i of a
// run whose first row has first rows left in its group, and how many rows
// of that group are left from row i.
func groupAt(i, gs, first int) (g, left int) {
	if i < first {
		return 0, first - i
	}
	k := i - first
	return 1 + k/gs, gs - k%gs
}

// i8RowPairs runs an int8 row kernel over nrows rows (the first with
// first rows left in its group of gs) as two streams: rows [0, h) beside
// rows [h, 2h) (h = nrows/2) through pair(a, b, npairs, ga, gb) (rows a..
// and b.., groups ga and gb counted from the first row's), in segments
// whose rows stay in one group per stream, and an odd last row through
// one(i, g, left). The pair kernels give each row the one-stream kernel's
// bits (TestI8PairsSameBits).
func i8RowPairs(nrows, gs, first int, pair func(a, b, npairs, ga, gb int), one func(i, g, left int)) {
	h := nrows / 2
	for a := 0; a < h; {
		ga, la := groupAt(a, gs, first)
		gb, lb := groupAt(h+a, gs, first)
		seg := min(la, lb, h-a)
		pair(a, h+a, seg, ga, gb)
		a += seg
	}
	if nrows%2 == 1 {
		g, left := groupAt(nrows-1, gs, first)
		one(nrows-1, g, left)
	}
}

//go:noescape
func amaxQ8AVX2(x *float32, nb int, a *float32)

//go:noescape
func quantQ8AVX2(x *float32, nb int, inv *float32, qn *int8, isum *int32)

//go:noescape
func q8ScalesAVX2(d *float32, n int, D, invD float32, is *int32, inv *float32) int32

// q8ScalesRun is q8Scales' per-sub-block step (q8ScalesGo) with the
// assembly for the multiples of 8.
func q8ScalesRun(d []float32, D float32, is []int32, inv []float32) int32 {
	n8 := len(d) &^ 7
	if !useAVX2 || n8 == 0 {
		return q8ScalesGo(d, D, is, inv)
	}
	_, _ = is[n8-1], inv[n8-1]
	tot := q8ScalesAVX2(&d[0], n8, D, 1/D, &is[0], &inv[0])
	return tot + q8ScalesGo(d[n8:], D, is[n8:], inv[n8:])
}

// amaxQ8 is step 1 of qx.quantize (amaxQ8Go) over len(x)/32 blocks of 4
// sub-blocks; ok is false without the assembly.
func amaxQ8(x []float32, a []float32) bool {
	nb := len(x) / 32
	if !useAVX2 || nb == 0 {
		return false
	}
	_ = a[4*nb-1]
	amaxQ8AVX2(&x[0], nb, &a[0])
	return true
}

// quantQ8 is step 3 of qx.quantize (quantQ8Go); ok is false without the
// assembly.
func quantQ8(x []float32, inv []float32, qn []int8, isum []int32) bool {
	nb := len(x) / 32
	if !useAVX2 || nb == 0 {
		return false
	}
	_, _, _ = qn[32*nb-1], inv[4*nb-1], isum[4*nb-1]
	quantQ8AVX2(&x[0], nb, &inv[0], &qn[0], &isum[0])
	return true
}

//go:noescape
func i8Lut4Tile(idx0, idx1, tab0, tab1 *byte, n64 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)

// i8Tile runs the int8 MatMul micro-kernel: two rows (index bytes p0a,
// p0b in plane 0, p1a, p1b in plane 1 (lut3 only); 16-byte tables ta, tb)
// against 4 tokens of qb starting at token t, over columns [c0, c1) (c0 a
// multiple of 128, c1-c0 block aligned), out[0:4] row a, out[4:8] row b
// (raw block-scaled sums, as i8Rows). ok is false when no tile kernel
// exists for bits or the range is not aligned.
func i8Tile(bits int, p0a, p0b, p1a, p1b, ta, tb []byte, qb *qxBatch, t, c0, c1 int, out *[8]float32) bool {
	cols := qb.cols
	if !i8TileBits(bits) || !i8Aligned(bits, cols) || c0%128 != 0 || c1 > cols || !i8Aligned(bits, c1-c0) || c1 <= c0 {
		return false
	}
	_ = qb.perm[(t+4)*cols-1]
	_ = qb.sc[(t+4)*cols/8-1]
	xq, sc := &qb.perm[t*cols+c0], &qb.sc[t*cols/8+c0/8]
	if bits == 3 {
		n := (c1 - c0) / 128
		o0, o1 := c0/4, c0/8
		_, _ = p0a[o0+32*n-1], p0b[o0+32*n-1]
		_, _ = p1a[o1+16*n-1], p1b[o1+16*n-1]
		var tabs [32]byte
		copy(tabs[0:16], ta[:16])
		copy(tabs[16:32], tb[:16])
		i8Lut3Tile(&p0a[o0], &p0b[o0], &p1a[o1], &p1b[o1], &tabs[0], n, xq, cols, sc, cols/2, &out[0])
		return true
	}
	o0 := c0 * bits / 8
	_, _ = p0a[c1*bits/8-1], p0b[c1*bits/8-1]
	_, _ = ta[15], tb[15]
	if bits == 4 {
		i8Lut4Tile(&p0a[o0], &p0b[o0], &ta[0], &tb[0], (c1-c0)/64, xq, cols, sc, cols/2, &out[0])
	} else {
		i8Lut2Tile(&p0a[o0], &p0b[o0], &ta[0], &tb[0], (c1-c0)/128, xq, cols, sc, cols/2, &out[0])
	}
	return true
}

//go:noescape
func i8Lut2Tile(idx0, idx1, tab0, tab1 *byte, n128 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)

// i8TileBits reports whether a tile kernel exists for the width.
func i8TileBits(bits int) bool { return bits == 4 || bits == 2 || bits == 3 }

//go:noescape
func i8Lut3Tile(p0a, p0b, p1a, p1b *byte, tabs *byte, n128 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)

//go:noescape
func axpyAVX2(a float32, x, y *float32, n int)

func axpy(a float32, x, y []float32) {
	n := len(y)
	x = x[:n]
	m := 0
	if useAVX2 && n >= 8 {
		m = n &^ 7
		axpyAVX2(a, &x[0], &y[0], m)
	}
	for i := m; i < n; i++ {
		y[i] += a * x[i]
	}
}
