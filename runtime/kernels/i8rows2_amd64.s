//go:build amd64 && !purego

#include "textflag.h"
#include "i8mac_amd64.h"

// ---- int8 decode row kernels, two row streams at once ----
// i8Lut4Rows2 computes npairs rows of stream A (idxA, one table tabA) and
// npairs rows of stream B (idxB, table tabB) in one loop, each row with
// i8Lut4Rows's arithmetic: the same units, accumulators (units 0, 2, ...
// into the first, 1, 3, ... into the second, a lone last unit into the
// first) and horizontal sum, so the same bits. Both streams' rows lie in
// one LUT group each (i8RowPairs, kernels_amd64.go, cuts them into such
// segments).
// Why two streams: see rows2F16AVX2 in kernels_amd64.s.

// func i8Lut4Rows2(idxA, idxB *byte, rowBytes, npairs, n64 int, xq *int8, sc *float32, tabA, tabB *byte, outA, outB *float32)
TEXT ·i8Lut4Rows2(SB), NOSPLIT, $0-88
	MOVQ idxA+0(FP), SI
	MOVQ idxB+8(FP), R11
	MOVQ rowBytes+16(FP), R9
	MOVQ npairs+24(FP), CX
	MOVQ n64+32(FP), R10
	MOVQ xq+40(FP), DI
	MOVQ sc+48(FP), R8
	MOVQ tabA+56(FP), AX
	VBROADCASTI128 (AX), Y13
	MOVQ tabB+64(FP), AX
	VBROADCASTI128 (AX), Y12
	MOVQ outA+72(FP), DX
	MOVQ outB+80(FP), R13
	SHLQ $5, R10
	MOVL $0x0f0f0f0f, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x00010001, AX
	VMOVD AX, X14
	VPBROADCASTD X14, Y14
	TESTQ CX, CX
	JZ   w4done
w4row:
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	XORQ BX, BX
w4pair:
	LEAQ 64(BX), R12
	CMPQ R12, R10
	JG   w4single
	PREFETCHT0 PFD(SI)(BX*1)
	PREFETCHT0 PFD(R11)(BX*1)
	I8U4(SI, Y13, 0, 0, 32, Y2, Y4, Y5)
	I8U4(R11, Y12, 0, 0, 32, Y8, Y6, Y7)
	I8U4(SI, Y13, 32, 64, 96, Y3, Y10, Y11)
	I8U4(R11, Y12, 32, 64, 96, Y9, Y0, Y1)
	ADDQ $64, BX
	JMP  w4pair
w4single:
	CMPQ BX, R10
	JGE  w4rowdone
	I8U4(SI, Y13, 0, 0, 32, Y2, Y4, Y5)
	I8U4(R11, Y12, 0, 0, 32, Y8, Y6, Y7)
w4rowdone:
	I8HSUM(Y2, Y3, X2, DX)
	I8HSUM(Y8, Y9, X8, R13)
	ADDQ R9, SI
	ADDQ R9, R11
	ADDQ $4, DX
	ADDQ $4, R13
	DECQ CX
	JNZ  w4row
w4done:
	VZEROUPPER
	RET

// lut2 unit of one stream (i8Lut2Rows's r2loop body): 128 elements, index
// bytes at (base)(BX*1), nibble tables lo/hi, into the int32 accumulators
// acc0 (fields 0, 1) and acc1 (fields 2, 3); temps Y0, Y1, Y4..Y7.
#define U2(base, lo, hi, acc0, acc1) \
	VMOVDQU (base)(BX*1), Y0; \
	VPSRLW $4, Y0, Y1; \
	VPAND Y15, Y0, Y0; \
	VPAND Y15, Y1, Y1; \
	VPSHUFB Y0, lo, Y4; \
	VPSHUFB Y0, hi, Y5; \
	VPSHUFB Y1, lo, Y6; \
	VPSHUFB Y1, hi, Y7; \
	I2MACI(Y4, Y5, (DI)(BX*4), 32(DI)(BX*4), (R8)(BX*2), acc0); \
	I2MACI(Y6, Y7, 64(DI)(BX*4), 96(DI)(BX*4), 32(R8)(BX*2), acc1)

// func i8Lut2Rows2(idxA, idxB *byte, rowBytes, npairs, n128 int, xq *int8, isc *int32, sd *float32, tabA, tabB *byte, outA, outB *float32)
// i8Lut2Rows (i8rows_amd64.s) over two streams, as i8Lut4Rows2: per
// super-block each stream's exact int32 sum, both converted and scaled by
// D at once (lane 0 stream A, lane 1 stream B of X14; VMULPS and VADDPS
// give each lane i8Lut2Rows's VMULSS/VADDSS bits).
TEXT ·i8Lut2Rows2(SB), NOSPLIT, $0-96
	MOVQ idxA+0(FP), SI
	MOVQ idxB+8(FP), R11
	MOVQ rowBytes+16(FP), R9
	MOVQ npairs+24(FP), CX
	MOVQ n128+32(FP), R10
	MOVQ xq+40(FP), DI
	MOVQ isc+48(FP), R8
	MOVQ sd+56(FP), R14
	MOVQ tabA+64(FP), AX
	VBROADCASTI128 (AX), Y13
	VBROADCASTI128 16(AX), Y12
	MOVQ tabB+72(FP), AX
	VBROADCASTI128 (AX), Y11
	VBROADCASTI128 16(AX), Y10
	MOVQ outA+80(FP), DX
	MOVQ outB+88(FP), R13
	SHLQ $5, R10
	MOVL $0x0f0f0f0f, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	TESTQ CX, CX
	JZ   w2done
w2row:
	VXORPS X14, X14, X14
	XORQ BX, BX
	TESTQ R10, R10
	JZ   w2rowdone
w2sb:
	LEAQ 512(BX), R12
	CMPQ R12, R10
	CMOVQGT R10, R12
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y8, Y8, Y8
	VPXOR Y9, Y9, Y9
w2loop:
	PREFETCHT0 PFD(SI)(BX*1)
	PREFETCHT0 PFD(R11)(BX*1)
	U2(SI, Y13, Y12, Y2, Y3)
	U2(R11, Y11, Y10, Y8, Y9)
	ADDQ $32, BX
	CMPQ BX, R12
	JL   w2loop
	I8ISUM(Y2, Y3, X2, X3)
	I8ISUM(Y8, Y9, X8, X3)
	VPUNPCKLDQ X8, X2, X2
	VCVTDQ2PS X2, X2
	LEAQ -1(BX), R12
	SHRQ $9, R12
	VBROADCASTSS (R14)(R12*4), X3
	VMULPS X3, X2, X2
	VADDPS X2, X14, X14
	CMPQ BX, R10
	JL   w2sb
w2rowdone:
	VMOVSS X14, (DX)
	VMOVSHDUP X14, X3
	VMOVSS X3, (R13)
	ADDQ R9, SI
	ADDQ R9, R11
	ADDQ $4, DX
	ADDQ $4, R13
	DECQ CX
	JNZ  w2row
w2done:
	VZEROUPPER
	RET
