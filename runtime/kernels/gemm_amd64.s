//go:build amd64 && !purego

#include "textflag.h"

// Register-tiled float32 micro-kernel for prefill (MatMul, float mode):
// 3 weight rows x 4 tokens, dot-product form (both operands contiguous
// along k), 12 ymm accumulators, so each 8-wide step is 7 loads for 12
// FMAs (dot4: 5 loads for 4) and the kernel is FMA-bound, not load-bound.

#define T3(acc0, acc1, acc2) \
	VFMADD231PS Y15, Y12, acc0; \
	VFMADD231PS Y15, Y13, acc1; \
	VFMADD231PS Y15, Y14, acc2

// func dot3x4AVX2(w *float32, ldw int, x *float32, ldx int, n int, out *float32)
// out[t*3+r] = sum_{k<n} w[r*ldw+k] * x[t*ldx+k] for r < 3, t < 4; ldw and ldx
// in elements (0 repeats a row or token); n a positive multiple of 8.
// Lane l accumulates k = l mod 8 in order; lanes are summed as
// ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)).
TEXT ·dot3x4AVX2(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), SI
	MOVQ ldw+8(FP), R8
	MOVQ x+16(FP), DI
	MOVQ ldx+24(FP), R9
	MOVQ n+32(FP), CX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, CX
	LEAQ (SI)(R8*1), R11
	LEAQ (R11)(R8*1), R12
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ AX, AX
d34loop:
	VMOVUPS (SI)(AX*1), Y12
	VMOVUPS (R11)(AX*1), Y13
	VMOVUPS (R12)(AX*1), Y14
	VMOVUPS (DI)(AX*1), Y15
	T3(Y0, Y1, Y2)
	VMOVUPS (R13)(AX*1), Y15
	T3(Y3, Y4, Y5)
	VMOVUPS (R14)(AX*1), Y15
	T3(Y6, Y7, Y8)
	VMOVUPS (BX)(AX*1), Y15
	T3(Y9, Y10, Y11)
	ADDQ $32, AX
	CMPQ AX, CX
	JB   d34loop

	// Fold the high lanes onto the low ones, then pairwise horizontal adds:
	// four accumulators -> one xmm of four sums.
	MOVQ out+40(FP), DX
	VEXTRACTF128 $1, Y0, X12
	VADDPS X12, X0, X0
	VEXTRACTF128 $1, Y1, X12
	VADDPS X12, X1, X1
	VEXTRACTF128 $1, Y2, X12
	VADDPS X12, X2, X2
	VEXTRACTF128 $1, Y3, X12
	VADDPS X12, X3, X3
	VHADDPS X1, X0, X0
	VHADDPS X3, X2, X2
	VHADDPS X2, X0, X0
	VMOVUPS X0, (DX)
	VEXTRACTF128 $1, Y4, X12
	VADDPS X12, X4, X4
	VEXTRACTF128 $1, Y5, X12
	VADDPS X12, X5, X5
	VEXTRACTF128 $1, Y6, X12
	VADDPS X12, X6, X6
	VEXTRACTF128 $1, Y7, X12
	VADDPS X12, X7, X7
	VHADDPS X5, X4, X4
	VHADDPS X7, X6, X6
	VHADDPS X6, X4, X4
	VMOVUPS X4, 16(DX)
	VEXTRACTF128 $1, Y8, X12
	VADDPS X12, X8, X8
	VEXTRACTF128 $1, Y9, X12
	VADDPS X12, X9, X9
	VEXTRACTF128 $1, Y10, X12
	VADDPS X12, X10, X10
	VEXTRACTF128 $1, Y11, X12
	VADDPS X12, X11, X11
	VHADDPS X9, X8, X8
	VHADDPS X11, X10, X10
	VHADDPS X10, X8, X8
	VMOVUPS X8, 32(DX)
	VZEROUPPER
	RET
