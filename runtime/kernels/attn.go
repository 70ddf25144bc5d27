package kernels

// Attention kernels for head dimension 64 (TinyLlama-1.1B, stories15M..110M):
// the scores of one query head against n cached keys, and the weighted sum
// of n cached values, each in one call instead of one Dot or Axpy call per
// cached position. Both give the bits of the per-position loops they
// replace, so the runtime can switch between them freely:
//
//	AttnScores64: out[t] = Dot(q, k[t*stride:t*stride+64]) * scale; max
//	AttnValues64: out = 0; for t: Axpy(e[t]/sum, v[t*stride:t*stride+64], out)
//
// Dot of 64 values sums in a fixed order (four 8-lane FMA accumulators
// over two 32-value blocks, then HSUM4's tree); the score kernel keeps q in
// registers and reproduces that tree per key, combining the last
// horizontal steps of four keys with VHADDPS (which adds the same pairs in
// the same order). The value kernel divides each softmax numerator by the
// sum as the softmax does (one IEEE division, so the same bits) and keeps
// Axpy's y = fma(a, x, y) per lane. The functions report false where
// there is no assembly (other architectures, purego, CPUs without
// AVX2/FMA); callers then run the loops themselves.

// AttnScores64 sets out[t] = Dot(q, k[t*stride:t*stride+64]) * scale for
// t < len(out) (len(out) >= 1), bit for bit, and returns the largest
// out[t]. ok is false, and out untouched, without the assembly. The
// maximum is taken with VMAXPS: without NaNs it equals a scalar "v > mx"
// scan (up to the sign of a zero maximum, which x - mx does not see).
func AttnScores64(q, k []float32, stride int, scale float32, out []float32) (mx float32, ok bool) {
	n := len(out)
	if !attnAsm() || len(q) < 64 || n == 0 {
		return 0, false
	}
	_ = k[(n-1)*stride+63] // bounds: every key row is inside k
	return attnScores64AVX2(&q[0], &k[0], stride*4, n, scale, &out[0]), true
}

// AttnValues64 sets out[0:64] to the sum over t < len(e) of (e[t]/sum) *
// v[t*stride:t*stride+64], accumulated as out = 0 then Axpy(e[t]/sum, v_t,
// out) for t = 0, 1, ... (the same division, fused multiply-adds and
// order), and reports whether it did (false: no assembly, out untouched).
// e is not modified.
func AttnValues64(e, v []float32, stride int, sum float32, out []float32) bool {
	n := len(e)
	if !attnAsm() || len(out) < 64 || n == 0 {
		return false
	}
	_ = v[(n-1)*stride+63]
	attnValues64AVX2(&e[0], &v[0], stride*4, n, sum, &out[0])
	return true
}

// AttnScores is AttnScores64 for a head dimension hd = len(q) that is a
// positive multiple of 32 (q is read from memory rather than held in
// registers): out[t] = Dot(q, k[t*stride:t*stride+hd]) * scale, bit for
// bit, and the largest out[t]. ok is false, and out untouched, without
// the assembly or for other head dimensions.
func AttnScores(q, k []float32, stride int, scale float32, out []float32) (mx float32, ok bool) {
	n, hd := len(out), len(q)
	if !attnAsm() || hd == 0 || hd%32 != 0 || n == 0 {
		return 0, false
	}
	if hd == 64 {
		return AttnScores64(q, k, stride, scale, out)
	}
	_ = k[(n-1)*stride+hd-1]
	return attnScoresAVX2(&q[0], &k[0], stride*4, n, hd/32, scale, &out[0]), true
}

// AttnValues is AttnValues64 for a head dimension len(out) that is a
// positive multiple of 64: each 64-wide block of out is its own sequence
// of fused multiply-adds, so the blocks run one after another.
func AttnValues(e, v []float32, stride int, sum float32, out []float32) bool {
	hd := len(out)
	if !attnAsm() || hd == 0 || hd%64 != 0 || len(e) == 0 {
		return false
	}
	for b := 0; b < hd; b += 64 {
		AttnValues64(e, v[b:], stride, sum, out[b:b+64])
	}
	return true
}
