package runtime

import "github.com/squeeze-ml/squeeze/runtime/kernels"

// expf is kernels.Expf, the toolchain's one float32 exp (see there).
func expf(x float32) float32 { return kernels.Expf(x) }

// Expf is expf for other packages (calibration and training's softmax and
// SiLU), so the whole toolchain shares one float32 exp.
func Expf(x float32) float32 { return expf(x) }
