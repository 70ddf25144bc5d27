package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// kernelFlag is --kernels on the commands that run a model (run, bench,
// eval, sweep): the arithmetic of palettized weights. profile takes it too
// (the host profile is calibrated, and --measure runs, in that arithmetic),
// and compile's --kernels chooses the arithmetic of a --device host
// profile only: compilation itself stays on the library's float.
//
// The commands default to int8, the fast path (llama.cpp's IQ4_NL-style
// integer dot products: int8 LUT entries fitted per group, activations
// quantized to int8 with a scale per 8 elements), because that is what ships: on the
// 1.1B shape at 3.67 bpw it decodes 2.5x faster than the float path on one
// thread (docs/PERF.md, session 7). eval follows run, so the quality it
// reports is the quality a user gets; `--kernels float` gives the exact
// (float32) arithmetic, which is what docs/QUALITY.md reports up to session
// 6. The environment variable SQUEEZE_KERNELS (int8 or float) changes the
// default; the flag overrides both. The library (runtime/kernels) keeps
// float as its own default: compile, recover and the tests compare the
// runtime with reference arithmetic.
//
// Where the int8 kernels do not apply (no AVX2 assembly, e.g. arm64 or
// purego builds, and tensors whose rows are not block aligned) the float
// path runs whatever the mode; eval, sweep and bench report the effective
// arithmetic of the build (kernels.EffectiveMode).
type kernelFlag struct{ name string }

func (k *kernelFlag) bind(c *cobra.Command) {
	c.Flags().StringVar(&k.name, "kernels", "", "palettized arithmetic: int8 (fast, the default) or float (exact); SQUEEZE_KERNELS sets the default")
}

// apply selects the mode and returns a function that restores the previous
// one.
func (k *kernelFlag) apply() (restore func(), err error) {
	m, err := k.mode()
	if err != nil {
		return nil, err
	}
	prev := kernels.SetMode(m)
	return func() { kernels.SetMode(prev) }, nil
}

// mode is the mode the flag (or SQUEEZE_KERNELS) selects.
func (k *kernelFlag) mode() (kernels.Mode, error) {
	name := k.name
	if name == "" {
		name = os.Getenv("SQUEEZE_KERNELS")
	}
	switch name {
	case "", "int8":
		return kernels.ModeInt8, nil
	case "float":
		return kernels.ModeFloat, nil
	}
	if k.name == "" {
		return 0, fmt.Errorf("SQUEEZE_KERNELS=%q: expected int8 or float", name)
	}
	return 0, fmt.Errorf("--kernels %q: expected int8 or float", name)
}
