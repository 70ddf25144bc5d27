//go:build amd64 && !purego

#include "textflag.h"
#include "i8mac_amd64.h"

// Horizontal sum of Y2..Y5 into X2 (clobbers X3, Y4).
#define HSUM4 \
	VADDPS Y3, Y2, Y2; \
	VADDPS Y5, Y4, Y4; \
	VADDPS Y4, Y2, Y2; \
	VEXTRACTF128 $1, Y2, X3; \
	VADDPS X3, X2, X2; \
	VHADDPS X2, X2, X2; \
	VHADDPS X2, X2, X2; \
	VZEROUPPER

#define ZERO4 \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5

// func dotAVX2(a, b *float32, n int) float32
// n is a multiple of 8.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	ZERO4
dot32:
	CMPQ CX, $32
	JL   dot8
	VMOVUPS (SI), Y6
	VMOVUPS 32(SI), Y7
	VMOVUPS 64(SI), Y8
	VMOVUPS 96(SI), Y9
	VFMADD231PS (DI), Y6, Y2
	VFMADD231PS 32(DI), Y7, Y3
	VFMADD231PS 64(DI), Y8, Y4
	VFMADD231PS 96(DI), Y9, Y5
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  dot32
dot8:
	CMPQ CX, $8
	JL   dotdone
	VMOVUPS (SI), Y6
	VFMADD231PS (DI), Y6, Y2
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dot8
dotdone:
	HSUM4
	MOVSS X2, ret+24(FP)
	RET

// func dotF16AVX2(w *uint16, x *float32, n int) float32
// n is a multiple of 8.
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ w+0(FP), SI
	MOVQ x+8(FP), DI
	MOVQ n+16(FP), CX
	ZERO4
h32:
	CMPQ CX, $32
	JL   h8
	VCVTPH2PS (SI), Y6
	VCVTPH2PS 16(SI), Y7
	VCVTPH2PS 32(SI), Y8
	VCVTPH2PS 48(SI), Y9
	VFMADD231PS (DI), Y6, Y2
	VFMADD231PS 32(DI), Y7, Y3
	VFMADD231PS 64(DI), Y8, Y4
	VFMADD231PS 96(DI), Y9, Y5
	ADDQ $64, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  h32
h8:
	CMPQ CX, $8
	JL   hdone
	VCVTPH2PS (SI), Y6
	VFMADD231PS (DI), Y6, Y2
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  h8
hdone:
	HSUM4
	MOVSS X2, ret+24(FP)
	RET

// func f16ToF32AVX2(src *uint16, dst *float32, n int)
// n is a multiple of 8.
TEXT ·f16ToF32AVX2(SB), NOSPLIT, $0-24
	MOVQ src+0(FP), SI
	MOVQ dst+8(FP), DI
	MOVQ n+16(FP), CX
c8:
	CMPQ CX, $8
	JL   cdone
	VCVTPH2PS (SI), Y6
	VMOVUPS Y6, (DI)
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  c8
cdone:
	VZEROUPPER
	RET

// func sumAVX2(a *float32, n int) float32
// n is a multiple of 64.
TEXT ·sumAVX2(SB), NOSPLIT, $0-20
	MOVQ a+0(FP), SI
	MOVQ n+8(FP), CX
	ZERO4
s64:
	CMPQ CX, $64
	JL   sdone
	VADDPS (SI), Y2, Y2
	VADDPS 32(SI), Y3, Y3
	VADDPS 64(SI), Y4, Y4
	VADDPS 96(SI), Y5, Y5
	VADDPS 128(SI), Y2, Y2
	VADDPS 160(SI), Y3, Y3
	VADDPS 192(SI), Y4, Y4
	VADDPS 224(SI), Y5, Y5
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  s64
sdone:
	HSUM4
	MOVSS X2, ret+16(FP)
	RET

// func sum2AVX2(a, b *float32, n int) float32
// sum of a[:n] and b[:n] read side by side (two streams; n a multiple of
// 32): the streaming probe's second pattern (StreamSumBuf).
TEXT ·sum2AVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), R8
	MOVQ n+16(FP), CX
	ZERO4
s2x32:
	CMPQ CX, $32
	JL   s2done
	VADDPS (SI), Y2, Y2
	VADDPS 32(SI), Y3, Y3
	VADDPS 64(SI), Y4, Y4
	VADDPS 96(SI), Y5, Y5
	VADDPS (R8), Y2, Y2
	VADDPS 32(R8), Y3, Y3
	VADDPS 64(R8), Y4, Y4
	VADDPS 96(R8), Y5, Y5
	ADDQ $128, SI
	ADDQ $128, R8
	SUBQ $32, CX
	JMP  s2x32
s2done:
	HSUM4
	MOVSS X2, ret+24(FP)
	RET

// func dot4AVX2(w, x *float32, stride, n int, out *float32)
// out[i] = dot(w[:n], x[i*stride:][:n]) for i < 4; n is a multiple of 8.
TEXT ·dot4AVX2(SB), NOSPLIT, $0-40
	MOVQ w+0(FP), SI
	MOVQ x+8(FP), AX
	MOVQ stride+16(FP), BX
	MOVQ n+24(FP), CX
	SHLQ $2, BX
	LEAQ (AX)(BX*1), R8
	LEAQ (R8)(BX*1), R9
	LEAQ (R9)(BX*1), R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ DX, DX
d4x16:
	MOVQ CX, DI
	SUBQ DX, DI
	CMPQ DI, $16
	JL   d4x8
	VMOVUPS (SI)(DX*4), Y8
	VMOVUPS 32(SI)(DX*4), Y9
	VFMADD231PS (AX)(DX*4), Y8, Y0
	VFMADD231PS 32(AX)(DX*4), Y9, Y4
	VFMADD231PS (R8)(DX*4), Y8, Y1
	VFMADD231PS 32(R8)(DX*4), Y9, Y5
	VFMADD231PS (R9)(DX*4), Y8, Y2
	VFMADD231PS 32(R9)(DX*4), Y9, Y6
	VFMADD231PS (R10)(DX*4), Y8, Y3
	VFMADD231PS 32(R10)(DX*4), Y9, Y7
	ADDQ $16, DX
	JMP  d4x16
d4x8:
	CMPQ DI, $8
	JL   d4done
	VMOVUPS (SI)(DX*4), Y8
	VFMADD231PS (AX)(DX*4), Y8, Y0
	VFMADD231PS (R8)(DX*4), Y8, Y1
	VFMADD231PS (R9)(DX*4), Y8, Y2
	VFMADD231PS (R10)(DX*4), Y8, Y3
d4done:
	VADDPS Y4, Y0, Y0
	VADDPS Y5, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y7, Y3, Y3
	// transpose-reduce: result lanes [s0 s1 s2 s3]
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	MOVQ out+32(FP), DI
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET

// ---- palettized rows ----
// Tables: Y0 (and Y1) hold the LUT as float32; Y2..Y5 accumulate.

// LUT4 step: 8 dword indices in idx (low nibble used) -> FMA with x at off(DI) into acc.
#define L4(idx, off, acc) \
	VPERMPS Y0, idx, Y8; \
	VPERMPS Y1, idx, Y9; \
	VPSLLD $28, idx, Y10; \
	VBLENDVPS Y10, Y9, Y8, Y8; \
	VFMADD231PS off(DI), Y8, acc

#define L4S(idx, off) \
	VPERMPS Y0, idx, Y8; \
	VPERMPS Y1, idx, Y9; \
	VPSLLD $28, idx, Y10; \
	VBLENDVPS Y10, Y9, Y8, Y8; \
	VMOVUPS Y8, off(DI)

// func lut4DotAVX2(idx *byte, nblk int, x *float32, lut *uint16) float32
// nblk 16-byte blocks of 32 elements; lut holds 16 float16 entries.
TEXT ·lut4DotAVX2(SB), NOSPLIT, $0-36
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ x+16(FP), DI
	MOVQ lut+24(FP), AX
	VCVTPH2PS (AX), Y0
	VCVTPH2PS 16(AX), Y1
	ZERO4
	TESTQ CX, CX
	JZ   l4done
l4loop:
	VPMOVZXBD (SI), Y6
	VPMOVZXBD 8(SI), Y7
	L4(Y6, 0, Y2)
	L4(Y7, 32, Y3)
	VPSRLD $4, Y6, Y6
	VPSRLD $4, Y7, Y7
	L4(Y6, 64, Y4)
	L4(Y7, 96, Y5)
	ADDQ $16, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  l4loop
l4done:
	HSUM4
	MOVSS X2, ret+32(FP)
	RET

// func lut4DecAVX2(idx *byte, nblk int, dst *float32, lut *uint16)
TEXT ·lut4DecAVX2(SB), NOSPLIT, $0-32
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ dst+16(FP), DI
	MOVQ lut+24(FP), AX
	VCVTPH2PS (AX), Y0
	VCVTPH2PS 16(AX), Y1
	TESTQ CX, CX
	JZ   l4ddone
l4dloop:
	VPMOVZXBD (SI), Y6
	VPMOVZXBD 8(SI), Y7
	L4S(Y6, 0)
	L4S(Y7, 32)
	VPSRLD $4, Y6, Y6
	VPSRLD $4, Y7, Y7
	L4S(Y6, 64)
	L4S(Y7, 96)
	ADDQ $16, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  l4dloop
l4ddone:
	VZEROUPPER
	RET

// LUT2/LUT1/LUT3 step: the table Y0 has 8 entries and VPERMPS uses the
// low 3 bits of each index, so a table of 4 (or 2) entries repeated to 8
// decodes a 2-bit (1-bit) field without masking.
#define LP(idx, off, acc) \
	VPERMPS Y0, idx, Y8; \
	VFMADD231PS off(DI), Y8, acc

#define LPS(idx, off) \
	VPERMPS Y0, idx, Y8; \
	VMOVUPS Y8, off(DI)

// func lut2DotAVX2(idx *byte, nblk int, x *float32, lut *uint16) float32
// nblk 16-byte blocks of 64 elements; lut holds 4 float16 entries.
TEXT ·lut2DotAVX2(SB), NOSPLIT, $0-36
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ x+16(FP), DI
	MOVQ lut+24(FP), AX
	VCVTPH2PS (AX), X0
	VINSERTF128 $1, X0, Y0, Y0
	ZERO4
	TESTQ CX, CX
	JZ   l2done
l2loop:
	VPMOVZXBD (SI), Y6
	VPMOVZXBD 8(SI), Y7
	LP(Y6, 0, Y2)
	LP(Y7, 32, Y3)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LP(Y6, 64, Y4)
	LP(Y7, 96, Y5)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LP(Y6, 128, Y2)
	LP(Y7, 160, Y3)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LP(Y6, 192, Y4)
	LP(Y7, 224, Y5)
	ADDQ $16, SI
	ADDQ $256, DI
	DECQ CX
	JNZ  l2loop
l2done:
	HSUM4
	MOVSS X2, ret+32(FP)
	RET

// func lut2DecAVX2(idx *byte, nblk int, dst *float32, lut *uint16)
TEXT ·lut2DecAVX2(SB), NOSPLIT, $0-32
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ dst+16(FP), DI
	MOVQ lut+24(FP), AX
	VCVTPH2PS (AX), X0
	VINSERTF128 $1, X0, Y0, Y0
	TESTQ CX, CX
	JZ   l2ddone
l2dloop:
	VPMOVZXBD (SI), Y6
	VPMOVZXBD 8(SI), Y7
	LPS(Y6, 0)
	LPS(Y7, 32)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LPS(Y6, 64)
	LPS(Y7, 96)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LPS(Y6, 128)
	LPS(Y7, 160)
	VPSRLD $2, Y6, Y6
	VPSRLD $2, Y7, Y7
	LPS(Y6, 192)
	LPS(Y7, 224)
	ADDQ $16, SI
	ADDQ $256, DI
	DECQ CX
	JNZ  l2dloop
l2ddone:
	VZEROUPPER
	RET

// func lut1DotAVX2(idx *byte, nblk int, x *float32, tab *float32) float32
// nblk 16-byte blocks of 128 elements; tab holds the 2 entries repeated 4 times.
TEXT ·lut1DotAVX2(SB), NOSPLIT, $0-36
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ x+16(FP), DI
	MOVQ tab+24(FP), AX
	VMOVUPS (AX), Y0
	ZERO4
	TESTQ CX, CX
	JZ   l1done
l1loop:
	VPMOVZXBD (SI), Y6
	VPMOVZXBD 8(SI), Y7
	LP(Y6, 0, Y2)
	LP(Y7, 32, Y3)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 64, Y4)
	LP(Y7, 96, Y5)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 128, Y2)
	LP(Y7, 160, Y3)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 192, Y4)
	LP(Y7, 224, Y5)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 256, Y2)
	LP(Y7, 288, Y3)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 320, Y4)
	LP(Y7, 352, Y5)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 384, Y2)
	LP(Y7, 416, Y3)
	VPSRLD $1, Y6, Y6
	VPSRLD $1, Y7, Y7
	LP(Y6, 448, Y4)
	LP(Y7, 480, Y5)
	ADDQ $16, SI
	ADDQ $512, DI
	DECQ CX
	JNZ  l1loop
l1done:
	HSUM4
	MOVSS X2, ret+32(FP)
	RET

// LUT3 step q of a 128-element superblock: plane-0 dwords in p0 (2-bit
// field at shift s), plane-1 dwords pre-shifted left by 2 in p1 (bit q at
// bit q+2). idx = ((p0>>s)&3) | ((p1>>q)&4). Y13 = 3s, Y14 = 4s. Plane-0
// dwords live in Y12/Y15 (LP clobbers Y8).
#define L3IDX(p0, s, p1, q) \
	VPSRLD $s, p0, Y10; \
	VPAND Y13, Y10, Y10; \
	VPSRLD $q, p1, Y11; \
	VPAND Y14, Y11, Y11; \
	VPOR Y11, Y10, Y10

// func lut3DotAVX2(p0, p1 *byte, nsb int, x *float32, lut *uint16) float32
// nsb superblocks of 128 elements: 32 bytes of plane 0 (2-bit), 16 bytes
// of plane 1 (1-bit); lut holds 8 float16 entries.
TEXT ·lut3DotAVX2(SB), NOSPLIT, $0-44
	MOVQ p0+0(FP), SI
	MOVQ p1+8(FP), BX
	MOVQ nsb+16(FP), CX
	MOVQ x+24(FP), DI
	MOVQ lut+32(FP), AX
	VCVTPH2PS (AX), Y0
	MOVL $3, DX
	VMOVD DX, X13
	VPBROADCASTD X13, Y13
	MOVL $4, DX
	VMOVD DX, X14
	VPBROADCASTD X14, Y14
	ZERO4
	TESTQ CX, CX
	JZ   l3done
l3loop:
	VPMOVZXBD (BX), Y6
	VPMOVZXBD 8(BX), Y7
	VPSLLD $2, Y6, Y6
	VPSLLD $2, Y7, Y7
	VPMOVZXBD (SI), Y12
	VPMOVZXBD 8(SI), Y15
	L3IDX(Y12, 0, Y6, 0)
	LP(Y10, 0, Y2)
	L3IDX(Y15, 0, Y7, 0)
	LP(Y10, 32, Y3)
	L3IDX(Y12, 2, Y6, 1)
	LP(Y10, 64, Y4)
	L3IDX(Y15, 2, Y7, 1)
	LP(Y10, 96, Y5)
	L3IDX(Y12, 4, Y6, 2)
	LP(Y10, 128, Y2)
	L3IDX(Y15, 4, Y7, 2)
	LP(Y10, 160, Y3)
	L3IDX(Y12, 6, Y6, 3)
	LP(Y10, 192, Y4)
	L3IDX(Y15, 6, Y7, 3)
	LP(Y10, 224, Y5)
	VPMOVZXBD 16(SI), Y12
	VPMOVZXBD 24(SI), Y15
	L3IDX(Y12, 0, Y6, 4)
	LP(Y10, 256, Y2)
	L3IDX(Y15, 0, Y7, 4)
	LP(Y10, 288, Y3)
	L3IDX(Y12, 2, Y6, 5)
	LP(Y10, 320, Y4)
	L3IDX(Y15, 2, Y7, 5)
	LP(Y10, 352, Y5)
	L3IDX(Y12, 4, Y6, 6)
	LP(Y10, 384, Y2)
	L3IDX(Y15, 4, Y7, 6)
	LP(Y10, 416, Y3)
	L3IDX(Y12, 6, Y6, 7)
	LP(Y10, 448, Y4)
	L3IDX(Y15, 6, Y7, 7)
	LP(Y10, 480, Y5)
	ADDQ $32, SI
	ADDQ $16, BX
	ADDQ $512, DI
	DECQ CX
	JNZ  l3loop
l3done:
	HSUM4
	MOVSS X2, ret+40(FP)
	RET

// ---- 4-bit, byte-plane decoding (no VPERMPS) ----
// The 16-entry float32 table is split into 4 byte planes (plane k holds
// byte k of every entry) broadcast to both 128-bit lanes; VPSHUFB looks up
// each byte for 32 indices at once and byte/word unpacks reassemble the
// floats. The unpacks leave the floats of a 32-element block in the order
// [0-3,16-19 | 4-7,20-23 | 8-11,24-27 | 12-15,28-31], so x must be given
// in that order (permuteX4).

DATA bpshuf<>+0(SB)/8, $0x0d0905010c080400
DATA bpshuf<>+8(SB)/8, $0x0f0b07030e0a0602
DATA bpshuf<>+16(SB)/8, $0x0d0905010c080400
DATA bpshuf<>+24(SB)/8, $0x0f0b07030e0a0602
GLOBL bpshuf<>(SB), RODATA|NOPTR, $32

DATA bpperm<>+0(SB)/8, $0x0000000400000000
DATA bpperm<>+8(SB)/8, $0x0000000500000001
DATA bpperm<>+16(SB)/8, $0x0000000600000002
DATA bpperm<>+24(SB)/8, $0x0000000700000003
GLOBL bpperm<>(SB), RODATA|NOPTR, $32

DATA nibshift<>+0(SB)/8, $0
DATA nibshift<>+8(SB)/8, $0
DATA nibshift<>+16(SB)/8, $4
DATA nibshift<>+24(SB)/8, $4
GLOBL nibshift<>(SB), RODATA|NOPTR, $32

// func lut4DotBP(idx *byte, nblk int, xp *float32, lut *uint16) float32
// xp is x in permuteX4 order.
TEXT ·lut4DotBP(SB), NOSPLIT, $0-36
	MOVQ idx+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ xp+16(FP), DI
	MOVQ lut+24(FP), AX
	// table -> byte planes Y0..Y3
	VCVTPH2PS (AX), Y10
	VCVTPH2PS 16(AX), Y11
	VMOVDQU bpshuf<>(SB), Y12
	VPSHUFB Y12, Y10, Y10
	VPSHUFB Y12, Y11, Y11
	VMOVDQU bpperm<>(SB), Y12
	VPERMD Y10, Y12, Y10
	VPERMD Y11, Y12, Y11
	VPUNPCKLQDQ Y11, Y10, Y12 // lane0 plane0, lane1 plane2
	VPUNPCKHQDQ Y11, Y10, Y13 // lane0 plane1, lane1 plane3
	VPERMQ $0x44, Y12, Y0
	VPERMQ $0xEE, Y12, Y2
	VPERMQ $0x44, Y13, Y1
	VPERMQ $0xEE, Y13, Y3
	MOVL $0x0f0f0f0f, DX
	VMOVD DX, X4
	VPBROADCASTD X4, Y4
	VMOVDQU nibshift<>(SB), Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	TESTQ CX, CX
	JZ   bpdone
bploop:
	VBROADCASTI128 (SI), Y10
	VPSRLVQ Y5, Y10, Y10
	VPAND Y4, Y10, Y10
	VPSHUFB Y10, Y0, Y11
	VPSHUFB Y10, Y1, Y12
	VPSHUFB Y10, Y2, Y13
	VPSHUFB Y10, Y3, Y14
	VPUNPCKLBW Y12, Y11, Y15
	VPUNPCKHBW Y12, Y11, Y11
	VPUNPCKLBW Y14, Y13, Y12
	VPUNPCKHBW Y14, Y13, Y13
	VPUNPCKLWD Y12, Y15, Y14
	VPUNPCKHWD Y12, Y15, Y15
	VPUNPCKLWD Y13, Y11, Y12
	VPUNPCKHWD Y13, Y11, Y11
	VFMADD231PS (DI), Y14, Y6
	VFMADD231PS 32(DI), Y15, Y7
	VFMADD231PS 64(DI), Y12, Y8
	VFMADD231PS 96(DI), Y11, Y9
	ADDQ $16, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  bploop
bpdone:
	VADDPS Y7, Y6, Y6
	VADDPS Y9, Y8, Y8
	VADDPS Y8, Y6, Y6
	VEXTRACTF128 $1, Y6, X7
	VADDPS X7, X6, X6
	VHADDPS X6, X6, X6
	VHADDPS X6, X6, X6
	VZEROUPPER
	MOVSS X6, ret+32(FP)
	RET

// ---- int8 path (ModeInt8): 7-bit unsigned LUT x int8 activations ----
// Each row's group table (16 bytes, entries u in 0..127) is broadcast to
// both lanes of Y13; VPSHUFB turns 32 indices into 32 table bytes, whose
// products with 32 int8 activations VPMADDUBSW sums in pairs (|pair| <=
// 2*127*127 < 32767, no saturation) and VPMADDWD with ones widens to int32.
// Two such vectors (64 elements) are added, converted to float and FMA'd
// with 8 block scales (lane 0 and lane 1 belong to two different blocks of
// 32). The caller lays out the activations (qx.permute) in the order the
// indices decode: per 64 elements for lut4, per 128 for lut2/lut3.
// Rows loop here; the table advances every gs rows (first rows for the
// first group). Each row's float sum goes to out; Go applies s, m, scale.

// next row: out, table (every gs rows; tstride bytes per group)
#define I8NEXTS(lbl, tstride) \
	ADDQ $4, DX; \
	DECQ R12; \
	JNZ  lbl; \
	ADDQ $tstride, AX; \
	MOVQ R11, R12; \
lbl:

#define I8NEXT(lbl) I8NEXTS(lbl, 16)

#define BCAST8(val, reg, x) \
	MOVL val, R13; \
	VMOVD R13, x; \
	VPBROADCASTD x, reg

// func i8Lut4Rows(idx *byte, rowBytes, nrows, n64 int, xq *int8, sc *float32, tab *byte, gs, first int, out *float32)
TEXT ·i8Lut4Rows(SB), NOSPLIT, $0-80
	MOVQ idx+0(FP), SI
	MOVQ rowBytes+8(FP), R9
	MOVQ nrows+16(FP), CX
	MOVQ n64+24(FP), R10
	MOVQ xq+32(FP), DI
	MOVQ sc+40(FP), R8
	MOVQ tab+48(FP), AX
	MOVQ gs+56(FP), R11
	MOVQ first+64(FP), R12
	MOVQ out+72(FP), DX
	SHLQ $5, R10
	BCAST8($0x0f0f0f0f, Y15, X15)
	BCAST8($0x00010001, Y14, X14)
	TESTQ CX, CX
	JZ   i4done
i4row:
	VBROADCASTI128 (AX), Y13
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ BX, BX
i4pair:
	LEAQ 64(BX), R13
	CMPQ R13, R10
	JG   i4single
	PREFETCHT0 PFD(SI)(BX*1)
	I8U4(SI, Y13, 0, 0, 32, Y2, Y4, Y5)
	I8U4(SI, Y13, 32, 64, 96, Y3, Y6, Y7)
	ADDQ $64, BX
	JMP  i4pair
i4single:
	CMPQ BX, R10
	JGE  i4rowdone
	I8U4(SI, Y13, 0, 0, 32, Y2, Y4, Y5)
i4rowdone:
	I8HSUM(Y2, Y3, X2, DX)
	ADDQ R9, SI
	I8NEXT(i4next)
	DECQ CX
	JNZ  i4row
i4done:
	VZEROUPPER
	RET

// The lut2 and lut3 row kernels (i8Lut2Rows, i8Lut3Rows) are in
// i8rows_amd64.s.

DATA q8perm<>+0(SB)/8, $0x0000000400000000
DATA q8perm<>+8(SB)/8, $0x0000000500000001
DATA q8perm<>+16(SB)/8, $0x0000000600000002
DATA q8perm<>+24(SB)/8, $0x0000000700000003
GLOBL q8perm<>(SB), RODATA|NOPTR, $32

// func amaxQ8AVX2(x *float32, nb int, a *float32)
// Step 1 of qx.quantize over nb blocks of 32, each in 4 sub-blocks of 8
// (q8Sub: sub-block l = elements 4l..4l+3 and 16+4l..16+4l+3, so Y0 and
// Y2 hold sub-blocks 0 | 1 in their 128-bit halves, Y1 and Y3 2 | 3):
// a = amax/127 per sub-block, 4 per block.
TEXT ·amaxQ8AVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ nb+8(FP), CX
	MOVQ a+16(FP), R8
	BCAST8($0x7fffffff, Y15, X15)
	BCAST8($0x42fe0000, Y14, X14)
	TESTQ CX, CX
	JZ   adone
aloop:
	VANDPS (SI), Y15, Y4
	VANDPS 32(SI), Y15, Y5
	VANDPS 64(SI), Y15, Y6
	VANDPS 96(SI), Y15, Y7
	VMAXPS Y6, Y4, Y4
	VMAXPS Y7, Y5, Y5
	VPERMILPS $0x4e, Y4, Y6
	VPERMILPS $0x4e, Y5, Y7
	VMAXPS Y6, Y4, Y4
	VMAXPS Y7, Y5, Y5
	VPERMILPS $0xb1, Y4, Y6
	VPERMILPS $0xb1, Y5, Y7
	VMAXPS Y6, Y4, Y4 // amax of sub-block 0 | 1, in every lane of each half
	VMAXPS Y7, Y5, Y5 // 2 | 3
	VDIVPS Y14, Y4, Y6
	VDIVPS Y14, Y5, Y7
	VUNPCKLPS Y7, Y6, Y6 // [a0 a2 a0 a2 | a1 a3 a1 a3]
	VEXTRACTF128 $1, Y6, X7
	VUNPCKLPS X7, X6, X6 // [a0 a1 a2 a3]
	VMOVUPS X6, (R8)
	ADDQ $128, SI
	ADDQ $16, R8
	DECQ CX
	JNZ  aloop
adone:
	VZEROUPPER
	RET

// func q8ScalesAVX2(d *float32, n int, D, invD float32, is *int32, inv *float32) int32
// q8Scales' per-sub-block step over n sub-blocks (n a multiple of 8):
// s = ceil(a * invD) (a = d on entry), d = D*s, inv = 1/d (0 where s is
// 0); returns the sum of s.
TEXT ·q8ScalesAVX2(SB), NOSPLIT, $0-44
	MOVQ d+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS D+16(FP), Y15
	VBROADCASTSS invD+20(FP), Y14
	MOVQ is+24(FP), DI
	MOVQ inv+32(FP), R8
	BCAST8($0x3f800000, Y13, X13)
	VXORPS Y12, Y12, Y12
	VPXOR Y11, Y11, Y11
	SHRQ $3, CX
	JZ   sdone
sloop:
	VMULPS (SI), Y14, Y0
	VROUNDPS $2, Y0, Y0 // toward +inf
	VCVTPS2DQ Y0, Y1
	VMOVDQU Y1, (DI)
	VPADDD Y1, Y11, Y11
	VMULPS Y0, Y15, Y2 // d = D*s
	VMOVUPS Y2, (SI)
	VDIVPS Y2, Y13, Y3
	VCMPPS $0, Y12, Y2, Y4
	VANDNPS Y3, Y4, Y3 // 1/d, 0 where d is 0
	VMOVUPS Y3, (R8)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  sloop
sdone:
	VEXTRACTI128 $1, Y11, X0
	VPADDD X0, X11, X11
	VPHADDD X11, X11, X11
	VPHADDD X11, X11, X11
	VMOVD X11, AX
	MOVL AX, ret+40(FP)
	VZEROUPPER
	RET

// q8bc01/q8bc23 spread a block's 4 sub-block values over the halves of the
// vectors that hold them: [v0 x4 | v1 x4] and [v2 x4 | v3 x4].
DATA q8bc<>+0(SB)/8, $0x0000000000000000
DATA q8bc<>+8(SB)/8, $0x0000000000000000
DATA q8bc<>+16(SB)/8, $0x0000000100000001
DATA q8bc<>+24(SB)/8, $0x0000000100000001
DATA q8bc<>+32(SB)/8, $0x0000000200000002
DATA q8bc<>+40(SB)/8, $0x0000000200000002
DATA q8bc<>+48(SB)/8, $0x0000000300000003
DATA q8bc<>+56(SB)/8, $0x0000000300000003
GLOBL q8bc<>(SB), RODATA|NOPTR, $64

// func quantQ8AVX2(x *float32, nb int, inv *float32, qn *int8, isum *int32)
// Step 3 of qx.quantize over nb blocks of 32 (sub-blocks as amaxQ8AVX2):
// q = round-to-even(x * inv[sub-block]), saturated to int8, and
// isum = the sum of q per sub-block.
TEXT ·quantQ8AVX2(SB), NOSPLIT, $0-40
	MOVQ x+0(FP), SI
	MOVQ nb+8(FP), CX
	MOVQ inv+16(FP), R8
	MOVQ qn+24(FP), DI
	MOVQ isum+32(FP), R9
	VMOVDQU q8perm<>(SB), Y13
	VMOVDQU q8bc<>(SB), Y14
	VMOVDQU q8bc<>+32(SB), Y15
	TESTQ CX, CX
	JZ   qdone
qloop:
	VMOVUPS (R8), X4
	VPERMPS Y4, Y15, Y5 // [i2 x4 | i3 x4]
	VPERMPS Y4, Y14, Y4 // [i0 x4 | i1 x4]
	VMULPS (SI), Y4, Y0
	VMULPS 32(SI), Y5, Y1
	VMULPS 64(SI), Y4, Y2
	VMULPS 96(SI), Y5, Y3
	VCVTPS2DQ Y0, Y0
	VCVTPS2DQ Y1, Y1
	VCVTPS2DQ Y2, Y2
	VCVTPS2DQ Y3, Y3
	VPADDD Y2, Y0, Y8 // sub-block 0 | 1 partial sums
	VPADDD Y3, Y1, Y9 // 2 | 3
	VPHADDD Y9, Y8, Y8
	VPHADDD Y8, Y8, Y8 // [s0 s2 s0 s2 | s1 s3 s1 s3]
	VEXTRACTI128 $1, Y8, X9
	VPUNPCKLDQ X9, X8, X8 // [s0 s1 s2 s3]
	VMOVDQU X8, (R9)
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y13, Y0
	VMOVDQU Y0, (DI)
	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $16, R8
	ADDQ $16, R9
	DECQ CX
	JNZ  qloop
qdone:
	VZEROUPPER
	RET

// ---- int8 MatMul micro-kernel (prefill): 2 rows x 4 tokens, lut4 ----
// Each 64-weight unit of the two rows is decoded once (two index blocks,
// shift/mask into nibbles, VPSHUFB through the row's 16-byte table) into
// Y8,Y9 (row 0) and Y10,Y11 (row 1), then meets the 4 tokens' permuted
// int8 activations (qx.permute layout) with VPMADDUBSW + VPMADDWD(ones)
// and one FMA per (row, token) with the token's 8 block scales.
// Accumulators: Y0-Y3 row 0 tokens 0-3, Y4-Y7 row 1. Y12,Y13 temps,
// Y14 nibble mask, Y15 int16 ones.

#define I8T4MAC(wl, wh, xl, xh, so, acc) \
	VPMADDUBSW xl, wl, Y12; \
	VPMADDUBSW xh, wh, Y13; \
	VPMADDWD Y15, Y12, Y12; \
	VPMADDWD Y15, Y13, Y13; \
	VPADDD Y13, Y12, Y12; \
	VCVTDQ2PS Y12, Y12; \
	VFMADD231PS so, Y12, acc

// I8T4DEC(idx, tab, lo, hi): decode 64 indices at idx through tab.
#define I8T4DEC(idx, tab, lo, hi) \
	VMOVDQU idx, lo; \
	VPSRLW $4, lo, hi; \
	VPAND Y14, lo, lo; \
	VPAND Y14, hi, hi; \
	VBROADCASTI128 tab, Y12; \
	VPSHUFB lo, Y12, lo; \
	VPSHUFB hi, Y12, hi

// func i8Lut4Tile(idx0, idx1, tab0, tab1 *byte, n64 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)
// out[0:4] = row 0 x tokens 0..3, out[4:8] = row 1 (raw block-scaled sums).
TEXT ·i8Lut4Tile(SB), NOSPLIT, $0-80
	MOVQ idx0+0(FP), SI
	MOVQ idx1+8(FP), DI
	MOVQ tab0+16(FP), DX
	MOVQ tab1+24(FP), BX
	MOVQ n64+32(FP), CX
	MOVQ xq+40(FP), AX
	MOVQ xstride+48(FP), R8
	MOVQ sc+56(FP), R9
	MOVQ scstride+64(FP), R10
	LEAQ (R8)(R8*2), R11
	LEAQ (R10)(R10*2), R12
	BCAST8($0x0f0f0f0f, Y14, X14)
	BCAST8($0x00010001, Y15, X15)
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JZ   t4done
t4loop:
	I8T4DEC((SI), (DX), Y8, Y9)
	I8T4DEC((DI), (BX), Y10, Y11)
	I8T4MAC(Y8, Y9, (AX), 32(AX), (R9), Y0)
	I8T4MAC(Y10, Y11, (AX), 32(AX), (R9), Y4)
	I8T4MAC(Y8, Y9, (AX)(R8*1), 32(AX)(R8*1), (R9)(R10*1), Y1)
	I8T4MAC(Y10, Y11, (AX)(R8*1), 32(AX)(R8*1), (R9)(R10*1), Y5)
	I8T4MAC(Y8, Y9, (AX)(R8*2), 32(AX)(R8*2), (R9)(R10*2), Y2)
	I8T4MAC(Y10, Y11, (AX)(R8*2), 32(AX)(R8*2), (R9)(R10*2), Y6)
	I8T4MAC(Y8, Y9, (AX)(R11*1), 32(AX)(R11*1), (R9)(R12*1), Y3)
	I8T4MAC(Y10, Y11, (AX)(R11*1), 32(AX)(R11*1), (R9)(R12*1), Y7)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $64, AX
	ADDQ $32, R9
	DECQ CX
	JNZ  t4loop
t4done:
	MOVQ out+72(FP), DX
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DX)
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVUPS X4, 16(DX)
	VZEROUPPER
	RET

// ---- lut2 tile: the same 2 x 4 tile over 128-element units, in halves ----
// A 32-byte load holds two 64-element index blocks; field k (shift 2k) of
// both is vector k of qx.permute's 2-bit layout. Half 0 decodes fields 0,1
// (activations 0..63 of the unit, scales 0..7), half 1 fields 2,3
// (activations 64..127, scales 8..15). Y14 holds the 2-bit mask.

// I8T2DEC(idx, tab, sh0, sh1, lo, hi): lo = field at shift sh0, hi at sh1.
#define I8T2DEC(idx, tab, sh0, sh1, lo, hi) \
	VMOVDQU idx, Y13; \
	VPSRLW $sh0, Y13, lo; \
	VPSRLW $sh1, Y13, hi; \
	VPAND Y14, lo, lo; \
	VPAND Y14, hi, hi; \
	VBROADCASTI128 tab, Y12; \
	VPSHUFB lo, Y12, lo; \
	VPSHUFB hi, Y12, hi

#define I8T2HALF(sh0, sh1, xo, so) \
	I8T2DEC((SI), (DX), sh0, sh1, Y8, Y9); \
	I8T2DEC((DI), (BX), sh0, sh1, Y10, Y11); \
	I8T4MAC(Y8, Y9, xo(AX), xo+32(AX), so(R9), Y0); \
	I8T4MAC(Y10, Y11, xo(AX), xo+32(AX), so(R9), Y4); \
	I8T4MAC(Y8, Y9, xo(AX)(R8*1), xo+32(AX)(R8*1), so(R9)(R10*1), Y1); \
	I8T4MAC(Y10, Y11, xo(AX)(R8*1), xo+32(AX)(R8*1), so(R9)(R10*1), Y5); \
	I8T4MAC(Y8, Y9, xo(AX)(R8*2), xo+32(AX)(R8*2), so(R9)(R10*2), Y2); \
	I8T4MAC(Y10, Y11, xo(AX)(R8*2), xo+32(AX)(R8*2), so(R9)(R10*2), Y6); \
	I8T4MAC(Y8, Y9, xo(AX)(R11*1), xo+32(AX)(R11*1), so(R9)(R12*1), Y3); \
	I8T4MAC(Y10, Y11, xo(AX)(R11*1), xo+32(AX)(R11*1), so(R9)(R12*1), Y7)

// func i8Lut2Tile(idx0, idx1, tab0, tab1 *byte, n128 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)
TEXT ·i8Lut2Tile(SB), NOSPLIT, $0-80
	MOVQ idx0+0(FP), SI
	MOVQ idx1+8(FP), DI
	MOVQ tab0+16(FP), DX
	MOVQ tab1+24(FP), BX
	MOVQ n128+32(FP), CX
	MOVQ xq+40(FP), AX
	MOVQ xstride+48(FP), R8
	MOVQ sc+56(FP), R9
	MOVQ scstride+64(FP), R10
	LEAQ (R8)(R8*2), R11
	LEAQ (R10)(R10*2), R12
	BCAST8($0x03030303, Y14, X14)
	BCAST8($0x00010001, Y15, X15)
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JZ   t2done
t2loop:
	I8T2HALF(0, 2, 0, 0)
	I8T2HALF(4, 6, 64, 32)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $128, AX
	ADDQ $64, R9
	DECQ CX
	JNZ  t2loop
t2done:
	MOVQ out+72(FP), DX
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DX)
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVUPS X4, 16(DX)
	VZEROUPPER
	RET

// ---- lut3 tile: lut2's 2-bit plane plus the 1-bit plane ----
// Per 128-element unit: plane 0 32 bytes (as lut2), plane 1 16 bytes,
// broadcast to both lanes with lane 1 shifted right by 4 (nibshift), so
// bit k of byte j is the high bit of field k; it is moved to bit 2 (<<2,
// <<1, as is, >>1 for k = 0..3), masked with c4 and OR'd in. Tables at
// (DX) (row 0) and 16(DX) (row 1); plane-1 rows at BX and R13.

DATA c4x32<>+0(SB)/8, $0x0404040404040404
DATA c4x32<>+8(SB)/8, $0x0404040404040404
DATA c4x32<>+16(SB)/8, $0x0404040404040404
DATA c4x32<>+24(SB)/8, $0x0404040404040404
GLOBL c4x32<>(SB), RODATA|NOPTR, $32

// fields 0, 1 (plane-1 bits 0, 1)
#define I8T3DEC0(p0, p1, tab, lo, hi) \
	VMOVDQU p0, Y13; \
	VBROADCASTI128 p1, Y12; \
	VPSRLVQ nibshift<>(SB), Y12, Y12; \
	VPSLLW $2, Y12, lo; \
	VPSLLW $1, Y12, hi; \
	VPAND c4x32<>(SB), lo, lo; \
	VPAND c4x32<>(SB), hi, hi; \
	VPAND Y14, Y13, Y12; \
	VPOR Y12, lo, lo; \
	VPSRLW $2, Y13, Y13; \
	VPAND Y14, Y13, Y13; \
	VPOR Y13, hi, hi; \
	VBROADCASTI128 tab, Y12; \
	VPSHUFB lo, Y12, lo; \
	VPSHUFB hi, Y12, hi

// fields 2, 3 (plane-1 bits 2, 3)
#define I8T3DEC1(p0, p1, tab, lo, hi) \
	VMOVDQU p0, Y13; \
	VBROADCASTI128 p1, Y12; \
	VPSRLVQ nibshift<>(SB), Y12, Y12; \
	VPAND c4x32<>(SB), Y12, lo; \
	VPSRLW $1, Y12, hi; \
	VPAND c4x32<>(SB), hi, hi; \
	VPSRLW $4, Y13, Y12; \
	VPAND Y14, Y12, Y12; \
	VPOR Y12, lo, lo; \
	VPSRLW $6, Y13, Y13; \
	VPAND Y14, Y13, Y13; \
	VPOR Y13, hi, hi; \
	VBROADCASTI128 tab, Y12; \
	VPSHUFB lo, Y12, lo; \
	VPSHUFB hi, Y12, hi

#define I8T3MACS(xo, so) \
	I8T4MAC(Y8, Y9, xo(AX), xo+32(AX), so(R9), Y0); \
	I8T4MAC(Y10, Y11, xo(AX), xo+32(AX), so(R9), Y4); \
	I8T4MAC(Y8, Y9, xo(AX)(R8*1), xo+32(AX)(R8*1), so(R9)(R10*1), Y1); \
	I8T4MAC(Y10, Y11, xo(AX)(R8*1), xo+32(AX)(R8*1), so(R9)(R10*1), Y5); \
	I8T4MAC(Y8, Y9, xo(AX)(R8*2), xo+32(AX)(R8*2), so(R9)(R10*2), Y2); \
	I8T4MAC(Y10, Y11, xo(AX)(R8*2), xo+32(AX)(R8*2), so(R9)(R10*2), Y6); \
	I8T4MAC(Y8, Y9, xo(AX)(R11*1), xo+32(AX)(R11*1), so(R9)(R12*1), Y3); \
	I8T4MAC(Y10, Y11, xo(AX)(R11*1), xo+32(AX)(R11*1), so(R9)(R12*1), Y7)

// func i8Lut3Tile(p0a, p0b, p1a, p1b *byte, tabs *byte, n128 int, xq *int8, xstride int, sc *float32, scstride int, out *float32)
TEXT ·i8Lut3Tile(SB), NOSPLIT, $0-88
	BCAST8($0x03030303, Y14, X14) // BCAST8 uses R13: before the arguments
	BCAST8($0x00010001, Y15, X15)
	MOVQ p0a+0(FP), SI
	MOVQ p0b+8(FP), DI
	MOVQ p1a+16(FP), BX
	MOVQ p1b+24(FP), R13
	MOVQ tabs+32(FP), DX
	MOVQ n128+40(FP), CX
	MOVQ xq+48(FP), AX
	MOVQ xstride+56(FP), R8
	MOVQ sc+64(FP), R9
	MOVQ scstride+72(FP), R10
	LEAQ (R8)(R8*2), R11
	LEAQ (R10)(R10*2), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	TESTQ CX, CX
	JZ   t3done
t3loop:
	I8T3DEC0((SI), (BX), (DX), Y8, Y9)
	I8T3DEC0((DI), (R13), 16(DX), Y10, Y11)
	I8T3MACS(0, 0)
	I8T3DEC1((SI), (BX), (DX), Y8, Y9)
	I8T3DEC1((DI), (R13), 16(DX), Y10, Y11)
	I8T3MACS(64, 32)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $16, BX
	ADDQ $16, R13
	ADDQ $128, AX
	ADDQ $64, R9
	DECQ CX
	JNZ  t3loop
t3done:
	MOVQ out+80(FP), DX
	VHADDPS Y1, Y0, Y0
	VHADDPS Y3, Y2, Y2
	VHADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DX)
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS X5, X4, X4
	VMOVUPS X4, 16(DX)
	VZEROUPPER
	RET

// func axpyAVX2(a float32, x, y *float32, n int)
// y[i] += a * x[i] (FMA), n a multiple of 8.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	VBROADCASTSS a+0(FP), Y0
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	MOVQ n+24(FP), CX
axpy32:
	CMPQ CX, $32
	JL   axpy8
	VMOVUPS (DI), Y1
	VMOVUPS 32(DI), Y2
	VMOVUPS 64(DI), Y3
	VMOVUPS 96(DI), Y4
	VFMADD231PS (SI), Y0, Y1
	VFMADD231PS 32(SI), Y0, Y2
	VFMADD231PS 64(SI), Y0, Y3
	VFMADD231PS 96(SI), Y0, Y4
	VMOVUPS Y1, (DI)
	VMOVUPS Y2, 32(DI)
	VMOVUPS Y3, 64(DI)
	VMOVUPS Y4, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  axpy32
axpy8:
	CMPQ CX, $8
	JL   axpydone
	VMOVUPS (DI), Y1
	VFMADD231PS (SI), Y0, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  axpy8
axpydone:
	VZEROUPPER
	RET

// ---- float32 / float16 matrix-vector rows ----
// rows2F32AVX2 and rows2F16AVX2 compute npairs pairs of row dot products
// with x (n elements, a multiple of 8): row i of stream 0 (w0 + i*n) into
// out0[i] and row i of stream 1 (w1 + i*n) into out1[i], both in one loop.
// Each row is summed exactly as dotAVX2 / dotF16AVX2 sum it (the same four
// accumulators, 32-element steps, 8-element tail into the first and
// horizontal sum; the FMA operands commuted): the same bits.
//
// Two streams because one thread reading one stream of weights kept DRAM
// less busy than the streaming probe does: 5632x2048 rows on one thread,
// medians of 7 alternating rounds, f16 9.6 GB/s (0.79 of Sum's 12.1) and
// f32 9.9 (0.82) with one row after another, 11.4 (0.94) and 12.2 (1.00)
// with MatVec's rows split in two halves read side by side. Software
// prefetch did less: PREFETCHNTA 1 KiB ahead in a single stream gave f16
// ~+6%, and slowed f32 (docs/PERF.md, session 9).

#define R2ZERO \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11; \
	VXORPS Y12, Y12, Y12; \
	VXORPS Y13, Y13, Y13

// horizontal sum of a, b, c, d (HSUM4's order) stored to (out)
#define R2HSUM(a, b, c, d, xa, out) \
	VADDPS b, a, a; \
	VADDPS d, c, c; \
	VADDPS c, a, a; \
	VEXTRACTF128 $1, a, X3; \
	VADDPS X3, xa, xa; \
	VHADDPS xa, xa, xa; \
	VHADDPS xa, xa, xa; \
	VMOVSS xa, (out)

// R2STEP32(LD, o1, o2, o3): 32 elements of both rows: x (DI) in Y0, Y1
// (16 at a time); weights loaded to float32 by LD (VMOVUPS, VCVTPH2PS) at
// offsets 0, o1, o2, o3 of SI (row A) and R8 (row B); dotAVX2's four
// accumulators per row (Y2..Y5 for A, Y10..Y13 for B).
#define R2STEP32(LD, o1, o2, o3) \
	VMOVUPS (DI), Y0; \
	VMOVUPS 32(DI), Y1; \
	LD (SI), Y6; \
	LD o1(SI), Y7; \
	LD (R8), Y8; \
	LD o1(R8), Y9; \
	VFMADD231PS Y0, Y6, Y2; \
	VFMADD231PS Y1, Y7, Y3; \
	VFMADD231PS Y0, Y8, Y10; \
	VFMADD231PS Y1, Y9, Y11; \
	VMOVUPS 64(DI), Y0; \
	VMOVUPS 96(DI), Y1; \
	LD o2(SI), Y6; \
	LD o3(SI), Y7; \
	LD o2(R8), Y8; \
	LD o3(R8), Y9; \
	VFMADD231PS Y0, Y6, Y4; \
	VFMADD231PS Y1, Y7, Y5; \
	VFMADD231PS Y0, Y8, Y12; \
	VFMADD231PS Y1, Y9, Y13

// R2STEP8(LD): the 8-element tail step, into the first accumulators.
#define R2STEP8(LD) \
	VMOVUPS (DI), Y0; \
	LD (SI), Y6; \
	LD (R8), Y8; \
	VFMADD231PS Y0, Y6, Y2; \
	VFMADD231PS Y0, Y8, Y10

// func rows2F32AVX2(w0, w1, x *float32, n, npairs int, out0, out1 *float32)
TEXT ·rows2F32AVX2(SB), NOSPLIT, $0-56
	MOVQ w0+0(FP), SI
	MOVQ w1+8(FP), R8
	MOVQ n+24(FP), R9
	MOVQ npairs+32(FP), R10
	MOVQ out0+40(FP), DX
	MOVQ out1+48(FP), R11
	TESTQ R10, R10
	JZ   p32end
p32row:
	MOVQ x+16(FP), DI
	MOVQ R9, CX
	R2ZERO
p32x32:
	CMPQ CX, $32
	JL   p32x8
	R2STEP32(VMOVUPS, 32, 64, 96)
	ADDQ $128, SI
	ADDQ $128, R8
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  p32x32
p32x8:
	CMPQ CX, $8
	JL   p32done
	R2STEP8(VMOVUPS)
	ADDQ $32, SI
	ADDQ $32, R8
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  p32x8
p32done:
	R2HSUM(Y2, Y3, Y4, Y5, X2, DX)
	R2HSUM(Y10, Y11, Y12, Y13, X10, R11)
	ADDQ $4, DX
	ADDQ $4, R11
	DECQ R10
	JNZ  p32row
p32end:
	VZEROUPPER
	RET

// func rows2F16AVX2(w0, w1 *uint16, x *float32, n, npairs int, out0, out1 *float32)
TEXT ·rows2F16AVX2(SB), NOSPLIT, $0-56
	MOVQ w0+0(FP), SI
	MOVQ w1+8(FP), R8
	MOVQ n+24(FP), R9
	MOVQ npairs+32(FP), R10
	MOVQ out0+40(FP), DX
	MOVQ out1+48(FP), R11
	TESTQ R10, R10
	JZ   p16end
p16row:
	MOVQ x+16(FP), DI
	MOVQ R9, CX
	R2ZERO
p16x32:
	CMPQ CX, $32
	JL   p16x8
	R2STEP32(VCVTPH2PS, 16, 32, 48)
	ADDQ $64, SI
	ADDQ $64, R8
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  p16x32
p16x8:
	CMPQ CX, $8
	JL   p16done
	R2STEP8(VCVTPH2PS)
	ADDQ $16, SI
	ADDQ $16, R8
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  p16x8
p16done:
	R2HSUM(Y2, Y3, Y4, Y5, X2, DX)
	R2HSUM(Y10, Y11, Y12, Y13, X10, R11)
	ADDQ $4, DX
	ADDQ $4, R11
	DECQ R10
	JNZ  p16row
p16end:
	VZEROUPPER
	RET
