//go:build arm64 && !purego

#include "textflag.h"

// NEON kernels (see doc.go). The Go assembler has no mnemonics for the
// float vector add, pairwise add and half-to-single widening, so those
// are WORD-encoded (encodings from llvm-mc, the instruction in the
// comment). Every kernel here uses only ARMv8.0 Advanced SIMD, which all
// arm64 CPUs have; FCVTL (half -> single) needs no FP16 extension.

// HSUM8 leaves V0+...+V7 (all lanes) in F0.
#define HSUM8 \
	WORD $0x4e21d400; /* fadd v0.4s, v0.4s, v1.4s */ \
	WORD $0x4e23d442; /* fadd v2.4s, v2.4s, v3.4s */ \
	WORD $0x4e25d484; /* fadd v4.4s, v4.4s, v5.4s */ \
	WORD $0x4e27d4c6; /* fadd v6.4s, v6.4s, v7.4s */ \
	WORD $0x4e22d400; /* fadd v0.4s, v0.4s, v2.4s */ \
	WORD $0x4e26d484; /* fadd v4.4s, v4.4s, v6.4s */ \
	WORD $0x4e24d400; /* fadd v0.4s, v0.4s, v4.4s */ \
	WORD $0x6e20d400; /* faddp v0.4s, v0.4s, v0.4s */ \
	WORD $0x7e30d800 /* faddp s0, v0.2s */

#define ZERO8 \
	VEOR V0.B16, V0.B16, V0.B16; \
	VEOR V1.B16, V1.B16, V1.B16; \
	VEOR V2.B16, V2.B16, V2.B16; \
	VEOR V3.B16, V3.B16, V3.B16; \
	VEOR V4.B16, V4.B16, V4.B16; \
	VEOR V5.B16, V5.B16, V5.B16; \
	VEOR V6.B16, V6.B16, V6.B16; \
	VEOR V7.B16, V7.B16, V7.B16

// func dotNEON(a, b *float32, n int) float32
// n a multiple of 4; 8 accumulators x 4 lanes, 32 elements per step.
TEXT ·dotNEON(SB), NOSPLIT, $0-28
	MOVD a+0(FP), R0
	MOVD b+8(FP), R1
	MOVD n+16(FP), R2
	ZERO8

dot32:
	CMP  $32, R2
	BLT  dot4
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R1), [V24.S4, V25.S4, V26.S4, V27.S4]
	VLD1.P 64(R0), [V20.S4, V21.S4, V22.S4, V23.S4]
	VLD1.P 64(R1), [V28.S4, V29.S4, V30.S4, V31.S4]
	VFMLA V16.S4, V24.S4, V0.S4
	VFMLA V17.S4, V25.S4, V1.S4
	VFMLA V18.S4, V26.S4, V2.S4
	VFMLA V19.S4, V27.S4, V3.S4
	VFMLA V20.S4, V28.S4, V4.S4
	VFMLA V21.S4, V29.S4, V5.S4
	VFMLA V22.S4, V30.S4, V6.S4
	VFMLA V23.S4, V31.S4, V7.S4
	SUB  $32, R2
	B    dot32

dot4:
	CBZ  R2, dotdone
	VLD1.P 16(R0), [V16.S4]
	VLD1.P 16(R1), [V24.S4]
	VFMLA V16.S4, V24.S4, V0.S4
	SUB  $4, R2
	B    dot4

dotdone:
	HSUM8
	FMOVS F0, ret+24(FP)
	RET

// func sumNEON(a *float32, n int) float32
// n a multiple of 4; 8 accumulators x 4 lanes.
TEXT ·sumNEON(SB), NOSPLIT, $0-20
	MOVD a+0(FP), R0
	MOVD n+8(FP), R2
	ZERO8

sum32:
	CMP  $32, R2
	BLT  sum4
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R0), [V20.S4, V21.S4, V22.S4, V23.S4]
	WORD $0x4e30d400 // fadd v0.4s, v0.4s, v16.4s
	WORD $0x4e31d421 // fadd v1.4s, v1.4s, v17.4s
	WORD $0x4e32d442 // fadd v2.4s, v2.4s, v18.4s
	WORD $0x4e33d463 // fadd v3.4s, v3.4s, v19.4s
	WORD $0x4e34d484 // fadd v4.4s, v4.4s, v20.4s
	WORD $0x4e35d4a5 // fadd v5.4s, v5.4s, v21.4s
	WORD $0x4e36d4c6 // fadd v6.4s, v6.4s, v22.4s
	WORD $0x4e37d4e7 // fadd v7.4s, v7.4s, v23.4s
	SUB  $32, R2
	B    sum32

sum4:
	CBZ  R2, sumdone
	VLD1.P 16(R0), [V16.S4]
	WORD $0x4e30d400 // fadd v0.4s, v0.4s, v16.4s
	SUB  $4, R2
	B    sum4

sumdone:
	HSUM8
	FMOVS F0, ret+16(FP)
	RET

// func axpyNEON(a float32, x, y *float32, n int)
// y[i] += a * x[i] (FMLA: one rounding), n a multiple of 4.
TEXT ·axpyNEON(SB), NOSPLIT, $0-32
	FMOVS a+0(FP), F0
	MOVD  x+8(FP), R0
	MOVD  y+16(FP), R1
	MOVD  n+24(FP), R2
	VDUP  V0.S[0], V0.S4

axpy16:
	CMP  $16, R2
	BLT  axpy4
	VLD1.P 64(R0), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1   (R1), [V20.S4, V21.S4, V22.S4, V23.S4]
	VFMLA V16.S4, V0.S4, V20.S4
	VFMLA V17.S4, V0.S4, V21.S4
	VFMLA V18.S4, V0.S4, V22.S4
	VFMLA V19.S4, V0.S4, V23.S4
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R1)
	SUB  $16, R2
	B    axpy16

axpy4:
	CBZ  R2, axpydone
	VLD1.P 16(R0), [V16.S4]
	VLD1   (R1), [V20.S4]
	VFMLA V16.S4, V0.S4, V20.S4
	VST1.P [V20.S4], 16(R1)
	SUB  $4, R2
	B    axpy4

axpydone:
	RET

// CVT8H converts the 32 halves in V16-V19 to 32 floats in V20-V27.
#define CVT8H \
	WORD $0x0e217a14; /* fcvtl v20.4s, v16.4h */ \
	WORD $0x4e217a15; /* fcvtl2 v21.4s, v16.8h */ \
	WORD $0x0e217a36; /* fcvtl v22.4s, v17.4h */ \
	WORD $0x4e217a37; /* fcvtl2 v23.4s, v17.8h */ \
	WORD $0x0e217a58; /* fcvtl v24.4s, v18.4h */ \
	WORD $0x4e217a59; /* fcvtl2 v25.4s, v18.8h */ \
	WORD $0x0e217a7a; /* fcvtl v26.4s, v19.4h */ \
	WORD $0x4e217a7b /* fcvtl2 v27.4s, v19.8h */

// func dotF16NEON(w *uint16, x *float32, n int) float32
// n a multiple of 8; FCVTL widens the weights, then FMLA.
TEXT ·dotF16NEON(SB), NOSPLIT, $0-28
	MOVD w+0(FP), R0
	MOVD x+8(FP), R1
	MOVD n+16(FP), R2
	ZERO8

f16dot32:
	CMP  $32, R2
	BLT  f16dot8
	VLD1.P 64(R0), [V16.H8, V17.H8, V18.H8, V19.H8]
	VLD1.P 64(R1), [V28.S4, V29.S4, V30.S4, V31.S4]
	VLD1.P 64(R1), [V8.S4, V9.S4, V10.S4, V11.S4]
	CVT8H
	VFMLA V20.S4, V28.S4, V0.S4
	VFMLA V21.S4, V29.S4, V1.S4
	VFMLA V22.S4, V30.S4, V2.S4
	VFMLA V23.S4, V31.S4, V3.S4
	VFMLA V24.S4, V8.S4, V4.S4
	VFMLA V25.S4, V9.S4, V5.S4
	VFMLA V26.S4, V10.S4, V6.S4
	VFMLA V27.S4, V11.S4, V7.S4
	SUB  $32, R2
	B    f16dot32

f16dot8:
	CBZ  R2, f16dotdone
	VLD1.P 16(R0), [V16.H8]
	VLD1.P 32(R1), [V28.S4, V29.S4]
	WORD $0x0e217a14 // fcvtl v20.4s, v16.4h
	WORD $0x4e217a15 // fcvtl2 v21.4s, v16.8h
	VFMLA V20.S4, V28.S4, V0.S4
	VFMLA V21.S4, V29.S4, V1.S4
	SUB  $8, R2
	B    f16dot8

f16dotdone:
	HSUM8
	FMOVS F0, ret+24(FP)
	RET

// func f16ToF32NEON(src *uint16, dst *float32, n int)
// n a multiple of 8.
TEXT ·f16ToF32NEON(SB), NOSPLIT, $0-24
	MOVD src+0(FP), R0
	MOVD dst+8(FP), R1
	MOVD n+16(FP), R2

cvt32:
	CMP  $32, R2
	BLT  cvt8
	VLD1.P 64(R0), [V16.H8, V17.H8, V18.H8, V19.H8]
	CVT8H
	VST1.P [V20.S4, V21.S4, V22.S4, V23.S4], 64(R1)
	VST1.P [V24.S4, V25.S4, V26.S4, V27.S4], 64(R1)
	SUB  $32, R2
	B    cvt32

cvt8:
	CBZ  R2, cvtdone
	VLD1.P 16(R0), [V16.H8]
	WORD $0x0e217a14 // fcvtl v20.4s, v16.4h
	WORD $0x4e217a15 // fcvtl2 v21.4s, v16.8h
	VST1.P [V20.S4, V21.S4], 32(R1)
	SUB  $8, R2
	B    cvt8

cvtdone:
	RET

// Palettized rows: byte-plane decoding. The row's float32 table (up to 16
// entries, widened from float16 by FCVTL into V18-V21) is cut into four
// 16-byte planes, V24 = byte 0 of every entry ... V27 = byte 3, by two
// rounds of UZP1/UZP2. A vector of 16 indices (each < 16) then fetches the
// 4 bytes of 16 weights with 4 TBL, and ZIP1/ZIP2 on bytes, then on
// halfwords, rebuild the 16 floats in element order (so x is read as it
// is, unlike the amd64 byte-plane kernel whose unpacks interleave lanes).
// Entries past the table's length are never indexed.

// LUTPLANES builds V24-V27 from the 16 floats in V18-V21 (V16, V17, V22,
// V23 scratch).
#define LUTPLANES \
	VUZP1 V19.B16, V18.B16, V22.B16; \
	VUZP2 V19.B16, V18.B16, V23.B16; \
	VUZP1 V21.B16, V20.B16, V16.B16; \
	VUZP2 V21.B16, V20.B16, V17.B16; \
	VUZP1 V16.B16, V22.B16, V24.B16; \
	VUZP1 V17.B16, V23.B16, V25.B16; \
	VUZP2 V16.B16, V22.B16, V26.B16; \
	VUZP2 V17.B16, V23.B16, V27.B16

// LUT16 loads the 16 float16 entries at R3 into planes.
#define LUT16 \
	VLD1 (R3), [V16.H8, V17.H8]; \
	WORD $0x0e217a12; /* fcvtl v18.4s, v16.4h */ \
	WORD $0x4e217a13; /* fcvtl2 v19.4s, v16.8h */ \
	WORD $0x0e217a34; /* fcvtl v20.4s, v17.4h */ \
	WORD $0x4e217a35; /* fcvtl2 v21.4s, v17.8h */ \
	LUTPLANES

// LUTDEC decodes the 16 indices in I into 16 floats in F0-F3 (element
// order, O0-O3 bare register names) with the planes V24-V27; V16-V23
// scratch.
#define LUTDEC(I, O0, O1, O2, O3) \
	VTBL I.B16, [V24.B16], V16.B16; \
	VTBL I.B16, [V25.B16], V17.B16; \
	VTBL I.B16, [V26.B16], V18.B16; \
	VTBL I.B16, [V27.B16], V19.B16; \
	VZIP1 V17.B16, V16.B16, V20.B16; \
	VZIP2 V17.B16, V16.B16, V21.B16; \
	VZIP1 V19.B16, V18.B16, V22.B16; \
	VZIP2 V19.B16, V18.B16, V23.B16; \
	VZIP1 V22.H8, V20.H8, O0.H8; \
	VZIP2 V22.H8, V20.H8, O1.H8; \
	VZIP1 V23.H8, V21.H8, O2.H8; \
	VZIP2 V23.H8, V21.H8, O3.H8

// LUTFMA decodes I and accumulates it times the next 16 x (R2) into
// A0-A3 (bare register names).
#define LUTFMA(I, A0, A1, A2, A3) \
	LUTDEC(I, V12, V13, V14, V15); \
	VLD1.P 64(R2), [V28.S4, V29.S4, V30.S4, V31.S4]; \
	VFMLA V12.S4, V28.S4, A0.S4; \
	VFMLA V13.S4, V29.S4, A1.S4; \
	VFMLA V14.S4, V30.S4, A2.S4; \
	VFMLA V15.S4, V31.S4, A3.S4

// LUTST decodes I and stores the 16 floats at R2 (post-incremented).
#define LUTST(I) \
	LUTDEC(I, V12, V13, V14, V15); \
	VST1.P [V12.S4, V13.S4, V14.S4, V15.S4], 64(R2)

// func lut4DotNEON(idx *byte, nblk int, x *float32, lut *uint16) float32
// One 16-byte block holds 32 nibble indices: low nibbles are elements
// 0-15, high nibbles 16-31 (ir/encoding.go).
TEXT ·lut4DotNEON(SB), NOSPLIT, $0-36
	MOVD idx+0(FP), R0
	MOVD nblk+8(FP), R1
	MOVD x+16(FP), R2
	MOVD lut+24(FP), R3
	LUT16
	ZERO8
	VMOVI $15, V11.B16

lut4loop:
	CBZ  R1, lut4done
	VLD1.P 16(R0), [V8.B16]
	VAND  V11.B16, V8.B16, V9.B16
	VUSHR $4, V8.B16, V10.B16
	LUTFMA(V9, V0, V1, V2, V3)
	LUTFMA(V10, V4, V5, V6, V7)
	SUB  $1, R1
	B    lut4loop

lut4done:
	HSUM8
	FMOVS F0, ret+32(FP)
	RET

// func lut4DecNEON(idx *byte, nblk int, dst *float32, lut *uint16)
TEXT ·lut4DecNEON(SB), NOSPLIT, $0-32
	MOVD idx+0(FP), R0
	MOVD nblk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD lut+24(FP), R3
	LUT16
	VMOVI $15, V11.B16

lut4decloop:
	CBZ  R1, lut4decdone
	VLD1.P 16(R0), [V8.B16]
	VAND  V11.B16, V8.B16, V9.B16
	VUSHR $4, V8.B16, V10.B16
	LUTST(V9)
	LUTST(V10)
	SUB  $1, R1
	B    lut4decloop

lut4decdone:
	RET

// LUT4E loads the 4 float16 entries at R3 into planes (the other 12
// entries zero, never indexed).
#define LUT4E \
	VLD1 (R3), [V16.H4]; \
	WORD $0x0e217a12; /* fcvtl v18.4s, v16.4h */ \
	VEOR V19.B16, V19.B16, V19.B16; \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	LUTPLANES

// func lut2DotNEON(idx *byte, nblk int, x *float32, lut *uint16) float32
// One 16-byte block holds 64 2-bit indices: bits 2q..2q+1 of byte j are
// element 16q+j.
TEXT ·lut2DotNEON(SB), NOSPLIT, $0-36
	MOVD idx+0(FP), R0
	MOVD nblk+8(FP), R1
	MOVD x+16(FP), R2
	MOVD lut+24(FP), R3
	LUT4E
	ZERO8
	VMOVI $3, V11.B16

lut2loop:
	CBZ  R1, lut2done
	VLD1.P 16(R0), [V8.B16]
	VAND  V11.B16, V8.B16, V9.B16
	LUTFMA(V9, V0, V1, V2, V3)
	VUSHR $2, V8.B16, V9.B16
	VAND  V11.B16, V9.B16, V9.B16
	LUTFMA(V9, V4, V5, V6, V7)
	VUSHR $4, V8.B16, V9.B16
	VAND  V11.B16, V9.B16, V9.B16
	LUTFMA(V9, V0, V1, V2, V3)
	VUSHR $6, V8.B16, V9.B16
	LUTFMA(V9, V4, V5, V6, V7)
	SUB  $1, R1
	B    lut2loop

lut2done:
	HSUM8
	FMOVS F0, ret+32(FP)
	RET

// func lut2DecNEON(idx *byte, nblk int, dst *float32, lut *uint16)
TEXT ·lut2DecNEON(SB), NOSPLIT, $0-32
	MOVD idx+0(FP), R0
	MOVD nblk+8(FP), R1
	MOVD dst+16(FP), R2
	MOVD lut+24(FP), R3
	LUT4E
	VMOVI $3, V11.B16

lut2decloop:
	CBZ  R1, lut2decdone
	VLD1.P 16(R0), [V8.B16]
	VAND  V11.B16, V8.B16, V9.B16
	LUTST(V9)
	VUSHR $2, V8.B16, V9.B16
	VAND  V11.B16, V9.B16, V9.B16
	LUTST(V9)
	VUSHR $4, V8.B16, V9.B16
	VAND  V11.B16, V9.B16, V9.B16
	LUTST(V9)
	VUSHR $6, V8.B16, V9.B16
	LUTST(V9)
	SUB  $1, R1
	B    lut2decloop

lut2decdone:
	RET

// LUT8E loads the 8 float16 entries at R3 into planes.
#define LUT8E \
	VLD1 (R3), [V16.H8]; \
	WORD $0x0e217a12; /* fcvtl v18.4s, v16.4h */ \
	WORD $0x4e217a13; /* fcvtl2 v19.4s, v16.8h */ \
	VEOR V20.B16, V20.B16, V20.B16; \
	VEOR V21.B16, V21.B16, V21.B16; \
	LUTPLANES

// func lut3DotNEON(p0, p1 *byte, nsb int, x *float32, lut *uint16) float32
// 128 elements per step: two 16-byte blocks of 2-bit fields in plane 0
// (element 64b+16q+j: bits 2q..2q+1 of byte j of block b) and one block
// of 1-bit fields in plane 1 (element 16k+j: bit k of byte j), the index
// being field | bit << 2. Chunk k (16 elements) takes V5 = the 2-bit
// field, V6 = the plane-1 bit moved to bit 2, ORed; 4 accumulators (the
// registers go to the plane bytes and masks).
TEXT ·lut3DotNEON(SB), NOSPLIT, $0-44
	MOVD p0+0(FP), R0
	MOVD p1+8(FP), R1
	MOVD nsb+16(FP), R4
	MOVD x+24(FP), R2
	MOVD lut+32(FP), R3
	LUT8E
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	VEOR V2.B16, V2.B16, V2.B16
	VEOR V3.B16, V3.B16, V3.B16
	VEOR V7.B16, V7.B16, V7.B16
	VMOVI $3, V11.B16
	VMOVI $4, V10.B16

lut3loop:
	CBZ  R4, lut3done
	VLD1.P 32(R0), [V8.B16, V9.B16]
	VLD1.P 16(R1), [V4.B16]
	// chunk 0
	VAND  V11.B16, V8.B16, V5.B16
	VSHL  $2, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 1
	VUSHR $2, V8.B16, V5.B16
	VAND  V11.B16, V5.B16, V5.B16
	VSHL  $1, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 2
	VUSHR $4, V8.B16, V5.B16
	VAND  V11.B16, V5.B16, V5.B16
	VORR  V4.B16, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 3
	VUSHR $6, V8.B16, V5.B16
	VUSHR $1, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 4
	VAND  V11.B16, V9.B16, V5.B16
	VUSHR $2, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 5
	VUSHR $2, V9.B16, V5.B16
	VAND  V11.B16, V5.B16, V5.B16
	VUSHR $3, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 6
	VUSHR $4, V9.B16, V5.B16
	VAND  V11.B16, V5.B16, V5.B16
	VUSHR $4, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	// chunk 7
	VUSHR $6, V9.B16, V5.B16
	VUSHR $5, V4.B16, V6.B16
	VAND  V10.B16, V6.B16, V6.B16
	VORR  V6.B16, V5.B16, V5.B16
	LUTFMA(V5, V0, V1, V2, V3)
	SUB  $1, R4
	B    lut3loop

lut3done:
	VEOR V4.B16, V4.B16, V4.B16 // V4-V6 held indices, not sums
	VEOR V5.B16, V5.B16, V5.B16
	VEOR V6.B16, V6.B16, V6.B16
	HSUM8
	FMOVS F0, ret+40(FP)
	RET
