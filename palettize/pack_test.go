package palettize

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// TestPackIndicesMatchesIR checks the fast packer against ir.PackIndices
// for every width, lengths that are and are not whole blocks, and several
// worker counts (including more workers than 128-element units).
func TestPackIndicesMatchesIR(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, bits := range ir.PaletteBits {
		for _, n := range []int{0, 1, 15, 16, 17, 127, 128, 129, 1000, 4096, 65536*2 + 77, 300000} {
			idx := make([]uint8, n)
			for i := range idx {
				idx[i] = uint8(rng.IntN(1 << bits))
			}
			want := ir.PackIndices(bits, idx)
			for _, w := range []int{1, 2, 3, 64} {
				if got := packIndices(bits, idx, w); !bytes.Equal(got, want) {
					t.Fatalf("bits %d n %d workers %d: packed bytes differ from ir.PackIndices", bits, n, w)
				}
			}
		}
	}
}
