package runtime

import "github.com/squeeze-ml/squeeze/runtime/kernels"

// attnLegacy makes attention run as before the attention kernels
// (attendKernels): the per-position Dot/Axpy loop and, for caches made while it
// is set, the position-major KV layout. Results are the same bits
// (TestAttend64SameBits); benchmarks set it to compare the two in one
// process (BenchmarkAttnAB).
var attnLegacy bool

// attendKernels is one head's attention for a head dimension that is a
// multiple of 64 (64: TinyLlama-1.1B, stories15M..110M; 128: Llama-2-7B,
// AFM) in two kernel calls instead of 2*len(sc) Dot/Axpy calls: the scores against the cached keys (and their maximum), the
// softmax's exponentials and sum (softmaxExp), and the weighted value sum,
// which divides each exponential by the sum as softmax does. keys and vals
// start at the head's KV slice of position 0, rows stride floats apart.
// The bits are the general loop's (kernels.AttnScores64 and AttnValues64
// (AttnScores, AttnValues) give the bits of Dot*scale, softmax's division
// and Axpy; the maximum is
// the same number). sc is left holding the exponentials, not the
// probabilities (it is scratch). It reports false, having done nothing,
// where the kernels are missing (no assembly); the caller runs the loop.
func attendKernels(qh, keys, vals, o, sc []float32, stride int, scale float32) bool {
	mx, ok := kernels.AttnScores(qh, keys, stride, scale, sc)
	if !ok {
		return false
	}
	sum := softmaxExp(sc, mx)
	return kernels.AttnValues(sc, vals, stride, sum, o)
}
