package lorarecovery

import "github.com/squeeze-ml/squeeze/runtime"

// expf is the runtime's float32 exp (runtime.Expf), so training computes
// softmax and SiLU exactly as the runtime that runs the adapters does.
func expf(x float32) float32 { return runtime.Expf(x) }
