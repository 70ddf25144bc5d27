// Package kernels holds the compute kernels of the runtime: matrix-vector
// (decode) and matrix-matrix (prefill) products over every weight encoding
// (f32, f16, bf16, palettized lut1..lut8), and the small vector ops. Each
// kernel has a pure-Go reference implementation; fast paths for amd64 and
// arm64 sit beside it, are selected at run time by CPU features, and are
// held to the reference by parity tests.
package kernels
