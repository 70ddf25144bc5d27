package kernels

import (
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// lutLayout describes where each row of a palettized tensor sits in its
// index planes. It exists only when every row starts on a 16-byte block
// boundary in every plane (cols a multiple of 128/p for each plane width p)
// and the data, LUT and scales are as long as the shape needs.
type lutLayout struct {
	bits    int
	nplanes int
	width   [2]int // plane widths
	base    [2]int // first byte of each plane in Data
	rowB    [2]int // bytes per row in each plane
}

func layoutOf(w *ir.Tensor) (lutLayout, bool) {
	var L lutLayout
	enc, ok := ir.Encodings[w.Type]
	if !ok || enc.Bits == 0 || w.Pal == nil || w.Pal.GroupSize <= 0 || len(w.Shape) < 1 {
		return L, false
	}
	cols, rows, n := w.Cols(), w.Rows(), w.Elems()
	if cols <= 0 || n <= 0 {
		return L, false
	}
	L.bits = enc.Bits
	planes := ir.Planes(enc.Bits)
	L.nplanes = len(planes)
	base := 0
	for k, p := range planes {
		if cols%(128/p) != 0 {
			return L, false
		}
		L.width[k] = p
		L.base[k] = base
		L.rowB[k] = cols * p / 8
		base += int(ir.PlaneBytes(p, n))
	}
	if len(w.Data) < base ||
		len(w.Pal.LUT) < w.NumGroups()<<enc.Bits ||
		(w.Pal.Scales != nil && len(w.Pal.Scales) < rows) {
		return L, false
	}
	return L, true
}

// lutTable caches one group's LUT as float32 for the pure-Go paths.
type lutTable struct {
	g    int // group held in f (-1: none)
	f    [256]float32
	rep8 [8]float32 // 1-bit table repeated, for the assembly path
}

var tablePool = sync.Pool{New: func() any { return new(lutTable) }}

func getTable() *lutTable {
	t := tablePool.Get().(*lutTable)
	t.g = -1
	return t
}

func putTable(t *lutTable) { tablePool.Put(t) }

func (t *lutTable) load(g int, lut []uint16) {
	if t.g == g {
		return
	}
	for i, h := range lut {
		t.f[i] = f16(h)
	}
	for i := range t.rep8 {
		t.rep8[i] = t.f[i&1]
	}
	t.g = g
}

// rowPlanes returns row r's bytes in each plane.
func (L *lutLayout) rowPlanes(data []byte, r int) (p0, p1 []byte) {
	o := L.base[0] + r*L.rowB[0]
	p0 = data[o : o+L.rowB[0]]
	if L.nplanes > 1 {
		o = L.base[1] + r*L.rowB[1]
		p1 = data[o : o+L.rowB[1]]
	}
	return p0, p1
}

func matVecLUT(w *ir.Tensor, L *lutLayout, x, out []float32, r0, r1 int) {
	cols := w.Cols()
	x = x[:cols]
	out = out[:r1]
	pal := w.Pal
	bits := L.bits
	tab := getTable()
	defer putTable(tab)
	bp := getBuf(cols)
	defer putBuf(bp)
	xp := lutPrepX(bits, x, *bp)
	for r := r0; r < r1; r++ {
		g := r / pal.GroupSize
		lut := pal.LUT[g<<bits : (g+1)<<bits]
		p0, p1 := L.rowPlanes(w.Data, r)
		if bits == 1 {
			tab.load(g, lut)
		}
		s, ok := lutRowDot(bits, p0, p1, x, xp, lut, tab)
		if !ok {
			tab.load(g, lut)
			s = lutRowDotGo(L, p0, p1, x, tab)
		}
		if pal.Scales != nil {
			s *= f16(pal.Scales[r])
		}
		out[r] = s
	}
}

// decodeLUTRow decodes row r without its per-row scale into dst and
// returns the scale (1 without scales).
func decodeLUTRow(w *ir.Tensor, L *lutLayout, r int, dst []float32, tab *lutTable) float32 {
	pal := w.Pal
	bits := L.bits
	g := r / pal.GroupSize
	lut := pal.LUT[g<<bits : (g+1)<<bits]
	p0, p1 := L.rowPlanes(w.Data, r)
	if !lutRowDecode(bits, p0, dst, lut) {
		tab.load(g, lut)
		var idx [128]uint8
		for c := 0; c < len(dst); c += 128 {
			m := min(128, len(dst)-c)
			unpackChunk(L, p0, p1, c, m, &idx)
			d := dst[c : c+m]
			for i := range d {
				d[i] = tab.f[idx[i]]
			}
		}
	}
	if pal.Scales != nil {
		return f16(pal.Scales[r])
	}
	return 1
}

// lutRowDotGo is the pure-Go block decoder: 128 indices at a time into a
// stack buffer, looked up in the float32 table, then a dot product.
func lutRowDotGo(L *lutLayout, p0, p1 []byte, x []float32, tab *lutTable) float32 {
	var idx [128]uint8
	var buf [128]float32
	var s float32
	for c := 0; c < len(x); c += 128 {
		m := min(128, len(x)-c)
		b := buf[:m]
		var ix []uint8
		if L.bits == 8 { // one byte per index, in order
			ix = p0[c : c+m]
		} else {
			unpackChunk(L, p0, p1, c, m, &idx)
			ix = idx[:m]
		}
		if !gather8(ix, &tab.f, b) {
			for i, v := range ix {
				b[i] = tab.f[v]
			}
		}
		s += dotF32(b, x[c:c+m])
	}
	return s
}

// unpackChunk unpacks the m indices of a row starting at column c (a
// multiple of 128; m a multiple of every plane's block length) into idx,
// a whole 16-byte block at a time with constant shifts (ir.UnpackBlock;
// the variable-shift loop it replaces was 75% of a lut6 MatVec).
func unpackChunk(L *lutLayout, p0, p1 []byte, c, m int, idx *[128]uint8) {
	clear(idx[:m])
	off := uint(0)
	for k := 0; k < L.nplanes; k++ {
		p := L.width[k]
		per := 128 / p
		src := p0
		if k == 1 {
			src = p1
		}
		src = src[c/per*16 : (c+m)/per*16]
		for b := 0; b < m/per; b++ {
			ir.UnpackBlock(p, (*[16]byte)(src[16*b:16*b+16]), idx[b*per:b*per+per], off)
		}
		off += uint(p)
	}
}

// permuteX4 writes x in the element order the 4-bit byte-plane kernel
// produces within each 32-element block:
// [0-3,16-19, 4-7,20-23, 8-11,24-27, 12-15,28-31]. len(x) % 32 == 0.
func permuteX4(x, xp []float32) {
	xp = xp[:len(x)]
	for b := 0; b+32 <= len(x); b += 32 {
		s, d := x[b:b+32], xp[b:b+32]
		for k := 0; k < 4; k++ {
			copy(d[8*k:8*k+4], s[4*k:4*k+4])
			copy(d[8*k+4:8*k+8], s[16+4*k:16+4*k+4])
		}
	}
}
