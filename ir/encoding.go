package ir

import (
	"encoding/binary"
	"math"
)

// DType names a weight encoding. Each has one row in Encodings.
type DType uint8

const (
	F32 DType = iota
	F16
	BF16
	Q8_0
	LUT1
	LUT2
	LUT3
	LUT4
	LUT6
	LUT8
	// LUTMIX is a palettized tensor whose rows are split into consecutive
	// parts, each an ordinary palettized tensor (LUT1..LUT8) with its own
	// index width, group size and scales: per-group bit allocation
	// (compile --granularity group). Data is empty; see Tensor.Parts.
	LUTMIX
)

// Encoding is one row of the weight-encodings table (as ggml's type_traits).
type Encoding struct {
	Type DType
	Name string
	// Bits is the index width of a palettized encoding; 0 for the others.
	Bits int
	// DataBytes is the size of Data for n elements (for LUT encodings, the
	// packed indices only; LUTs and scales are counted by Tensor.Bytes).
	DataBytes func(n int) int64
	// DecodeRow is the reference decoder: row r of t into dst (len t.Cols()).
	DecodeRow func(t *Tensor, r int, dst []float32)
}

// Encodings is the table of every weight encoding squeeze knows.
var Encodings = map[DType]Encoding{}

// LUTType returns the palettized DType with the given index width.
func LUTType(bits int) (DType, bool) {
	for dt, e := range Encodings {
		if e.Bits == bits && bits > 0 {
			return dt, true
		}
	}
	return 0, false
}

// PaletteBits lists the supported index widths.
var PaletteBits = []int{1, 2, 3, 4, 6, 8}

func init() {
	Encodings[F32] = Encoding{Type: F32, Name: "f32", DataBytes: func(n int) int64 { return 4 * int64(n) },
		DecodeRow: func(t *Tensor, r int, dst []float32) {
			c := t.Cols()
			b := t.Data[4*r*c:]
			for i := range dst[:c] {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		}}
	Encodings[F16] = Encoding{Type: F16, Name: "f16", DataBytes: func(n int) int64 { return 2 * int64(n) },
		DecodeRow: func(t *Tensor, r int, dst []float32) {
			c := t.Cols()
			b := t.Data[2*r*c:]
			for i := range dst[:c] {
				dst[i] = F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		}}
	Encodings[BF16] = Encoding{Type: BF16, Name: "bf16", DataBytes: func(n int) int64 { return 2 * int64(n) },
		DecodeRow: func(t *Tensor, r int, dst []float32) {
			c := t.Cols()
			b := t.Data[2*r*c:]
			for i := range dst[:c] {
				dst[i] = BF16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
			}
		}}
	// Q8_0 (ggml): blocks of 32 elements, a float16 scale then 32 int8.
	// Rows must be a multiple of 32 long, as in ggml.
	Encodings[Q8_0] = Encoding{Type: Q8_0, Name: "q8_0", DataBytes: func(n int) int64 { return int64((n+31)/32) * 34 },
		DecodeRow: func(t *Tensor, r int, dst []float32) {
			c := t.Cols()
			b := t.Data[r*(c/32)*34:]
			for blk := 0; blk < c/32; blk++ {
				d := F16ToF32(binary.LittleEndian.Uint16(b[34*blk:]))
				q := b[34*blk+2 : 34*blk+34]
				for i := 0; i < 32; i++ {
					dst[32*blk+i] = d * float32(int8(q[i]))
				}
			}
		}}
	for i, bits := range PaletteBits {
		dt := LUT1 + DType(i)
		bits := bits
		Encodings[dt] = Encoding{Type: dt, Name: "lut" + string(rune('0'+bits)), Bits: bits,
			DataBytes: func(n int) int64 { return PackedBytes(bits, n) },
			DecodeRow: func(t *Tensor, r int, dst []float32) {
				c := t.Cols()
				g := r / t.Pal.GroupSize
				lut := t.Pal.LUT[g<<bits : (g+1)<<bits]
				scale := float32(1)
				if t.Pal.Scales != nil {
					scale = F16ToF32(t.Pal.Scales[r])
				}
				// the group's entries times the row scale (the same product
				// per element as before), then indices a chunk at a time
				var tab [256]float32
				for v, h := range lut {
					tab[v] = F16ToF32(h) * scale
				}
				var idx [512]uint8
				for c0 := 0; c0 < c; c0 += len(idx) {
					ix := idx[:min(len(idx), c-c0)]
					UnpackIndexRange(bits, t.Data, t.Elems(), r*c+c0, ix)
					d := dst[c0 : c0+len(ix)]
					for i, v := range ix {
						d[i] = tab[v]
					}
				}
			}}
	}
}

func init() {
	Encodings[LUTMIX] = Encoding{Type: LUTMIX, Name: "lutmix", DataBytes: func(int) int64 { return 0 },
		DecodeRow: func(t *Tensor, r int, dst []float32) {
			p, pr := t.PartAt(r)
			p.DecodeRow(pr, dst)
		}}
}

// Index packing for palettized tensors.
//
// The indices of a tensor are one flat sequence in row-major order (element
// e = r*cols + c), so rows need no padding. An index of width n is split
// into planes: 1->[1], 2->[2], 3->[2,1], 4->[4], 6->[4,2], 8->[8]; plane k
// holds bits offset_k..offset_k+p_k-1 of every index. A plane of width p is
// a sequence of 16-byte blocks, each holding 128/p elements: within a block,
// element w sits in byte w%16 at bit shift p*(w/16). So a 16-byte load gives
// 16 consecutive elements per shift, and a kernel needs only shifts and
// masks. The last block of each plane is zero-padded. Planes are stored one
// after another (widest first). When cols is a multiple of 128/p for every
// plane, each row starts on a block boundary.

// Planes returns the plane widths of an index width.
func Planes(bits int) []int {
	switch bits {
	case 3:
		return planes3[:]
	case 6:
		return planes6[:]
	}
	if bits >= 0 && bits < len(planes1) {
		return planes1[bits : bits+1]
	}
	return []int{bits}
}

// Shared plane lists (callers must not modify them): Planes is called per
// row by the decoders, where a fresh slice per call showed in profiles.
var (
	planes3 = [2]int{2, 1}
	planes6 = [2]int{4, 2}
	planes1 = [9]int{0, 1, 2, 3, 4, 5, 6, 7, 8}
)

// PlaneBytes is the size of one plane of width p holding n elements.
func PlaneBytes(p, n int) int64 {
	per := 128 / p
	return int64((n+per-1)/per) * 16
}

// PackedBytes is the size of n packed indices of the given width.
func PackedBytes(bits, n int) int64 {
	var s int64
	for _, p := range Planes(bits) {
		s += PlaneBytes(p, n)
	}
	return s
}

// PackIndices packs idx (each < 1<<bits) in the layout described above.
func PackIndices(bits int, idx []uint8) []byte {
	n := len(idx)
	out := make([]byte, PackedBytes(bits, n))
	base, off := int64(0), 0
	for _, p := range Planes(bits) {
		per := 128 / p
		mask := uint8(1<<p - 1)
		for e, v := range idx {
			w := e % per
			out[base+int64(e/per)*16+int64(w%16)] |= ((v >> off) & mask) << (p * (w / 16))
		}
		base += PlaneBytes(p, n)
		off += p
	}
	return out
}

// UnpackIndex returns element e of n packed indices of the given width.
func UnpackIndex(bits int, data []byte, n, e int) uint8 {
	var v uint8
	base, off := int64(0), 0
	for _, p := range Planes(bits) {
		per := 128 / p
		w := e % per
		b := data[base+int64(e/per)*16+int64(w%16)]
		v |= ((b >> (p * (w / 16))) & uint8(1<<p-1)) << off
		base += PlaneBytes(p, n)
		off += p
	}
	return v
}

// UnpackIndices unpacks all n indices.
func UnpackIndices(bits int, data []byte, n int) []uint8 {
	out := make([]uint8, n)
	UnpackIndexRange(bits, data, n, 0, out)
	return out
}

// UnpackIndexRange writes the indices of elements e0 .. e0+len(dst)-1 of a
// tensor of n packed elements to dst (UnpackIndex of each), a 16-byte
// block and a shift at a time: the decoder of rows whose width the
// kernels' plane layouts do not take (cols not a multiple of 128/p), ~10x
// faster than UnpackIndex per element.
func UnpackIndexRange(bits int, data []byte, n, e0 int, dst []uint8) {
	clear(dst)
	e1 := e0 + len(dst)
	base, off := int64(0), uint(0)
	for _, p := range Planes(bits) {
		per := 128 / p
		mask := uint8(1<<p - 1)
		for blk := e0 / per; blk*per < e1; blk++ {
			b := (*[16]byte)(data[base+int64(blk)*16 : base+int64(blk)*16+16])
			if lo := blk * per; lo >= e0 && lo+per <= e1 {
				UnpackBlock(p, b, dst[lo-e0:lo-e0+per], off) // a whole block
				continue
			}
			for f := 0; f < per/16; f++ {
				lo := blk*per + 16*f // element of byte 0 at this shift
				j0, j1 := max(0, e0-lo), min(16, e1-lo)
				if j0 >= j1 {
					continue
				}
				sh := uint(p * f)
				d := dst[lo+j0-e0 : lo+j1-e0]
				for j, v := range b[j0:j1] {
					d[j] |= ((v >> sh) & mask) << off
				}
			}
		}
		base += PlaneBytes(p, n)
		off += uint(p)
	}
}

// UnpackBlock ORs the 128/p indices of one whole 16-byte block of a plane
// of width p (1, 2, 4 or 8) into d, shifted left by off (the plane's bit
// offset in the index; p + off <= 8), eight bytes at a time: field f
// (elements 16f..16f+15) is each byte shifted right by p*f and masked to
// p bits, which a 64-bit shift and a per-byte mask do for 8 bytes at once
// (bits shifted in from the next byte fall outside the mask, and the
// shifted value stays within its byte).
func UnpackBlock(p int, b *[16]byte, d []uint8, off uint) {
	w0 := binary.LittleEndian.Uint64(b[0:8])
	w1 := binary.LittleEndian.Uint64(b[8:16])
	mask := uint64(1<<p-1) * 0x0101010101010101
	d = d[:128/p]
	for f := 0; f < 8/p; f++ {
		sh := uint(p * f)
		o := d[16*f : 16*f+16]
		binary.LittleEndian.PutUint64(o[0:8], binary.LittleEndian.Uint64(o[0:8])|(w0>>sh&mask)<<off)
		binary.LittleEndian.PutUint64(o[8:16], binary.LittleEndian.Uint64(o[8:16])|(w1>>sh&mask)<<off)
	}
}
