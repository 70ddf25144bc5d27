//go:build amd64 && !purego

#include "textflag.h"

// func cpuPause(n int)
TEXT ·cpuPause(SB), NOSPLIT, $0-8
	MOVQ n+0(FP), CX
loop:
	PAUSE
	DECQ CX
	JNZ  loop
	RET
