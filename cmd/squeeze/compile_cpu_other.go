//go:build !unix

package main

// processCPUSeconds is unavailable here: compile omits stage_cpu_seconds.
func processCPUSeconds() float64 { return -1 }
