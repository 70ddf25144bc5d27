package runtime

import (
	"math/rand"
	"testing"
)

// TestRMSNormRowsSameBits: the four-rows-at-a-time prefill RMSNorm gives
// every row the bits of the one-row rmsnorm (llama2.c's order), for any
// row count.
func TestRMSNormRowsSameBits(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, dim := range []int{8, 64, 288} {
		w := make([]float32, dim)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		for n := 1; n <= 9; n++ {
			x := make([]float32, n*dim)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 3)
			}
			got, want := make([]float32, n*dim), make([]float32, n*dim)
			rmsnormRows(got, x, w, 1e-5, n, dim)
			for i := 0; i < n; i++ {
				rmsnorm(want[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], w, 1e-5)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("dim %d n %d element %d: %v, one-row rmsnorm %v", dim, n, i, got[i], want[i])
				}
			}
		}
	}
}

// TestRopeApplySameBits holds ropeApply (a loop per pairing) to the
// direct per-pair reference it replaced, in both pairings, bit for bit
// (products rounded on their own, as on amd64, also under arm64's FMA).
func TestRopeApplySameBits(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, hd := range []int{8, 64, 128} {
		for _, neox := range []bool{false, true} {
			half := hd / 2
			cr, ci := make([]float32, half), make([]float32, half)
			ropeTable(cr, ci, hd, 37, 10000)
			vec := make([]float32, 3*hd)
			for i := range vec {
				vec[i] = float32(rng.NormFloat64())
			}
			want := append([]float32(nil), vec...)
			for h := 0; h+hd <= len(want); h += hd {
				for i := 0; i < half; i++ {
					a, b := h+2*i, h+2*i+1
					if neox {
						a, b = h+i, h+i+half
					}
					v0, v1 := want[a], want[b]
					want[a] = float32(v0*cr[i]) - float32(v1*ci[i])
					want[b] = float32(v0*ci[i]) + float32(v1*cr[i])
				}
			}
			ropeApply(vec, hd, cr, ci, neox)
			for i := range vec {
				if vec[i] != want[i] {
					t.Fatalf("head dim %d neox %v element %d: %v, reference %v", hd, neox, i, vec[i], want[i])
				}
			}
		}
	}
}
