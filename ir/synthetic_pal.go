package ir

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"unsafe"
)

// SyntheticPalettized builds a synthetic model of the named shape whose
// matrices are palettized at the given rate without any k-means: indices
// are drawn uniformly, each LUT group gets the 2^bits normal quantiles
// times 0.02 with a small random jitter, no per-row scales. For speed and
// memory work only. Norm vectors are float32 ones.
//
// bpw 32 gives the float32 model (Synthetic), 16 a float16 one; an index
// width in ir.PaletteBits gives every matrix that width; any other rate in
// (1, 8) gives a deterministic mix of the two neighbouring widths of
// {1, 2, 4, 6, 8} (a single width's rate is that width plus the LUT
// overhead): every matrix starts at the wider one and whole tensors
// drop to the narrower one in a fixed order (ffn_up of every layer, then
// ffn_gate, ffn_down, attn_output, attn_v, attn_k, attn_q; the token
// embedding and classifier never drop) while the rate over all matrices,
// LUT overhead included, stays above target - 0.05. The rate of a mix must
// lie within 0.05 of bpw, or an error says so. groupSize rows share a LUT
// (0 means 16).
func SyntheticPalettized(name string, bpw float64, groupSize int, seed uint64) (*Model, error) {
	if bpw == 32 {
		return Synthetic(name, seed)
	}
	c, err := SyntheticConfig(name)
	if err != nil {
		return nil, err
	}
	if groupSize <= 0 {
		groupSize = 16
	}
	m := &Model{Config: c, Tensors: map[string]*Tensor{}, Format: "synthetic",
		Source: fmt.Sprintf("synthetic:%s@%gbpw", name, bpw)}
	shapes := ExpectedShapes(c)
	bits := map[string]int{} // matrices only
	var mats []NamedShape
	for _, ns := range shapes {
		if len(ns.Shape) == 2 {
			mats = append(mats, ns)
		}
	}
	if bpw == 16 {
		for _, ns := range mats {
			bits[ns.Name] = 16
		}
	} else {
		hi, lo, err := mixWidths(bpw)
		if err != nil {
			return nil, err
		}
		for _, ns := range mats {
			bits[ns.Name] = hi
		}
		rate := func() float64 {
			var b, n float64
			for _, ns := range mats {
				rows, cols := ns.Shape[0], ns.Shape[1]
				k := bits[ns.Name]
				ng := (rows + groupSize - 1) / groupSize
				b += 8*float64(PackedBytes(k, rows*cols)) + 16*float64(ng<<k)
				n += float64(rows * cols)
			}
			return b / n
		}
		if lo != hi {
			order := []string{FFNUp, FFNGate, FFNDown, AttnOut, AttnV, AttnK, AttnQ}
		drop:
			for _, kind := range order {
				for l := 0; l < c.Layers; l++ {
					nm := Blk(l, kind)
					if rate() <= bpw {
						break drop
					}
					bits[nm] = lo
					if rate() < bpw-0.05 {
						bits[nm] = hi
						break drop
					}
				}
			}
		}
		if r := rate(); lo != hi && math.Abs(r-bpw) > 0.05 {
			return nil, fmt.Errorf("synthetic %s: cannot reach %.3g bits per weight with whole tensors at %d/%d bits (reached %.3f)", name, bpw, hi, lo, r)
		}
	}
	var jobs []chunkJob
	type palJob struct {
		t    *Tensor
		ti   int
		bits int
	}
	var pals []palJob
	for ti, ns := range shapes {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		t := &Tensor{Name: ns.Name, Shape: append([]int(nil), ns.Shape...)}
		m.Tensors[ns.Name] = t
		k := bits[ns.Name]
		switch {
		case len(ns.Shape) == 1:
			t.Type, t.Data = F32, make([]byte, 4*n)
			v := f32Slice(t.Data)
			for c0 := 0; c0 < n; c0 += syntheticChunk {
				jobs = append(jobs, chunkJob{v: v[c0:min(n, c0+syntheticChunk)], ti: ti, ci: c0 / syntheticChunk, one: true})
			}
		case k == 16:
			t.Type, t.Data = F16, make([]byte, 2*n)
			pals = append(pals, palJob{t, ti, 16})
		default:
			dt, _ := LUTType(k)
			t.Type, t.Data = dt, make([]byte, PackedBytes(k, n))
			pals = append(pals, palJob{t, ti, k})
		}
	}
	parallelChunks(jobs, func(j chunkJob) {
		for i := range j.v {
			j.v[i] = 1
		}
	})
	// Palettized and f16 data: one job per chunk of bytes, each with its
	// own stream; LUTs per tensor.
	var bjobs []chunkJob
	byteChunk := 4 * syntheticChunk
	for pi, p := range pals {
		for c0 := 0; c0 < len(p.t.Data); c0 += byteChunk {
			bjobs = append(bjobs, chunkJob{ti: pi, ci: c0 / byteChunk})
		}
	}
	parallelChunks(bjobs, func(j chunkJob) {
		p := pals[j.ti]
		rng := rand.New(rand.NewPCG(seed^uint64(p.ti)<<32^uint64(j.ci), 0xba1e77e))
		b := p.t.Data[j.ci*byteChunk : min(len(p.t.Data), (j.ci+1)*byteChunk)]
		if p.bits == 16 {
			for i := 0; i+1 < len(b); i += 2 {
				h := F32ToF16(float32(rng.NormFloat64() * 0.02))
				b[i], b[i+1] = byte(h), byte(h>>8)
			}
			return
		}
		for i := 0; i+8 <= len(b); i += 8 {
			u := rng.Uint64()
			for k := 0; k < 8; k++ {
				b[i+k] = byte(u >> (8 * k))
			}
		}
		for i := len(b) &^ 7; i < len(b); i++ {
			b[i] = byte(rng.Uint32())
		}
	})
	for _, p := range pals {
		if p.bits == 16 {
			continue
		}
		t := p.t
		n := t.Elems()
		// Zero the padding of each plane's last block, as PackIndices does.
		base := int64(0)
		for _, pw := range Planes(p.bits) {
			per := 128 / pw
			if rem := n % per; rem != 0 {
				last := t.Data[base+PlaneBytes(pw, n)-16 : base+PlaneBytes(pw, n)]
				for w := rem; w < per; w++ {
					last[w%16] &^= byte(1<<pw-1) << (pw * (w / 16))
				}
			}
			base += PlaneBytes(pw, n)
		}
		gs := min(groupSize, t.Rows())
		t.Pal = &Palette{GroupSize: gs, LUT: make([]uint16, (t.Rows()+gs-1)/gs<<p.bits)}
		rng := rand.New(rand.NewPCG(seed^uint64(p.ti)<<32, 0x1a7))
		k := 1 << p.bits
		for g := 0; g < len(t.Pal.LUT)/k; g++ {
			for i := 0; i < k; i++ {
				q := math.Sqrt2 * math.Erfinv(2*(float64(i)+0.5)/float64(k)-1)
				t.Pal.LUT[g*k+i] = F32ToF16(float32(0.02 * q * (1 + 0.05*rng.NormFloat64())))
			}
		}
	}
	for _, t := range m.Tensors {
		if err := t.Check(); err != nil {
			return nil, fmt.Errorf("synthetic %s: %w", name, err)
		}
	}
	return m, nil
}

// mixWidths returns the wider and narrower index widths used for a rate.
func mixWidths(bpw float64) (hi, lo int, err error) {
	for _, b := range PaletteBits {
		if float64(b) == bpw {
			return b, b, nil
		}
	}
	steps := []int{1, 2, 4, 6, 8}
	for i := 1; i < len(steps); i++ {
		if bpw > float64(steps[i-1]) && bpw < float64(steps[i]) {
			return steps[i], steps[i-1], nil
		}
	}
	var ok []string
	for _, b := range PaletteBits {
		ok = append(ok, fmt.Sprint(b))
	}
	return 0, 0, fmt.Errorf("synthetic palettized rate %g bits per weight: expected 16, 32 or a rate in [1, 8] (widths %s)", bpw, strings.Join(ok, ", "))
}

// f32Slice views b (4-byte aligned, as make returns) as float32 values.
func f32Slice(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}
