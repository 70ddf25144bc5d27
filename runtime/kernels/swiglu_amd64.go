//go:build amd64 && !purego

package kernels

//go:noescape
func swigluAVX2(gate, up *float32, n int, c *[12]float32)

func swigluAsm() bool { return useAVX2 }

//go:noescape
func expShiftAVX2(x *float32, n int, m float32, c *[12]float32)
