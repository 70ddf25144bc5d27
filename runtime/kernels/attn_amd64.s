//go:build amd64 && !purego

#include "textflag.h"

// KEYACC computes, for the key row at (SI), dotAVX2's 8-lane total of
// q.k with q in Y8..Y15: four accumulators (lanes 0-7, 8-15, 16-23,
// 24-31 of the first 32 values, then of the second 32), summed as
// HSUM4 sums them, and the high 128 bits added to the low: the 4-lane
// vector that HSUM4's two VHADDPS then reduce. Result in Xdst.
#define KEYACC(dst) \
	VXORPS      Y0, Y0, Y0; \
	VXORPS      Y1, Y1, Y1; \
	VXORPS      Y2, Y2, Y2; \
	VXORPS      Y3, Y3, Y3; \
	VFMADD231PS (SI), Y8, Y0; \
	VFMADD231PS 32(SI), Y9, Y1; \
	VFMADD231PS 64(SI), Y10, Y2; \
	VFMADD231PS 96(SI), Y11, Y3; \
	VFMADD231PS 128(SI), Y12, Y0; \
	VFMADD231PS 160(SI), Y13, Y1; \
	VFMADD231PS 192(SI), Y14, Y2; \
	VFMADD231PS 224(SI), Y15, Y3; \
	VADDPS      Y1, Y0, Y0; \
	VADDPS      Y3, Y2, Y2; \
	VADDPS      Y2, Y0, Y0; \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS      X1, X0, dst; \
	ADDQ        DX, SI

// func attnScores64AVX2(q, k *float32, strideBytes, n int, scale float32, out *float32) (mx float32)
// out[t] = (q . k_t) * scale, k_t at k + t*strideBytes, 64 values each;
// mx = the largest out[t] (n >= 1).
TEXT ·attnScores64AVX2(SB), NOSPLIT, $0-52
	MOVQ         q+0(FP), AX
	MOVQ         k+8(FP), SI
	MOVQ         strideBytes+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS scale+32(FP), X7
	MOVQ         out+40(FP), DI
	VMOVUPS      (AX), Y8
	VMOVUPS      32(AX), Y9
	VMOVUPS      64(AX), Y10
	VMOVUPS      96(AX), Y11
	VMOVUPS      128(AX), Y12
	VMOVUPS      160(AX), Y13
	VMOVUPS      192(AX), Y14
	VMOVUPS      224(AX), Y15

sc4:
	CMPQ    CX, $4
	JL      sc1
	PREFETCHT0 (SI)(DX*8)
	KEYACC(X4)
	KEYACC(X5)
	VHADDPS X5, X4, X4 // [t0 pair sums, t1 pair sums]
	KEYACC(X5)
	KEYACC(X6)
	VHADDPS X6, X5, X5 // [t2 ..., t3 ...]
	VHADDPS X5, X4, X4 // [s0, s1, s2, s3]
	VMULPS  X7, X4, X4
	VMOVUPS X4, (DI)
	ADDQ    $16, DI
	SUBQ    $4, CX
	JMP     sc4

sc1:
	TESTQ   CX, CX
	JEQ     scdone
	KEYACC(X4)
	VHADDPS X4, X4, X4
	VHADDPS X4, X4, X4
	VMULSS  X7, X4, X4
	VMOVSS  X4, (DI)
	ADDQ    $4, DI
	DECQ    CX
	JMP     sc1

scdone:
	// mx over out[0:n]: 8 lanes at a time, then the 0-7 left over
	MOVQ         out+40(FP), DI
	MOVQ         n+24(FP), CX
	VBROADCASTSS (DI), Y0
mx8:
	CMPQ   CX, $8
	JL     mx1
	VMAXPS (DI), Y0, Y0
	ADDQ   $32, DI
	SUBQ   $8, CX
	JMP    mx8
mx1:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
mxtail:
	TESTQ  CX, CX
	JEQ    mxdone
	VMAXSS (DI), X0, X0
	ADDQ   $4, DI
	DECQ   CX
	JMP    mxtail
mxdone:
	VMOVSS X0, mx+48(FP)
	VZEROUPPER
	RET

// func attnValues64AVX2(e, v *float32, strideBytes, n int, sum float32, out *float32)
// out[0:64] = 0, then out = fma(e[t]/sum, v_t, out) for t = 0..n-1 (n >= 1).
TEXT ·attnValues64AVX2(SB), NOSPLIT, $0-48
	MOVQ   e+0(FP), AX
	MOVQ   v+8(FP), SI
	MOVQ   strideBytes+16(FP), DX
	MOVQ   n+24(FP), CX
	VMOVSS sum+32(FP), X9
	MOVQ   out+40(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

val1:
	PREFETCHT0   (SI)(DX*4)
	VMOVSS       (AX), X8
	VDIVSS       X9, X8, X8
	VBROADCASTSS X8, Y8
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  32(SI), Y8, Y1
	VFMADD231PS  64(SI), Y8, Y2
	VFMADD231PS  96(SI), Y8, Y3
	VFMADD231PS  128(SI), Y8, Y4
	VFMADD231PS  160(SI), Y8, Y5
	VFMADD231PS  192(SI), Y8, Y6
	VFMADD231PS  224(SI), Y8, Y7
	ADDQ         $4, AX
	ADDQ         DX, SI
	DECQ         CX
	JNZ          val1

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	VZEROUPPER
	RET

// func attnScoresAVX2(q, k *float32, strideBytes, n, nblk int, scale float32, out *float32) (mx float32)
// out[t] = (q . k_t) * scale for head dimension 32*nblk (nblk >= 1), q
// read from memory: dotAVX2's four accumulators over the 32-value blocks
// in order, then HSUM4. mx = the largest out[t] (n >= 1).
TEXT ·attnScoresAVX2(SB), NOSPLIT, $0-60
	MOVQ         q+0(FP), AX
	MOVQ         k+8(FP), SI
	MOVQ         strideBytes+16(FP), DX
	MOVQ         n+24(FP), CX
	MOVQ         nblk+32(FP), R8
	VBROADCASTSS scale+40(FP), X7
	MOVQ         out+48(FP), R10
	MOVQ         R10, DI

gkey:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   AX, R9  // q block
	MOVQ   SI, R11 // k block
	MOVQ   R8, BX

gblk:
	VMOVUPS     (R9), Y8
	VMOVUPS     32(R9), Y9
	VMOVUPS     64(R9), Y10
	VMOVUPS     96(R9), Y11
	VFMADD231PS (R11), Y8, Y0
	VFMADD231PS 32(R11), Y9, Y1
	VFMADD231PS 64(R11), Y10, Y2
	VFMADD231PS 96(R11), Y11, Y3
	ADDQ        $128, R9
	ADDQ        $128, R11
	DECQ        BX
	JNZ         gblk

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMULSS       X7, X0, X0
	VMOVSS       X0, (DI)
	ADDQ         $4, DI
	ADDQ         DX, SI
	DECQ         CX
	JNZ          gkey

	// mx over out[0:n]
	MOVQ         R10, DI
	MOVQ         n+24(FP), CX
	VBROADCASTSS (DI), Y0
gmx8:
	CMPQ   CX, $8
	JL     gmx1
	VMAXPS (DI), Y0, Y0
	ADDQ   $32, DI
	SUBQ   $8, CX
	JMP    gmx8
gmx1:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
gmxtail:
	TESTQ  CX, CX
	JEQ    gmxdone
	VMAXSS (DI), X0, X0
	ADDQ   $4, DI
	DECQ   CX
	JMP    gmxtail
gmxdone:
	VMOVSS X0, mx+56(FP)
	VZEROUPPER
	RET
