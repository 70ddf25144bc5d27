//go:build arm64 && !purego

package kernels

import (
	"math"
	"math/rand"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// The NEON kernels called directly, against Go references, for every
// length around their 4-, 8-, 16- and 32-element steps and at odd offsets
// (unaligned starts). Decoders and the float16 widening must be exact;
// sums within the parity tolerance (closeTo).

func TestNEONSelected(t *testing.T) {
	if got := Impl(); got != "neon" {
		t.Fatalf("Impl() = %q on arm64, want neon", got)
	}
	prev := setAsm(false)
	if got := Impl(); got != "go" {
		t.Errorf("Impl() = %q with the assembly off, want go", got)
	}
	setAsm(prev)
}

func TestNEONDotSumAxpy(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	for n := 0; n <= 80; n += 4 {
		for _, off := range []int{0, 1, 3} {
			a, b := randVec(rng, n+off)[off:], randVec(rng, n+off)[off:]
			var sc, sa, want, wantS float64
			for i := range a {
				want += float64(a[i]) * float64(b[i])
				wantS += float64(a[i])
				sc += math.Abs(float64(a[i] * b[i]))
				sa += math.Abs(float64(a[i]))
			}
			var got, gotS float32
			if n > 0 {
				got = dotNEON(&a[0], &b[0], n)
				gotS = sumNEON(&a[0], n)
			}
			if !closeTo(got, float32(want), float32(sc)) {
				t.Fatalf("dotNEON n=%d off=%d: %v, want %v", n, off, got, want)
			}
			if !closeTo(gotS, float32(wantS), float32(sa)) {
				t.Fatalf("sumNEON n=%d off=%d: %v, want %v", n, off, gotS, wantS)
			}
			// axpy: one rounding per element (FMLA), and nothing past n.
			y := randVec(rng, n+4)
			y0 := append([]float32(nil), y...)
			c := float32(rng.NormFloat64())
			if n > 0 {
				axpyNEON(c, &a[0], &y[0], n)
			}
			for i := range y {
				w := y0[i]
				if i < n {
					w = float32(float64(y0[i]) + float64(c)*float64(a[i]))
				}
				if y[i] != w {
					t.Fatalf("axpyNEON n=%d off=%d element %d: %v, want %v (fused)", n, off, i, y[i], w)
				}
			}
		}
	}
}

// f16Specials covers zeros, subnormals, the largest finite values,
// infinities and NaNs.
var f16Specials = []uint16{0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x3555, 0x7e00}

func TestNEONF16(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for n := 8; n <= 104; n += 8 {
		for _, off := range []int{0, 1} {
			h := make([]uint16, n+off)
			for i := range h {
				h[i] = ir.F32ToF16(float32(rng.NormFloat64()))
			}
			h = h[off:]
			copy(h, f16Specials[:min(len(f16Specials), n)])
			dst := make([]float32, n+1)
			dst[n] = -7
			f16ToF32NEON(&h[0], &dst[0], n)
			for i := 0; i < n; i++ {
				want := f16(h[i])
				if math.Float32bits(dst[i]) != math.Float32bits(want) && !(want != want && dst[i] != dst[i]) {
					t.Fatalf("f16ToF32NEON n=%d element %d (%#04x): %v (%#x), want %v", n, i, h[i], dst[i], math.Float32bits(dst[i]), want)
				}
			}
			if dst[n] != -7 {
				t.Fatalf("f16ToF32NEON n=%d wrote past n", n)
			}
			// The dot product on finite weights only.
			for i := range h {
				h[i] = ir.F32ToF16(float32(rng.NormFloat64()))
			}
			x := randVec(rng, n)
			var want, sc float64
			for i := range x {
				p := float64(f16(h[i])) * float64(x[i])
				want += p
				sc += math.Abs(p)
			}
			if got := dotF16NEON(&h[0], &x[0], n); !closeTo(got, float32(want), float32(sc)) {
				t.Fatalf("dotF16NEON n=%d: %v, want %v", n, got, want)
			}
		}
	}
}

// TestNEONLUTDecode decodes lut4 and lut2 rows with NEON and compares
// them with ir's DecodeRow (bit-exact), and checks the lut4, lut2 and
// lut3 row dot products against the decoded rows.
func TestNEONLUTDecode(t *testing.T) {
	rng := rand.New(rand.NewSource(43))
	for _, bits := range []int{4, 2, 3} {
		for _, cols := range []int{128, 256, 384, 1024} {
			w := lutTensor(rng, bits, 3, cols, 2, false)
			L, ok := layoutOf(w)
			if !ok {
				t.Fatalf("lut%d cols %d: no layout", bits, cols)
			}
			// Group 0's table: zeros, subnormals, infinities, NaN.
			copy(w.Pal.LUT[:1<<bits], f16Specials)
			x := randVec(rng, cols)
			tab := getTable()
			for r := 0; r < 3; r++ {
				g := r / w.Pal.GroupSize
				lut := w.Pal.LUT[g<<bits : (g+1)<<bits]
				p0, p1 := L.rowPlanes(w.Data, r)
				want := make([]float32, cols)
				w.DecodeRow(r, want)
				got := make([]float32, cols)
				if bits == 3 { // no NEON decoder: lut3 rows decode in Go
					copy(got, want)
				} else if !lutRowDecode(bits, p0, got, lut) {
					t.Fatalf("lut%d: no NEON decoder", bits)
				}
				for c := range got {
					if math.Float32bits(got[c]) != math.Float32bits(want[c]) && !(got[c] != got[c] && want[c] != want[c]) {
						t.Fatalf("lut%d cols %d row %d col %d: NEON %v, DecodeRow %v", bits, cols, r, c, got[c], want[c])
					}
				}
				if g == 0 {
					continue // infinities and NaNs: no meaningful dot product
				}
				s, ok := lutRowDot(bits, p0, p1, x, nil, lut, tab)
				if !ok {
					t.Fatalf("lut%d: no NEON row dot", bits)
				}
				var ref, sc float64
				for c := range x {
					ref += float64(want[c]) * float64(x[c])
					sc += math.Abs(float64(want[c] * x[c]))
				}
				if !closeTo(s, float32(ref), float32(sc)) {
					t.Fatalf("lut%d cols %d row %d: NEON dot %v, want %v", bits, cols, r, s, ref)
				}
			}
			putTable(tab)
		}
	}
}
