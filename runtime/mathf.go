package runtime

import "math"

// expf is a float32 exp for the softmax and SiLU inner loops: exp(x) =
// 2^k exp(r), |r| <= ln2/2, with a degree-6 Taylor polynomial for exp(r)
// (relative error below 3e-7 over the float32 range; the same function
// lora_recovery trains with). It is plain arithmetic, so results are the
// same on every run and machine, and it is several times cheaper than
// math.Exp on float64.
func expf(x float32) float32 {
	if x < -87 {
		return 0
	}
	if x > 88 {
		return float32(math.Inf(1))
	}
	const ln2hi, ln2lo, log2e = 0.693145751953125, 1.428606765330187e-06, 1.4426950408889634
	k := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - k*ln2hi - k*ln2lo
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return math.Float32frombits(math.Float32bits(p) + uint32(int32(k))<<23)
}

// Expf is expf for other packages (calibration and training's softmax and
// SiLU), so the whole toolchain shares one float32 exp.
func Expf(x float32) float32 { return expf(x) }
