//go:build unix

package main

import "syscall"

// processCPUSeconds is the process's user + system CPU time so far (all
// threads), for compile's stage_cpu_seconds; -1 when unavailable.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
