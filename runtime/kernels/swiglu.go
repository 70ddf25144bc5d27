package kernels

import "math"

// SwiGLU computes g[i] = g[i] * (1 / (1 + exp(-g[i]))) * h[i] (SiLU(gate)
// times up) in place, with the runtime's float32 exp (runtime.Expf:
// 2^k exp(r), degree-6 Taylor polynomial, 0 below -87, +Inf above 88),
// eight lanes at a time, every operation rounded as the Go code rounds it
// (no fused multiply-adds), so results are bit-identical to the runtime's
// scalar loop built for GOAMD64 v1/v2 (TestSwiGLUParity in runtime). It
// returns false, doing nothing, where there is no assembly; the caller
// then runs the scalar loop.
func SwiGLU(g, h []float32) bool {
	n := len(g) &^ 7
	if !swigluAsm() || goFuses || len(h) < len(g) {
		return false
	}
	if n > 0 {
		swigluAVX2(&g[0], &h[0], n, &expConsts)
	}
	for i := n; i < len(g); i++ {
		v := g[i]
		g[i] = v * (1 / (1 + Expf(-v))) * h[i]
	}
	return true
}

// expConsts are the float32 constants of runtime.Expf as Go rounds them,
// broadcast by the assembly.
var expConsts = [...]float32{
	0: float32(log2eC), 1: 0.5, 2: float32(ln2hiC), 3: float32(ln2loC),
	4: 1, 5: float32(1.0 / 6), 6: float32(1.0 / 24), 7: float32(1.0 / 120), 8: float32(1.0 / 720),
	9: -87, 10: 88, 11: float32(math.Inf(1)),
}

const ln2hiC, ln2loC, log2eC = 0.693145751953125, 1.428606765330187e-06, 1.4426950408889634

// Expf is the float32 exp of the whole toolchain (runtime.Expf calls it:
// the softmax and SiLU of the runtime, calibration and training): exp(x)
// = 2^k exp(r), |r| <= ln2/2, with a degree-6 Taylor polynomial for
// exp(r) (relative error below 3e-7 over the float32 range). It is plain
// arithmetic, so results are the same on every run and machine, and it is
// several times cheaper than math.Exp on float64. SwiGLU and ExpShift's
// assembly computes the same bits eight lanes at a time.
func Expf(x float32) float32 {
	if x < -87 {
		return 0
	}
	if x > 88 {
		return float32(math.Inf(1))
	}
	k := float32(math.Floor(float64(x*log2eC + 0.5)))
	r := x - k*ln2hiC - k*ln2loC
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return math.Float32frombits(math.Float32bits(p) + uint32(int32(k))<<23)
}

// ExpShift sets x[i] = exp(x[i] - m) with the runtime's float32 exp
// (runtime.Expf, bit-identical as SwiGLU: TestExpShiftParity in runtime),
// eight lanes at a time: the exponentials of the attention softmax. It
// returns false, doing nothing, where SwiGLU would.
func ExpShift(x []float32, m float32) bool {
	n := len(x) &^ 7
	if !swigluAsm() || goFuses {
		return false
	}
	if n > 0 {
		expShiftAVX2(&x[0], n, m, &expConsts)
	}
	for i := n; i < len(x); i++ {
		x[i] = Expf(x[i] - m)
	}
	return true
}
