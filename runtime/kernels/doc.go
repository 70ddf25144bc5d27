// Package kernels holds the compute kernels of the runtime: matrix-vector
// (decode) and matrix-matrix (prefill) products over every weight encoding
// (f32, f16, bf16, q8_0, palettized lut1..lut8), the dot product and a
// streaming-bandwidth probe.
//
// # API
//
//	MatVec(w, x, out, r0, r1)     out[r] = W[r,:]·x for r in [r0, r1)
//	MatMul(w, x, out, n, r0, r1)  the same for n inputs, out[i*rows+r]
//	Input, MatVecInput(w, in, out, r0, r1)
//	                              MatVec with x prepared once (Input) for
//	                              every linear and thread that reads it
//	Input.ResetBatch, PrepareBatch, MatMulInput(w, in, out, r0, r1)
//	                              MatMul with the batch quantized once
//	SwiGLU(g, h)                  g = SiLU(g) * h with the runtime's expf
//	ExpShift(x, m)                x = expf(x - m) (the softmax's exponentials)
//	AttnScores, AttnValues        one head's attention scores over the cached
//	                              keys, and its weighted value sum, in one call
//	                              each (head dims that are multiples of 64;
//	                              AVX2; the bits of Dot*scale and Axpy; attn.go)
//	MatVec on lutmix tensors      each part's own kernel over its rows (mixed.go)
//	Dot(a, b)                     float32 dot product (SIMD, 4x8 accumulators)
//	Axpy(a, x, y)                 y += a*x (SIMD FMA; attention's value sum)
//	Sum(a), StreamSum, StreamSumBuf  SIMD sum and the GB/s probe
//	Impl()                        "avx2", "neon" or "go": the family selected
//	SetMode(ModeFloat|ModeInt8)   palettized arithmetic (float is the library's default; the squeeze commands select int8)
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
// golang.org/x/sys/cpu; kernels_arm64.{go,s} hold NEON assembly;
// kernels_other.go (every other GOARCH, and the "purego" build tag) maps
// the same hooks to Go, with the Go versions shared with arm64 in
// hooks_go.go.
//
// # arm64 kernels (NEON, ARMv8.0 Advanced SIMD only)
//
// Impl() is "neon"; there is no feature test (Advanced SIMD is in every
// arm64 CPU and FCVTL widens float16 without the FP16 extension), and
// setAsm(false) selects the Go paths for the parity tests.
//
//   - Dot, Sum: 8 accumulators x 4 lanes (FMLA / FADD), 32 floats a step,
//     then 4 at a time, the last len%4 in Go. Axpy: FMLA (fused, as on
//     amd64).
//   - f16: FCVTL/FCVTL2 from the weight stream, then FMLA; the f16 row
//     decoder of MatMul (f16ToF32) is the same widening.
//   - lut4, lut2 (MatVec and MatMul's row decoder) and lut3 (MatVec, cols
//     % 128 == 0): byte-plane decoding. The row's LUT is widened to
//     float32 and cut by UZP1/UZP2 into 4 planes (byte k of every entry);
//     16 indices (USHR/AND of an index block; lut3 ORs in the plane-1 bit)
//     fetch the 4 bytes of 16 weights with 4 TBL, and ZIP1/ZIP2 on bytes
//     then halfwords rebuild 16 floats in element order, so x needs no
//     permutation (lutPrepX declines). 12 permute ops per 16 weights.
//   - Go on arm64: dot4 and dot3x4 (MatMul's micro-kernels), lut1, lut6,
//     lut8, lut3 decoding, SwiGLU, ExpShift, the attention kernels and
//     ModeInt8 (its kernels are amd64 only; Input/MatVec fall back).
//
// The float vector add, pairwise add and FCVTL have no Go assembler
// mnemonics and are WORD-encoded (the instruction in a comment beside
// each). Only tested under qemu-user (make test-arm64); qemu timings say
// nothing about real hardware, so no arm64 speed figures are claimed.
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
// # MatMul (prefill), float mode
//
// gemm.go: weight rows are decoded (f32 used in place) a panel of 24 rows
// at a time and multiplied with the inputs by dot3x4, a register-tiled
// micro-kernel (3 rows x 4 tokens, 12 ymm accumulators, 7 loads per 12
// FMAs, so it is FMA-bound where dot4's 5 loads per 4 FMAs were load- and
// L2-bound), in 512-column blocks: a token quad's block stays in L1 while
// the panel's 8 row triples pass over it, the panel's block in L2 while
// every quad passes. Rows or tokens without a full triple or quad go
// through the same kernel with a stride of 0, and the cols%8 tail is added
// last, so every output has the same arithmetic whatever the row range or
// the token batch (TestMatMulSplitInvariant). MatMulF32 is the same on a
// plain []float32 matrix (calibration's Gram matrices X^T X).
//
// # int8 path (ModeInt8; the squeeze commands' default, the library's opt-in)
//
// int8.go and the i8Lut{4,2,3}Rows assembly (i8Lut4Rows in
// kernels_amd64.s, i8Lut2Rows and i8Lut3Rows in i8rows_amd64.s) implement
// llama.cpp's IQ4_NL-style arithmetic for lut2/lut3/lut4 rows that are
// block aligned (cols % 64 == 0 for lut4, % 128 for lut2/lut3). Each
// group's float16 LUT is quantized lazily (once per palette, in a
// weak-keyed cache; bundles keep the float16 LUT as the truth) to
// unsigned entries, 7-bit (u <= 127) for lut3/lut4 and 6-bit (u <= 63)
// for lut2, with an affine map w ~ s*u + m fitted per group (fitI8: the
// grid among 32 top levels x 4 offsets, s and m refitted by least
// squares, with the smallest squared error; never worse than the plain
// map s = (max-min)/levels, m = min, and on N(0,1)-like LUTs 1.8x (16
// entries) to 3.4x (4 entries, 6-bit against plain 7-bit) smaller; ~2.6 us
// per 16-entry group, once: the candidates' sums in int32 AVX2, 8 at a time). The activation
// vector is quantized once per call to int8 in sub-blocks of 8 (as Q8_0
// but with a scale per int32 lane of the kernels, not per 32 elements; it
// cost the kernels nothing and took 2-22% off int8's KLD cost,
// docs/QUALITY.md session 8). Since session 10 a sub-block's scale is
// d = D*s, D a float per 2048 elements and s a small integer, at least
// amax/127 (qx.quantize; VCVTPS2DQ rounding; qx explains the layout),
// and laid out in the order the index
// decoder produces elements. Per 64 weights: one 32-byte load (two index
// blocks), shift and mask into nibble/2-bit indices, VPSHUFB through the
// 16-byte table (both lanes), VPMADDUBSW with the int8 activations (u <=
// 127 so pairs never saturate), VPMADDWD with ones, add, convert, one FMA
// with 8 lane scales (one per sub-block). A row
// is s * sum + m * sum(x^) (x^ the dequantized activations), times the
// row scale. The unsigned table avoids llama.cpp's VPSIGNB pair
// (4 fewer uops per 64 weights) at the price of a 7-bit LUT step.
//
// lut2 tables are 6-bit so that the two VPMADDUBSW results of a block
// (pair sums <= 2*63*127 = 16002) add in int16 (VPADDW) before one
// VPMADDWD: 20 instead of 22 vector uops per 128 weights (counted as in
// the lut2 paragraph below) and 6 instead of 8 multiplies. Since session
// 10 that VPMADDWD multiplies by the lanes' integer scales s instead of
// ones and the lanes add in int32 over 2048 elements (I2MACI; the sum of
// s per 2048 elements is capped so nothing overflows), converted and
// scaled by D once per 2048: 18 uops per 128 weights, decode steps 1.05-1.10x
// faster at 2 bits (docs/PERF.md session 10); with the
// fitted map the 6-bit tables are also more exact than the former plain
// 7-bit ones. The prefill tile kernels read the same tables (i8Tab.u),
// so MatMul keeps MatVec's integers. lut3 keeps 7-bit tables (6-bit ones
// measured ~4% faster, but even fitted they tripled lut3's int8-vs-float
// KLD on the synthetic stories110M against fitted 7-bit ones: 1.5e-4 vs
// 4.9e-5, plain 7-bit 1.3e-4) and builds its lookup nibbles from
// both planes in 13 integer ops instead of 19: a 2-bit field of plane 0
// masked with 0x33 (fields 0, 2) or shifted and masked (1, 3), ORed with
// two plane-1 bits at bits 2-3, looked up in one of two 16-byte tables
// (i8Tab.u3) that ignore the unwanted plane-1 bit (see I3DEC).
//
// Measured (BenchmarkI8Decode, medians of 21 rounds, ratios to the
// streaming probe of the same round, shared machine at load ~4): lut2
// 0.70 -> 0.79 (2048 columns), 0.80 -> 0.90 (5632); lut3 0.78 -> 0.91,
// 0.85 -> 0.95; cache resident lut2 +16-19%, lut3 +14-17%. Tried and
// dropped: two rows per pass (sharing the activation loads and one
// horizontal sum: +9% cache resident but 7-21% slower streaming, the
// two interleaved row streams defeat the prefetching), a 2x unrolled
// lut2 loop with a shuffle-based horizontal sum (no change), prefetch
// distances of 1.5, 6 and 9 KiB (no better than 3 KiB), and replacing
// the per-block convert + FMA by int32 accumulation (timed without the
// scales: +15% cache resident, +2-6% streaming; it needs integer block
// scales, another quantization of the activations: not done).
//
// Decode streams each weight byte once, and per cache line of indices the
// kernel computes about as long as DRAM takes to deliver the line; the
// hardware prefetcher alone left the two serialized (lut4 at ~0.59 of the
// streaming probe, BenchmarkI8Stream). The row kernels therefore issue a
// PREFETCHT0 3 KiB ahead in the index stream (both planes for lut3), once
// per 64 (lut4) or 32 (lut2, lut3) index bytes; rows are contiguous, so
// it runs on across row boundaries (past a tensor's end it is a no-op).
// This raised lut4 to ~0.9 of the probe on the microbenchmark.
//
// Since session 9 the lut4 and lut2 row kernels (and the float32/float16
// rows, rowsF32/rowsF16) read two row streams at once: the first and the
// second half of the call's rows, side by side in one loop
// (i8Lut4Rows2/i8Lut2Rows2 in i8rows2_amd64.s, split into segments that
// stay in one LUT group per stream by i8RowPairs), each row with the
// one-stream kernel's bits. Unlike the adjacent rows tried before (above),
// two streams half a row range apart keep more DRAM requests in flight
// than one: BenchmarkI8Threads, DRAM, medians of 3 alternating runs, lut4
// one thread 11.6 -> 13.5 GB/s, lut2 one thread 8.2 -> 9.3, two threads
// 13.4 -> 16.4 (docs/PERF.md, session 9). lut3 still reads one: a
// two-stream lut3 kernel (four index streams, constants as memory
// operands for want of registers) measured 3-7% slower.
//
// Decode reads each activation vector with several tensors (q, k, v;
// gate, up) and, on several threads, with several row ranges of each.
// MatVec quantizes x on every call (2.2 us for 2048 elements, several
// per linear on 2 threads); an Input quantizes it once per layout (lut4,
// or lut2/lut3, the second copying the first's integers) under a mutex and
// MatVecInput reuses it, with the same bits (TestMatVecInputParity).
//
// lut2 rows look up nibbles, not 2-bit fields: each group gets two
// 16-byte tables (i8Tab.u2: [i] = u[i&3], [16+i] = u[i>>2]); the low and
// high nibble of an index byte (one shift, two masks) are each looked up
// in both, giving the four fields with the same element order as before
// (so the same activation layout and bit-identical results) in 22 instead
// of 25 vector uops per 128 weights. The tile kernel keeps the 16-byte
// table.
//
// # int8 MatMul (prefill): the tile kernels
//
// MatMul in ModeInt8 quantizes the n inputs once per call (qxBatch: each
// token exactly as MatVec quantizes it, padded with zero tokens to a
// multiple of 4); a runtime linear calls it once per row chunk, so an
// Input holding the batch (ResetBatch) does it once for every linear and
// thread that reads it instead: PrepareBatch quantizes it in token chunks
// across the threads, MatMulInput uses it (TestMatMulInputParity; +12% on
// a 2-thread 1.1B prefill, docs/PERF.md session 11). The tile kernel
// then runs a register-tiled micro-kernel, llamafile's sgemm shape
// for Q4_0 x Q8_0: i8Lut{4,2,3}Tile take 2 rows x 4 tokens; each 64- (lut4)
// or 128-element (lut2, lut3) unit of the two rows is decoded once into
// ymm registers of 7-bit table bytes and meets the 4 tokens' activations
// (VPMADDUBSW, VPMADDWD, add, convert, FMA with the token's block scales;
// 8 ymm accumulators, one per (row, token)). Rows are walked in blocks of
// 64 KiB of indices (kept in L2 while every token quad passes over them);
// a token quad's activations (1.5 bytes per element) stay in L1 for
// cols <= 2048. An odd last row is computed twice and stored once; group
// boundaries may split a row pair (each row has its own table pointer).
// Go applies each group's s, m and the row scale. The arithmetic is the
// row kernel's (same integers, same block scales), only the order of the
// float accumulation differs, so results match MatVec to rounding and are
// bit-identical whatever the row split. On the build machine (Zen 3, no
// VNNI) the kernel is bound by the four multiply uops (2 VPMADDUBSW, 2
// VPMADDWD on FP0/FP3) per 64 multiply-adds per (row, token): at most ~32
// MACs per cycle, ~95 G MAC/s at 2.9 GHz; it measured 50-64 G MAC/s cache
// resident on the shared machine (BenchmarkI8Tile) against 33 for the
// row kernel. See docs/PERF.md for prefill figures.
//
// On stories260K at 3.7 bpw it raised the mean KLD by 2.1% relative
// (0.3990 -> 0.4075) with plain 7-bit tables. ModeFloat stays the library's
// default (the reference arithmetic); the squeeze commands that run a model
// select ModeInt8 unless given --kernels float or SQUEEZE_KERNELS=float
// (cmd/squeeze/kernels.go). With the fitted tables a fresh 3.7 bpw stories260K bundle
// (int8 there runs lut4 only: its lut2/lut3 rows are not 128-aligned)
// measured mean KLD 0.2214 float, 0.2259 int8 with plain tables (+2.0%),
// 0.2235 with fitted ones (+0.9%). Parity tests hold it to a scalar
// reference of the same integer arithmetic (i8RowRef) within float
// rounding and to the float reference within the worst-case quantization
// bound sum |w| d/2 + |x^| e, e the fitted table's error on the entry.
//
// # SwiGLU and the softmax exponentials
//
// swiglu_amd64.s computes g * (1/(1+exp(-g))) * h 8 lanes at a time with
// runtime.Expf's exact float32 steps (separate multiplies and adds, floor
// by VROUNDPS, the exponent added as an integer, the 0 / +Inf cut-offs
// blended in), so decode's SwiGLU is bit-identical to the scalar loop
// (TestSwiGLUParity in runtime, incl. edges, NaN, infinities and ragged
// tails) and ~10x cheaper (1.9 -> 0.17 ms per 1.1B token). Built for
// GOAMD64=v3 the Go compiler fuses the scalar expf's multiply-adds, so
// SwiGLU declines there (goFuses) and the scalar loop runs. ExpShift is
// the same exponential for the attention softmax (the sum and the
// division stay in the runtime's order; TestExpShiftParity).
//
// # Accuracy
//
// Parity tests hold every float path (assembly and pure Go, on amd64 and,
// under qemu, on arm64) to the reference within 1e-5 x sum|w*x| per row,
// for all widths, group sizes 1/16/7/rows, scales on and off, row ranges,
// and cols that fall back.
package kernels
