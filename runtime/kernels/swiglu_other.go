//go:build !amd64 || purego

package kernels

func swigluAVX2(gate, up *float32, n int, c *[12]float32) { panic("kernels: no SwiGLU assembly") }

func swigluAsm() bool { return false }

func expShiftAVX2(x *float32, n int, m float32, c *[12]float32) { panic("kernels: no exp assembly") }
