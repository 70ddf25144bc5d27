//go:build arm64 && !purego

#include "textflag.h"

// func cpuPause(n int)
TEXT ·cpuPause(SB), NOSPLIT, $0-8
	MOVD n+0(FP), R0
loop:
	YIELD
	SUBS $1, R0, R0
	BNE  loop
	RET
