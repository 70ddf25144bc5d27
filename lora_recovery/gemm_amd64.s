//go:build amd64 && !purego

#include "textflag.h"

#define ROW(bc, lo, hi) \
	VFMADD231PS bc, Y12, lo; \
	VFMADD231PS bc, Y13, hi

// func gemm4x16(a *float32, sam, sak int, b *float32, ldb int, c *float32, ldc int, k int, acc int)
// Outer-product tile: for i < 4, j < 16,
// c[i*ldc+j] (+ when acc != 0)= sum_{kk<k} a[i*sam+kk*sak] * b[kk*ldb+j],
// summed in kk order with FMA (strides in elements; k > 0).
TEXT ·gemm4x16(SB), NOSPLIT, $0-72
	MOVQ a+0(FP), SI
	MOVQ sam+8(FP), R8
	SHLQ $2, R8
	MOVQ sak+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R10
	SHLQ $2, R10
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R11
	SHLQ $2, R11
	MOVQ k+56(FP), CX
	LEAQ (R8)(R8*2), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

g416loop:
	VMOVUPS (DI), Y12
	VMOVUPS 32(DI), Y13
	VBROADCASTSS (SI), Y14
	ROW(Y14, Y0, Y1)
	VBROADCASTSS (SI)(R8*1), Y15
	ROW(Y15, Y2, Y3)
	VBROADCASTSS (SI)(R8*2), Y14
	ROW(Y14, Y4, Y5)
	VBROADCASTSS (SI)(R12*1), Y15
	ROW(Y15, Y6, Y7)
	ADDQ R9, SI
	ADDQ R10, DI
	DECQ CX
	JNZ  g416loop

	LEAQ (DX)(R11*2), R13
	MOVQ acc+64(FP), AX
	TESTQ AX, AX
	JZ   g416store
	VADDPS (DX), Y0, Y0
	VADDPS 32(DX), Y1, Y1
	VADDPS (DX)(R11*1), Y2, Y2
	VADDPS 32(DX)(R11*1), Y3, Y3
	VADDPS (R13), Y4, Y4
	VADDPS 32(R13), Y5, Y5
	VADDPS (R13)(R11*1), Y6, Y6
	VADDPS 32(R13)(R11*1), Y7, Y7

g416store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, (DX)(R11*1)
	VMOVUPS Y3, 32(DX)(R11*1)
	VMOVUPS Y4, (R13)
	VMOVUPS Y5, 32(R13)
	VMOVUPS Y6, (R13)(R11*1)
	VMOVUPS Y7, 32(R13)(R11*1)
	VZEROUPPER
	RET

// func gemm4x8(a *float32, sam, sak int, b *float32, ldb int, c *float32, ldc int, k int, acc int)
// gemm4x16 for 8 columns.
TEXT ·gemm4x8(SB), NOSPLIT, $0-72
	MOVQ a+0(FP), SI
	MOVQ sam+8(FP), R8
	SHLQ $2, R8
	MOVQ sak+16(FP), R9
	SHLQ $2, R9
	MOVQ b+24(FP), DI
	MOVQ ldb+32(FP), R10
	SHLQ $2, R10
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R11
	SHLQ $2, R11
	MOVQ k+56(FP), CX
	LEAQ (R8)(R8*2), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y2, Y2, Y2
	VXORPS Y4, Y4, Y4
	VXORPS Y6, Y6, Y6

g48loop:
	VMOVUPS (DI), Y12
	VBROADCASTSS (SI), Y14
	VFMADD231PS Y14, Y12, Y0
	VBROADCASTSS (SI)(R8*1), Y15
	VFMADD231PS Y15, Y12, Y2
	VBROADCASTSS (SI)(R8*2), Y14
	VFMADD231PS Y14, Y12, Y4
	VBROADCASTSS (SI)(R12*1), Y15
	VFMADD231PS Y15, Y12, Y6
	ADDQ R9, SI
	ADDQ R10, DI
	DECQ CX
	JNZ  g48loop

	LEAQ (DX)(R11*2), R13
	MOVQ acc+64(FP), AX
	TESTQ AX, AX
	JZ   g48store
	VADDPS (DX), Y0, Y0
	VADDPS (DX)(R11*1), Y2, Y2
	VADDPS (R13), Y4, Y4
	VADDPS (R13)(R11*1), Y6, Y6

g48store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y2, (DX)(R11*1)
	VMOVUPS Y4, (R13)
	VMOVUPS Y6, (R13)(R11*1)
	VZEROUPPER
	RET
