//go:build amd64 && !purego

#include "textflag.h"
#include "i8mac_amd64.h"

// ---- int8 decode (matrix-vector) row kernels for lut2 and lut3 ----
// Arguments, registers and the activation layout are those of
// i8Lut4Rows (kernels_amd64.s): rows loop here, the table advances every
// gs rows (first rows for the first group), each row's block-scaled sum
// goes to out and Go applies the group's s, m and the row scale.

// next row: out, table (every gs rows; 32 bytes per group)
#define IRNEXT(lbl) \
	ADDQ $4, DX; \
	DECQ R12; \
	JNZ  lbl; \
	ADDQ $32, AX; \
	MOVQ R11, R12; \
lbl:

#define IRBCAST(val, reg, x) \
	MOVL val, R13; \
	VMOVD R13, x; \
	VPBROADCASTD x, reg

// func i8Lut2Rows(idx *byte, rowBytes, nrows, n128 int, xq *int8, isc *int32, sd *float32, tab *byte, gs, first int, out *float32)
// 2-bit unit (128 elements, 32 index bytes at (SI)(BX*1); activations at
// (DI)(BX*4), 128 bytes; integer scales at (R8)(BX*2), 64 bytes). tab holds
// per group the two nibble tables of i8Tab.u2 (32 bytes): the low and high
// nibble of each index byte are looked up in both ([i] = u[i&3] gives
// fields 0 and 2, [16+i] = u[i>>2] fields 1 and 3), one shift and two
// masks instead of three shifts and four masks. The units of a
// super-block (q8Super sub-blocks: 16 units, 512 index bytes) add in
// int32 (I2MACI); at its end the lanes are summed exactly, converted, and
// row += D * sum in float (VMULSS, VADDSS: i8RowRefInt's order).
TEXT ·i8Lut2Rows(SB), NOSPLIT, $0-88
	MOVQ idx+0(FP), SI
	MOVQ rowBytes+8(FP), R9
	MOVQ nrows+16(FP), CX
	MOVQ n128+24(FP), R10
	MOVQ xq+32(FP), DI
	MOVQ isc+40(FP), R8
	MOVQ sd+48(FP), R14
	MOVQ tab+56(FP), AX
	MOVQ gs+64(FP), R11
	MOVQ first+72(FP), R12
	MOVQ out+80(FP), DX
	SHLQ $5, R10
	IRBCAST($0x0f0f0f0f, Y15, X15)
	TESTQ CX, CX
	JZ   r2done
r2row:
	VBROADCASTI128 (AX), Y13
	VBROADCASTI128 16(AX), Y12
	VXORPS X10, X10, X10
	XORQ BX, BX
	TESTQ R10, R10
	JZ   r2rowdone
r2sb:
	LEAQ 512(BX), R13
	CMPQ R13, R10
	CMOVQGT R10, R13
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
r2loop:
	PREFETCHT0 PFD(SI)(BX*1)
	VMOVDQU (SI)(BX*1), Y8
	VPSRLW $4, Y8, Y9
	VPAND Y15, Y8, Y8
	VPAND Y15, Y9, Y9
	VPSHUFB Y8, Y13, Y4
	VPSHUFB Y8, Y12, Y5
	VPSHUFB Y9, Y13, Y6
	VPSHUFB Y9, Y12, Y7
	I2MACI(Y4, Y5, (DI)(BX*4), 32(DI)(BX*4), (R8)(BX*2), Y2)
	I2MACI(Y6, Y7, 64(DI)(BX*4), 96(DI)(BX*4), 32(R8)(BX*2), Y3)
	ADDQ $32, BX
	CMPQ BX, R13
	JL   r2loop
	I8ISUM(Y2, Y3, X2, X3)
	VCVTDQ2PS X2, X2
	LEAQ -1(BX), R13
	SHRQ $9, R13
	VMULSS (R14)(R13*4), X2, X2
	VADDSS X2, X10, X10
	CMPQ BX, R10
	JL   r2sb
r2rowdone:
	VMOVSS X10, (DX)
	ADDQ R9, SI
	IRNEXT(r2next)
	DECQ CX
	JNZ  r2row
r2done:
	VZEROUPPER
	RET

DATA irshift<>+0(SB)/8, $0
DATA irshift<>+8(SB)/8, $0
DATA irshift<>+16(SB)/8, $4
DATA irshift<>+24(SB)/8, $4
GLOBL irshift<>(SB), RODATA|NOPTR, $32

// LUT3 decode of one 128-element unit: plane 0 (32 bytes: lane 0 index
// block A, lane 1 block B) in Y8, plane 1 (16 bytes) broadcast in Y9.
// Plane 1 is shifted right by 4 in lane 1 (Y11: qword shifts 0,0,4,4),
// so bits 0-3 of byte j are the high bits b0..b3 of fields 0-3 of byte j
// of the lane's block. With A = p0 & 0x33 (fields 0, 2 at bits 0-1, 4-5),
// C = (p0 >> 2) & 0x33 (fields 1, 3), V2 = (p1 << 2) & 0x0c (b0, b1 at
// bits 2, 3) and V3 = p1 & 0x0c (b2, b3 at bits 2, 3):
//
//	field 0: A | V2       nibble f0 | b0<<2 | b1<<3 -> T_a[i] = u[i&7]
//	field 1: C | V2       nibble f1 | b0<<2 | b1<<3 -> T_b[i] = u[i&3 | (i>>3)<<2]
//	field 2: A>>4 | V3    nibble f2 | b2<<2 | b3<<3 -> T_a
//	field 3: C>>4 | V3    nibble f3 | b2<<2 | b3<<3 -> T_b
//
// (the word shifts bring the next byte's bits in at bits 4-7 only, where
// VPSHUFB ignores them, and bit 7, which would zero the byte, stays
// clear): 13 integer ops where building each 3-bit index took 19. T_a,
// T_b are i8Tab.u3 (32 bytes per group) in Y13, Y1; Y15 = 0x33, Y12 =
// 0x0c. Out: the table bytes of fields 0..3 in Y4..Y7.
#define I3DEC \
	VPSRLVQ Y11, Y9, Y9; \
	VPAND Y12, Y9, Y10; \
	VPSLLW $2, Y9, Y9; \
	VPAND Y12, Y9, Y9; \
	VPAND Y15, Y8, Y4; \
	VPSRLW $2, Y8, Y8; \
	VPAND Y15, Y8, Y5; \
	VPSRLW $4, Y4, Y6; \
	VPSRLW $4, Y5, Y7; \
	VPOR Y9, Y4, Y4; \
	VPOR Y9, Y5, Y5; \
	VPOR Y10, Y6, Y6; \
	VPOR Y10, Y7, Y7; \
	VPSHUFB Y4, Y13, Y4; \
	VPSHUFB Y5, Y1, Y5; \
	VPSHUFB Y6, Y13, Y6; \
	VPSHUFB Y7, Y1, Y7

// func i8Lut3Rows(p0 *byte, rowBytes0 int, p1 *byte, rowBytes1, nrows, n128 int, xq *int8, sc *float32, tab *byte, gs, first int, out *float32)
// 3-bit unit (128 elements): plane 0 (2-bit) 32 bytes at (SI)(BX*2),
// plane 1 (1-bit) 16 bytes at (R9)(BX*1), activations (DI)(BX*8), scales
// (R8)(BX*4); BX steps 16. Decode: I3DEC.
TEXT ·i8Lut3Rows(SB), NOSPLIT, $0-96
	MOVQ p0+0(FP), SI
	MOVQ p1+16(FP), R9
	MOVQ nrows+32(FP), CX
	MOVQ n128+40(FP), R10
	MOVQ xq+48(FP), DI
	MOVQ sc+56(FP), R8
	MOVQ tab+64(FP), AX
	MOVQ gs+72(FP), R11
	MOVQ first+80(FP), R12
	MOVQ out+88(FP), DX
	SHLQ $4, R10
	IRBCAST($0x33333333, Y15, X15)
	IRBCAST($0x00010001, Y14, X14)
	IRBCAST($0x0c0c0c0c, Y12, X12)
	VMOVDQU irshift<>(SB), Y11
	TESTQ CX, CX
	JZ   r3done
r3row:
	VBROADCASTI128 (AX), Y13
	VBROADCASTI128 16(AX), Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ BX, BX
	TESTQ R10, R10
	JZ   r3rowdone
r3loop:
	PREFETCHT0 PFD(SI)(BX*2)
	PREFETCHT0 PFD/2(R9)(BX*1)
	VMOVDQU (SI)(BX*2), Y8
	VBROADCASTI128 (R9)(BX*1), Y9
	I3DEC
	I8MAC(Y4, Y5, (DI)(BX*8), 32(DI)(BX*8), (R8)(BX*4), Y2)
	I8MAC(Y6, Y7, 64(DI)(BX*8), 96(DI)(BX*8), 32(R8)(BX*4), Y3)
	ADDQ $16, BX
	CMPQ BX, R10
	JL   r3loop
r3rowdone:
	I8HSUM(Y2, Y3, X2, DX)
	ADDQ rowBytes0+8(FP), SI
	ADDQ rowBytes1+24(FP), R9
	IRNEXT(r3next)
	DECQ CX
	JNZ  r3row
r3done:
	VZEROUPPER
	RET
