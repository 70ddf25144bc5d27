// Macros shared by the int8 row kernels (kernels_amd64.s, i8rows_amd64.s,
// i8rows2_amd64.s). Y14 holds int16 ones (0x0001 in every word).

// I8MAC(a, b, xa, xb, sa, acc), 7-bit table bytes (u <= 127): a, b hold
// the table bytes of two 32-weight vectors; VPMADDUBSW with the int8
// activations xa, xb, each widened to int32 lane sums of 4 products on its
// own (pair sums reach 2*127*127), added (8 products per lane, one
// activation sub-block), converted and accumulated into acc with the lane
// scales sa.
#define I8MAC(a, b, xa, xb, sa, acc) \
	VPMADDUBSW xa, a, a; \
	VPMADDUBSW xb, b, b; \
	VPMADDWD Y14, a, a; \
	VPMADDWD Y14, b, b; \
	VPADDD b, a, a; \
	VCVTDQ2PS a, a; \
	VFMADD231PS sa, a, acc

// I2MAC(a, b, xa, xb, sa, acc), lut2 (6-bit table bytes, u <= 63):
// VPMADDUBSW pair sums are at most 2*63*127 = 16002, so the two add in
// int16 without overflow (<= 32004) and one VPMADDWD with ones widens
// both: 6 uops per 64 weights where I8MAC takes 7, and 3 multiplies, not 4.
#define I2MAC(a, b, xa, xb, sa, acc) \
	VPMADDUBSW xa, a, a; \
	VPMADDUBSW xb, b, b; \
	VPADDW b, a, a; \
	VPMADDWD Y14, a, a; \
	VCVTDQ2PS a, a; \
	VFMADD231PS sa, a, acc

// I2MACI(a, b, xa, xb, si, acc), lut2 with integer activation scales
// (qx.isc): as I2MAC, but the VPMADDWD that widens the int16 sums
// multiplies them by the lanes' integer sub-block scales si (s in both
// halves of each int32 lane) and the int32 products add into the int32
// accumulator acc (q8Budget keeps every sum of a super-block within
// int32): 5 uops per 64 weights, no conversion and no float multiply.
#define I2MACI(a, b, xa, xb, si, acc) \
	VPMADDUBSW xa, a, a; \
	VPMADDUBSW xb, b, b; \
	VPADDW b, a, a; \
	VPMADDWD si, a, a; \
	VPADDD a, acc, acc

// I8ISUM(acc0, acc1, x0, xt): the int32 sum of every lane of acc0 + acc1
// (x0 is acc0's low half) into x0's lane 0; clobbers xt. Exact: the
// lanes of a super-block sum within int32 (q8Budget).
#define I8ISUM(acc0, acc1, x0, xt) \
	VPADDD acc1, acc0, acc0; \
	VEXTRACTI128 $1, acc0, xt; \
	VPADDD xt, x0, x0; \
	VPHADDD x0, x0, x0; \
	VPHADDD x0, x0, x0

// I8HSUM(acc0, acc1, x0, out): the horizontal sum of acc0 + acc1 (x0 is
// acc0's low half) stored to (out) as float32; clobbers X3.
#define I8HSUM(acc0, acc1, x0, out) \
	VADDPS acc1, acc0, acc0; \
	VEXTRACTF128 $1, acc0, X3; \
	VADDPS X3, x0, x0; \
	VHADDPS x0, x0, x0; \
	VHADDPS x0, x0, x0; \
	VMOVSS x0, (out)

// PFD is the software prefetch distance of the int8 row kernels, in bytes
// of the (plane-0) index stream. At ~1 byte of indices per 2 weights the
// kernels spend about as long computing on a cache line as DRAM needs to
// deliver one, and the hardware prefetcher alone did not run far enough
// ahead to overlap the two (BenchmarkI8Stream: lut4 at 0.59 of the
// streaming probe without, ~0.9 with PREFETCHT0 3 KiB ahead; 256 B..1 KiB
// helped less, 6 KiB no more; for lut2/lut3 1.5 and 6 KiB no better, and
// for the two-stream kernels 1.5 / 3 / 6 KiB within noise). Rows are
// contiguous, so the prefetch runs on into the next rows; past a tensor's
// end it is a harmless no-op.
#define PFD 3072

// I8U4(base, tab, io, xo1, xo2, acc, a, b): one 64-element lut4 unit of
// the row at base (32 index bytes at io(base)(BX*1)): shift and mask into
// nibbles (Y15 = 0x0f), look them up in the 16-byte table tab, and I8MAC
// with the activations at xo1/xo2(DI)(BX*2) and the scales at
// io(R8)(BX*1) into acc; temps a, b.
#define I8U4(base, tab, io, xo1, xo2, acc, a, b) \
	VMOVDQU io(base)(BX*1), a; \
	VPSRLW $4, a, b; \
	VPAND Y15, a, a; \
	VPAND Y15, b, b; \
	VPSHUFB a, tab, a; \
	VPSHUFB b, tab, b; \
	I8MAC(a, b, xo1(DI)(BX*2), xo2(DI)(BX*2), io(R8)(BX*1), acc)
