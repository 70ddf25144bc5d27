//go:build amd64 && !purego

#include "textflag.h"

// func gather8AVX2(idx *byte, tab *float32, dst *float32, n int)
// dst[i] = tab[idx[i]] for i < n (a multiple of 8): 8 indices widened to
// int32 (VPMOVZXBD) and one VGATHERDPS per 8 entries of the 256-entry
// float table.
TEXT ·gather8AVX2(SB), NOSPLIT, $0-32
	MOVQ idx+0(FP), SI
	MOVQ tab+8(FP), R8
	MOVQ dst+16(FP), DI
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ   gdone
gloop:
	VPMOVZXBD (SI), Y1
	VPCMPEQD Y2, Y2, Y2
	VGATHERDPS Y2, (R8)(Y1*4), Y3
	VMOVUPS Y3, (DI)
	ADDQ $8, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  gloop
gdone:
	VZEROUPPER
	RET
