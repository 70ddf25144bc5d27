package lorarecovery

import (
	"github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// expf is the runtime's float32 exp (runtime.Expf), so training computes
// softmax and SiLU exactly as the runtime that runs the adapters does.
func expf(x float32) float32 { return runtime.Expf(x) }

// expRow sets dst[i] = exp(sign * src[i] - sub) for every i and returns
// the float32 sum of the results in index order, with the runtime's float32
// exp (kernels.Expf, which runtime.Expf is): kernels.ExpShift does it 8
// lanes at a time where it has assembly, bit for bit what Expf returns
// (TestExpRowMatchesRuntime). The trainer's softmax rows and SiLU run
// through here. dst may be src.
func expRow(dst, src []float32, sign, sub float32) float32 {
	src = src[:len(dst)]
	if sign != 1 {
		for i, v := range src {
			dst[i] = sign * v
		}
	} else if len(dst) > 0 && &dst[0] != &src[0] { // in place (softmax rows): nothing to copy
		copy(dst, src)
	}
	if !kernels.ExpShift(dst, sub) {
		for i, v := range dst {
			dst[i] = kernels.Expf(v - sub)
		}
	}
	var sum float32
	for _, e := range dst {
		sum += e
	}
	return sum
}
