//go:build !amd64.v3

package kernels

// goFuses: see swiglu_fused.go.
const goFuses = false
