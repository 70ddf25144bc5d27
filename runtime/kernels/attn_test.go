package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttnKernelsSameBits: AttnScores64 and AttnValues64 give the bits of
// the per-position Dot*scale and Axpy loops they replace, for key counts
// 1..37 and 161 (every tail length), several row strides (contiguous
// heads, the interleaved cache of 4 KV heads), values of mixed magnitude
// with zeros of both signs, and outputs that start non-zero (the kernel
// must overwrite, not accumulate).
func TestAttnKernelsSameBits(t *testing.T) {
	if !attnAsm() {
		t.Skip("no attention assembly on this build")
	}
	rng := rand.New(rand.NewPCG(5, 7))
	val := func() float32 {
		switch rng.IntN(16) {
		case 0:
			return 0
		case 1:
			return float32(math.Copysign(0, -1))
		case 2:
			return float32(rng.NormFloat64() * 1e4)
		case 3:
			return float32(rng.NormFloat64() * 1e-4)
		}
		return float32(rng.NormFloat64())
	}
	for _, stride := range []int{64, 256, 200} {
		for _, n := range append(attnSeq(1, 37), 161) {
			q := make([]float32, 64)
			for i := range q {
				q[i] = val()
			}
			k := make([]float32, (n-1)*stride+64)
			v := make([]float32, len(k))
			for i := range k {
				k[i], v[i] = val(), val()
			}
			scale := float32(0.125)
			if n%2 == 1 {
				scale = float32(1 / math.Sqrt(64.0001))
			}
			got := make([]float32, n+1)
			got[n] = 42
			for i := range got[:n] {
				got[i] = -1
			}
			mx, ok := AttnScores64(q, k, stride, scale, got[:n])
			if !ok {
				t.Fatal("AttnScores64 declined with the assembly present")
			}
			wantMx := float32(math.Inf(-1))
			for i := 0; i < n; i++ {
				want := Dot(q, k[i*stride:i*stride+64]) * scale
				if math.Float32bits(got[i]) != math.Float32bits(want) {
					t.Fatalf("stride %d n %d: score %d = %v, Dot gives %v", stride, n, i, got[i], want)
				}
				wantMx = max(wantMx, want)
			}
			if mx != wantMx { // == : the sign of a zero maximum may differ
				t.Fatalf("stride %d n %d: max score %v, want %v", stride, n, mx, wantMx)
			}
			if got[n] != 42 {
				t.Fatalf("stride %d n %d: wrote past the end", stride, n)
			}
			a := got[:n]
			for i := range a {
				a[i] = float32(rng.Float64())
				if i%7 == 3 {
					a[i] = 0
				}
			}
			sum := float32(rng.Float64()*3 + 0.5)
			if n%3 == 0 {
				sum = 1
			}
			want := make([]float32, 64)
			for i := 0; i < n; i++ {
				Axpy(a[i]/sum, v[i*stride:i*stride+64], want)
			}
			out := make([]float32, 65)
			for i := range out {
				out[i] = 3
			}
			if !AttnValues64(a, v, stride, sum, out[:64]) {
				t.Fatal("AttnValues64 declined with the assembly present")
			}
			for j := range want {
				if math.Float32bits(out[j]) != math.Float32bits(want[j]) {
					t.Fatalf("stride %d n %d: value sum lane %d = %v, Axpy loop gives %v", stride, n, j, out[j], want[j])
				}
			}
			if out[64] != 3 {
				t.Fatalf("stride %d n %d: value sum wrote past 64", stride, n)
			}
		}
	}
}

func attnSeq(a, b int) []int {
	var s []int
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

// TestAttnKernelsAnyHeadDim: AttnScores (head dimensions 32..256, q from
// memory) and AttnValues (multiples of 64, 64-wide blocks) give the bits of
// the per-position Dot*scale and Axpy(e/sum) loops; other head dimensions
// are declined.
func TestAttnKernelsAnyHeadDim(t *testing.T) {
	if !attnAsm() {
		t.Skip("no attention assembly on this build")
	}
	rng := rand.New(rand.NewPCG(9, 11))
	for _, hd := range []int{32, 64, 96, 128, 256} {
		for _, stride := range []int{hd, 4*hd + 8} {
			for _, n := range append(attnSeq(1, 19), 161) {
				q := make([]float32, hd)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				k := make([]float32, (n-1)*stride+hd)
				v := make([]float32, len(k))
				for i := range k {
					k[i], v[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
				}
				got := make([]float32, n)
				mx, ok := AttnScores(q, k, stride, 0.0883883, got)
				if !ok {
					t.Fatalf("hd %d: AttnScores declined", hd)
				}
				wantMx := float32(math.Inf(-1))
				for i := range got {
					want := Dot(q, k[i*stride:i*stride+hd]) * 0.0883883
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("hd %d stride %d n %d: score %d = %v, Dot gives %v", hd, stride, n, i, got[i], want)
					}
					wantMx = max(wantMx, want)
				}
				if mx != wantMx {
					t.Fatalf("hd %d n %d: max %v, want %v", hd, n, mx, wantMx)
				}
				if hd%64 != 0 {
					if AttnValues(got, v, stride, 1, make([]float32, hd)) {
						t.Fatalf("hd %d: AttnValues accepted a head dimension that is not a multiple of 64", hd)
					}
					continue
				}
				sum := float32(rng.Float64()*float64(n) + 1)
				want := make([]float32, hd)
				for i := range got {
					Axpy(got[i]/sum, v[i*stride:i*stride+hd], want)
				}
				out := make([]float32, hd)
				if !AttnValues(got, v, stride, sum, out) {
					t.Fatalf("hd %d: AttnValues declined", hd)
				}
				for j := range want {
					if math.Float32bits(out[j]) != math.Float32bits(want[j]) {
						t.Fatalf("hd %d stride %d n %d: value lane %d = %v, Axpy loop gives %v", hd, stride, n, j, out[j], want[j])
					}
				}
			}
		}
	}
	if _, ok := AttnScores(make([]float32, 48), make([]float32, 48), 48, 1, make([]float32, 1)); ok {
		t.Fatal("AttnScores accepted head dimension 48")
	}
}
