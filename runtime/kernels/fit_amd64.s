//go:build amd64 && !purego

#include "textflag.h"

// func fitSumsAVX2(gs *int32, k int, lp, php *int32, nc int, lv int, su, suu, sug *int32)
// For each of nc candidates (a multiple of 8; lane = candidate), over the
// k fixed-point entries gq[i]: q = min(lv, (gq*L + ph) >> 20), su += q,
// suu += q*q, sug += q*gq, in int32 (fitSumsGo).
TEXT ·fitSumsAVX2(SB), NOSPLIT, $0-72
	MOVQ gs+0(FP), SI
	MOVQ k+8(FP), CX
	MOVQ lp+16(FP), R8
	MOVQ php+24(FP), R9
	MOVQ nc+32(FP), R10
	MOVQ lv+40(FP), AX
	MOVQ su+48(FP), R11
	MOVQ suu+56(FP), R12
	MOVQ sug+64(FP), R13
	SHLQ $2, R10
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	XORQ DX, DX
fcand:
	VMOVDQU (R8)(DX*1), Y0
	VMOVDQU (R9)(DX*1), Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	XORQ BX, BX
fent:
	VPBROADCASTD (SI)(BX*4), Y5
	VPMULLD Y0, Y5, Y6
	VPADDD Y1, Y6, Y6
	VPSRAD $20, Y6, Y6
	VPMINSD Y15, Y6, Y6
	VPADDD Y6, Y2, Y2
	VPMULLD Y6, Y6, Y7
	VPADDD Y7, Y3, Y3
	VPMULLD Y5, Y6, Y7
	VPADDD Y7, Y4, Y4
	INCQ BX
	CMPQ BX, CX
	JL   fent
	VMOVDQU Y2, (R11)(DX*1)
	VMOVDQU Y3, (R12)(DX*1)
	VMOVDQU Y4, (R13)(DX*1)
	ADDQ $32, DX
	CMPQ DX, R10
	JL   fcand
	VZEROUPPER
	RET
