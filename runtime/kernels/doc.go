// Package kernels holds the compute kernels of the runtime: matrix-vector
// (decode) and matrix-matrix (prefill) products over every weight encoding
// (f32, f16, bf16, q8_0, palettized lut1..lut8), the dot product and a
// streaming-bandwidth probe.
//
// # API
//
//	MatVec(w, x, out, r0, r1)     out[r] = W[r,:]·x for r in [r0, r1)
//	MatMul(w, x, out, n, r0, r1)  the same for n inputs, out[i*rows+r]
//	Dot(a, b)                     float32 dot product (SIMD, 4x8 accumulators)
//	Sum(a), StreamSum, StreamSumBuf  SIMD sum and the GB/s probe
//	Impl()                        "avx2" or "go": the family selected
//
// Kernels are single-threaded and allocation-free in steady state (row and
// table scratch comes from sync.Pools); the runtime splits row ranges
// across goroutines. Any r0 works; nothing assumes alignment of r0.
//
// # Layout of the code (gonum's shape)
//
// ref.go holds the API, the reference (matVecRef: the encoding's reference
// decoder + in-order dotRef) and the fallback for encodings or layouts
// without a fast path (bf16, q8_0, palettized tensors whose rows do not
// start on a 16-byte block boundary in every plane). lut.go holds the
// palettized drivers and the pure-Go block decoder (128 indices at a time
// into a stack buffer, shifts and masks per ir/encoding.go, then a float32
// table and a dot product), used on every architecture for widths without
// assembly (6, 8) and as the whole fast path where there is no assembly.
// kernels_amd64.{go,s} hold AVX2+FMA+F16C assembly selected at run time with
// golang.org/x/sys/cpu; kernels_other.go (every other GOARCH, and the
// "purego" build tag) maps the same hooks to Go. arm64 runs the Go paths
// (NEON kernels are not written yet).
//
// # amd64 kernels (AVX2; the build machine has no AVX-512, so none is used)
//
//   - f32: 4 accumulators x 8 lanes, FMA with the weight stream.
//   - f16: VCVTPH2PS straight from the weight stream, then FMA.
//   - lut4 (MatVec): byte-plane decoding. The row's 16-entry float32 table
//     is cut into 4 byte planes broadcast to both lanes; one 16-byte index
//     block is broadcast, shifted (VPSRLVQ 0|4) and masked into 32 nibble
//     indices, 4 VPSHUFB fetch the 4 bytes of each weight and 8 byte/word
//     unpacks rebuild 32 floats, which meet x pre-permuted once per call
//     (permuteX4) because the unpacks interleave lanes. This measured about
//     2x faster than the VPERMPS+VBLENDVPS decoder (lut4DotAVX2, still
//     used by MatMul's row decoder and kept for comparison).
//   - lut2, lut1: VPERMPS with the 4- (2-) entry table repeated to 8, so the
//     low 3 bits of a shifted dword index select the right entry with no
//     mask; lut3: plane-0 2-bit field | plane-1 bit << 2 -> 8-entry VPERMPS.
//   - lut6, lut8: the Go block decoder + the AVX2 dot product.
//
// Per-row scales multiply the row's dot product (the reference multiplies
// each weight; results differ by rounding only). The per-group LUT is read
// as float16 by the assembly (VCVTPH2PS), so GroupSize 1 costs nothing extra.
//
// # MatMul (prefill)
//
// Rows are decoded once per tile of tokens (tile = 512 KiB of inputs, so
// they stay in L2) into a pooled row buffer and multiplied with 4 inputs at
// a time (dot4: one weight load feeds 4 FMAs).
//
// # Accuracy
//
// Parity tests hold every path (assembly and pure Go, on amd64; Go under
// qemu on arm64) to the reference within 1e-5 x sum|w*x| per row, for all
// widths, group sizes 1/16/7/rows, scales on and off, row ranges, and cols
// that fall back. An int8 path (llama.cpp IQ4_NL style: int8 LUT through
// VPSHUFB, int8 activations, integer dot products) would cut the decode
// work several-fold but adds activation and LUT quantisation error, so it
// is not used; see the package report.
package kernels
