package runtime

import (
	"math"
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// TestSwiGLUParity holds kernels.SwiGLU (8 lanes, assembly on amd64) to
// the scalar loop Forward ran before, bit for bit: random gates over the
// whole useful range, expf's edges (-87, 88 and neighbours, where the
// result switches to 0 and +Inf), zeros, infinities, NaN, subnormals, and
// ragged lengths (the scalar tail).
func TestSwiGLUParity(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	var g []float32
	for i := 0; i < 20000; i++ {
		g = append(g, float32(rng.NormFloat64()*float64([]float32{0.1, 1, 10, 60}[i%4])))
	}
	for _, e := range []float32{87, -88, 86.99999, 87.00001, -87.99999, -88.00001, 100, -100} {
		g = append(g, e, math.Nextafter32(e, 0), math.Nextafter32(e, 1000), math.Nextafter32(e, -1000))
	}
	g = append(g, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.Float32frombits(1), math.Float32frombits(0x80000001), math.MaxFloat32, -math.MaxFloat32)
	h := make([]float32, len(g))
	for i := range h {
		h[i] = float32(rng.NormFloat64())
	}
	for _, n := range []int{len(g), 1, 7, 8, 9, 23} {
		got := append([]float32(nil), g[:n]...)
		want := append([]float32(nil), g[:n]...)
		for i, v := range want {
			want[i] = v * (1 / (1 + expf(-v))) * h[i]
		}
		if !kernels.SwiGLU(got, h[:n]) {
			t.Skip("no SwiGLU kernel on this build")
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("n %d: g %v h %v: SwiGLU %v (%#x), scalar %v (%#x)", n, g[i], h[i], got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
}

// TestExpShiftParity holds kernels.ExpShift (the softmax's exponentials)
// to expf(x - m) bit for bit, and softmax to its scalar form, on random
// scores, expf's edges, NaN, infinities and ragged lengths.
func TestExpShiftParity(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	var x []float32
	for i := 0; i < 5000; i++ {
		x = append(x, float32(rng.NormFloat64()*float64([]float32{0.5, 5, 40}[i%3])))
	}
	x = append(x, -87, -88, 88, 89, -87.00001, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 0)
	for _, m := range []float32{0, 3.5, -2, 120} {
		for _, n := range []int{len(x), 1, 5, 8, 13} {
			got := append([]float32(nil), x[:n]...)
			if !kernels.ExpShift(got, m) {
				t.Skip("no exp kernel on this build")
			}
			for i, v := range x[:n] {
				want := expf(v - m)
				if math.Float32bits(got[i]) != math.Float32bits(want) && !(got[i] != got[i] && want != want) {
					t.Fatalf("m %v n %d: exp(%v - m) = %v, expf %v", m, n, v, got[i], want)
				}
			}
		}
	}
	sc := x[:300]
	a := append([]float32(nil), sc...)
	softmax(a)
	b := append([]float32(nil), sc...)
	mx := b[0]
	for _, v := range b {
		mx = max(mx, v)
	}
	var sum float32
	for i, v := range b {
		b[i] = expf(v - mx)
		sum += b[i]
	}
	for i := range b {
		b[i] /= sum
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("softmax[%d] = %v, scalar %v", i, a[i], b[i])
		}
	}
}
