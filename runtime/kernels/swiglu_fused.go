//go:build amd64.v3

package kernels

// goFuses: built for GOAMD64=v3 or later, where the Go compiler fuses
// x*y+z into FMA, so the runtime's scalar expf no longer rounds each step
// and SwiGLU's assembly would differ from it in the last bit; SwiGLU then
// leaves the work to the scalar loop.
const goFuses = true
