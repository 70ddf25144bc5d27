package kernels

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// mixedTensor stacks parts of different widths, group sizes and scales
// (the last one ragged) into one LUTMIX tensor.
func mixedTensor(rng *rand.Rand, cols int) *ir.Tensor {
	parts := []*ir.Tensor{
		lutTensor(rng, 4, 32, cols, 16, true),
		lutTensor(rng, 2, 16, cols, 16, false),
		lutTensor(rng, 3, 32, cols, 32, true),
		lutTensor(rng, 4, 5, cols, 5, false),
	}
	w := &ir.Tensor{Name: "mix", Shape: []int{85, cols}, Type: ir.LUTMIX, Parts: parts}
	if err := w.Check(); err != nil {
		panic(err)
	}
	return w
}

// The products of a LUTMIX tensor are, row for row, the bits of its parts'
// own products, for every row range and in both arithmetic modes.
func TestMixedSameBitsAsParts(t *testing.T) {
	for _, mode := range []Mode{ModeFloat, ModeInt8} {
		prev := SetMode(mode)
		rng := rand.New(rand.NewSource(9))
		for _, cols := range []int{256, 100} {
			w := mixedTensor(rng, cols)
			rows := w.Rows()
			x := randVec(rng, 3*cols)
			// Per part, each alone.
			want := make([]float32, rows)
			wantMM := make([]float32, 3*rows)
			off := 0
			for _, p := range w.Parts {
				pr := p.Rows()
				MatVec(p, x[:cols], want[off:off+pr], 0, pr)
				tmp := make([]float32, 3*pr)
				MatMul(p, x, tmp, 3, 0, pr)
				for i := 0; i < 3; i++ {
					copy(wantMM[i*rows+off:], tmp[i*pr:(i+1)*pr])
				}
				off += pr
			}
			for _, rr := range [][2]int{{0, rows}, {3, 40}, {47, 48}, {50, 85}, {31, 33}} {
				r0, r1 := rr[0], rr[1]
				got := make([]float32, rows)
				gotIn := make([]float32, rows)
				gotMM := make([]float32, 3*rows)
				MatVec(w, x[:cols], got, r0, r1)
				var in Input
				in.Reset(x[:cols])
				MatVecInput(w, &in, gotIn, r0, r1)
				MatMul(w, x, gotMM, 3, r0, r1)
				for r := 0; r < rows; r++ {
					inside := r >= r0 && r < r1
					if (inside && (got[r] != want[r] || gotIn[r] != want[r])) || (!inside && (got[r] != 0 || gotIn[r] != 0)) {
						t.Fatalf("%v cols %d rows [%d,%d): row %d MatVec %v MatVecInput %v, parts alone %v", mode, cols, r0, r1, r, got[r], gotIn[r], want[r])
					}
					for i := 0; i < 3; i++ {
						g := gotMM[i*rows+r]
						if (inside && g != wantMM[i*rows+r]) || (!inside && g != 0) {
							t.Fatalf("%v cols %d rows [%d,%d): MatMul token %d row %d = %v, parts alone %v", mode, cols, r0, r1, i, r, g, wantMM[i*rows+r])
						}
					}
				}
			}
			if mode == ModeFloat {
				checkMatVec(t, w, x[:cols], 0, rows) // against the reference decoder (ir's DecodeRow through the parts)
			}
		}
		SetMode(prev)
	}
}

func TestMixedCheck(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	good := func() *ir.Tensor { return mixedTensor(rng, 64) }
	cases := map[string]func(w *ir.Tensor){
		"parts hold":          func(w *ir.Tensor) { w.Shape[0] = 86 },
		"no parts":            func(w *ir.Tensor) { w.Parts = nil },
		"expected [rows, 64]": func(w *ir.Tensor) { w.Parts[1] = lutTensor(rng, 2, 16, 32, 16, false) },
		"palettized encoding": func(w *ir.Tensor) {
			w.Parts[0] = &ir.Tensor{Name: "f", Shape: []int{32, 64}, Type: ir.F32, Data: make([]byte, 4*32*64)}
		},
		"data is":    func(w *ir.Tensor) { w.Parts[2].Data = w.Parts[2].Data[:10] },
		"of its own": func(w *ir.Tensor) { w.Data = []byte{1} },
	}
	for want, mutate := range cases {
		w := good()
		mutate(w)
		err := w.Check()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Check = %v, expected an error containing %q", want, err, want)
		}
	}
	if b, want := good().Bytes(), func() int64 {
		var s int64
		for _, p := range good().Parts {
			s += p.Bytes()
		}
		return s
	}(); b != want {
		t.Errorf("Bytes = %d, sum of parts %d", b, want)
	}
}
