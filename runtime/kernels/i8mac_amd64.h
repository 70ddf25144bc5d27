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

// I8HSUM(acc0, acc1, x0, out): the horizontal sum of acc0 + acc1 (x0 is
// acc0's low half) stored to (out) as float32; clobbers X3.
#define I8HSUM(acc0, acc1, x0, out) \
	VADDPS acc1, acc0, acc0; \
	VEXTRACTF128 $1, acc0, X3; \
	VADDPS X3, x0, x0; \
	VHADDPS x0, x0, x0; \
	VHADDPS x0, x0, x0; \
	VMOVSS x0, (out)
