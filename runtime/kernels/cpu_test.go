package kernels

import "golang.org/x/sys/cpu"

func hasAVX2FMA() bool { return cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C }
