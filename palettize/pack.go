package palettize

import (
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
)

// packIndices is ir.PackIndices (byte-identical output, checked by
// TestPackIndicesMatchesIR), sixteen lanes at a time with 64-bit words and
// split over workers (0 = runtime.NumCPU()) by ranges of 128 elements, a
// whole number of 16-byte blocks in every plane. ir.PackIndices took ~6
// CPU s, on one thread, of a TinyLlama-1.1B compile.
//
// Layout (ir/encoding.go): plane p holds 128/p elements per 16-byte block;
// element w of a block goes to byte w%16 at bit p*(w/16). So byte j of a
// block ORs the p-bit fields of elements j, j+16, j+32, ... shifted by 0,
// p, 2p, ...: on eight bytes at once the shifts never cross a byte.
func packIndices(bits int, idx []uint8, workers int) []byte {
	n := len(idx)
	out := make([]byte, ir.PackedBytes(bits, n))
	if n == 0 {
		return out
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	const unit = 128
	units := (n + unit - 1) / unit
	// At least 64 Ki elements per worker: below that the goroutines cost
	// more than they save.
	workers = max(1, min(workers, units/512))
	pack := func(u0, u1 int) {
		base, off := 0, 0
		for _, p := range ir.Planes(bits) {
			packPlane(out[base:base+int(ir.PlaneBytes(p, n))], idx, p, off, u0*unit, min(u1*unit, n))
			base += int(ir.PlaneBytes(p, n))
			off += p
		}
	}
	if workers == 1 {
		pack(0, units)
		return out
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		u0, u1 := w*units/workers, (w+1)*units/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			pack(u0, u1)
		}()
	}
	wg.Wait()
	return out
}

// packPlane writes the blocks of plane p (bits off..off+p-1 of each index)
// that hold elements [e0, e1) of idx; e0 is a multiple of 128/p, and e1 is
// too unless it is len(idx).
func packPlane(plane []byte, idx []uint8, p, off, e0, e1 int) {
	per := 128 / p
	nsl := per / 16
	mask := uint64(1<<p-1) * 0x0101010101010101
	e := e0
	for ; e+per <= e1; e += per {
		var lo, hi uint64
		for s := 0; s < nsl; s++ {
			src := idx[e+16*s : e+16*s+16]
			a := binary.LittleEndian.Uint64(src[0:8])
			b := binary.LittleEndian.Uint64(src[8:16])
			sh := uint(p * s)
			lo |= (a >> uint(off) & mask) << sh
			hi |= (b >> uint(off) & mask) << sh
		}
		dst := plane[e/per*16 : e/per*16+16]
		binary.LittleEndian.PutUint64(dst[0:8], lo)
		binary.LittleEndian.PutUint64(dst[8:16], hi)
	}
	// A last, partial block: element by element, as ir.PackIndices.
	m := uint8(1<<p - 1)
	for ; e < e1; e++ {
		w := e % per
		plane[e/per*16+w%16] |= ((idx[e] >> off) & m) << (p * (w / 16))
	}
}
