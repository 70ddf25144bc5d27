//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand"
	"testing"
)

// TestI8PairsSameBits: the two-stream lut4 and lut2 kernels (i8RowPairs)
// give the
// one-stream kernel's bits on every row, over widths with and without a
// lone last 64-element unit, odd and even row counts, group sizes that
// make the two streams cross group boundaries at different rows, and row
// ranges that start inside a group.
func TestI8PairsSameBits(t *testing.T) {
	if !i8Asm() {
		t.Skip("no int8 kernels on this CPU")
	}
	defer SetMode(SetMode(ModeInt8))
	defer func(v bool) { i8Pairs = v }(i8Pairs)
	rng := rand.New(rand.NewSource(23))
	for _, c := range [][2]int{{4, 64}, {4, 192}, {4, 2048}, {2, 128}, {2, 384}, {2, 2048}, {2, 2176}, {2, 5632}} {
		bits, cols := c[0], c[1]
		for _, rows := range []int{2, 3, 16, 37} {
			for _, gs := range []int{1, 7, 16, rows} {
				w := lutTensor(rng, bits, rows, cols, gs, gs != 7)
				x := randVec(rng, cols)
				for _, rr := range [][2]int{{0, rows}, {rows / 3, rows}, {1, rows - 1}} {
					r0, r1 := rr[0], rr[1]
					if r1-r0 < 2 {
						continue
					}
					one := make([]float32, rows)
					two := make([]float32, rows)
					i8Pairs = false
					MatVec(w, x, one, r0, r1)
					i8Pairs = true
					MatVec(w, x, two, r0, r1)
					for r := range one {
						if math.Float32bits(one[r]) != math.Float32bits(two[r]) {
							t.Fatalf("lut%d %dx%d gs %d rows [%d,%d) row %d: two streams %v, one %v", bits, rows, cols, gs, r0, r1, r, two[r], one[r])
						}
					}
				}
			}
		}
	}
}
