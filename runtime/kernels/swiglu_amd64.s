//go:build amd64 && !purego

#include "textflag.h"

#define EXPCONSTS \
	VBROADCASTSS 0(AX), Y15; \
	VBROADCASTSS 4(AX), Y14; \
	VBROADCASTSS 8(AX), Y13; \
	VBROADCASTSS 12(AX), Y12; \
	VBROADCASTSS 16(AX), Y11; \
	VBROADCASTSS 20(AX), Y10; \
	VBROADCASTSS 24(AX), Y9; \
	VBROADCASTSS 28(AX), Y8; \
	VBROADCASTSS 32(AX), Y7

// EXPF: Y4 = expf(Y1), scratch Y2, Y3, Y5; constants in Y7..Y15 and at (AX)
#define EXPF \
	VMULPS Y15, Y1, Y2; \
	VADDPS Y14, Y2, Y2; \
	VROUNDPS $1, Y2, Y2; \
	VMULPS Y13, Y2, Y3; \
	VSUBPS Y3, Y1, Y3; \
	VMULPS Y12, Y2, Y4; \
	VSUBPS Y4, Y3, Y3; \
	VMULPS Y7, Y3, Y4; \
	VADDPS Y8, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS Y9, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS Y10, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS Y14, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS Y11, Y4, Y4; \
	VMULPS Y3, Y4, Y4; \
	VADDPS Y11, Y4, Y4; \
	VCVTTPS2DQ Y2, Y5; \
	VPSLLD $23, Y5, Y5; \
	VPADDD Y5, Y4, Y4; \
	VBROADCASTSS 36(AX), Y5; \
	VCMPPS $1, Y5, Y1, Y5; \
	VANDNPS Y4, Y5, Y4; \
	VBROADCASTSS 40(AX), Y5; \
	VCMPPS $14, Y5, Y1, Y5; \
	VBROADCASTSS 44(AX), Y3; \
	VBLENDVPS Y5, Y3, Y4, Y4

// func swigluAVX2(gate, up *float32, n int, c *[12]float32)
// n a multiple of 8. Per 8 lanes, exactly the float32 steps of runtime.Expf
// (separate VMULPS, VADDPS, VSUBPS; no FMA), then g times 1/(1+e) times h.
// c: 0 log2e, 1 0.5, 2 ln2hi, 3 ln2lo, 4 1, 5 1/6, 6 1/24, 7 1/120,
// 8 1/720, 9 -87, 10 88, 11 +Inf.
TEXT ·swigluAVX2(SB), NOSPLIT, $0-32
	MOVQ gate+0(FP), SI
	MOVQ up+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ c+24(FP), AX
	EXPCONSTS
	XORQ BX, BX
	TESTQ CX, CX
	JZ   swdone
swloop:
	VMOVUPS (SI)(BX*4), Y0    // g
	VBROADCASTSS signbit<>(SB), Y1
	VXORPS Y0, Y1, Y1         // x = -g (flip the sign bit, as Go's negation)
	EXPF
	// g * (1 / (1 + e)) * h
	VADDPS Y11, Y4, Y4
	VDIVPS Y4, Y11, Y4
	VMULPS Y4, Y0, Y0
	VMULPS (DI)(BX*4), Y0, Y0
	VMOVUPS Y0, (SI)(BX*4)
	ADDQ $8, BX
	CMPQ BX, CX
	JL   swloop
swdone:
	VZEROUPPER
	RET

DATA signbit<>+0(SB)/4, $0x80000000
GLOBL signbit<>(SB), RODATA|NOPTR, $4

// func expShiftAVX2(x *float32, n int, m float32, c *[12]float32)
// x[i] = expf(x[i] - m) for n (a multiple of 8) elements: the softmax's
// exponentials, the float32 steps of runtime.Expf as in swigluAVX2.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVQ c+24(FP), AX
	EXPCONSTS
	VBROADCASTSS m+16(FP), Y6
	XORQ BX, BX
	TESTQ CX, CX
	JZ   exdone
exloop:
	VMOVUPS (SI)(BX*4), Y1
	VSUBPS Y6, Y1, Y1         // x - m
	EXPF
	VMOVUPS Y4, (SI)(BX*4)
	ADDQ $8, BX
	CMPQ BX, CX
	JL   exloop
exdone:
	VZEROUPPER
	RET
