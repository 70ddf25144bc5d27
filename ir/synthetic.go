package ir

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"
)

// SyntheticConfigs are the realistic shapes DESIGN.md names, for speed and
// scale work on generated weights. Numbers measured on them are "synthetic".
var SyntheticConfigs = map[string]Config{
	"stories260K":    {Arch: "llama", Dim: 64, Layers: 5, Heads: 8, KVHeads: 4, HeadDim: 8, FFN: 172, Vocab: 512, SeqLen: 512, RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: true},
	"stories110M":    {Arch: "llama", Dim: 768, Layers: 12, Heads: 12, KVHeads: 12, HeadDim: 64, FFN: 2048, Vocab: 32000, SeqLen: 1024, RopeTheta: 10000, NormEps: 1e-5},
	"tinyllama-1.1b": {Arch: "llama", Dim: 2048, Layers: 22, Heads: 32, KVHeads: 4, HeadDim: 64, FFN: 5632, Vocab: 32000, SeqLen: 2048, RopeTheta: 10000, NormEps: 1e-5},
	// Apple's on-device foundation model (2024): dim 3072, 26 layers, 24
	// heads, 8 KV heads, head dim 128, vocab 49152, tied embeddings. The
	// FFN width 8192 gives ~2.6B non-embedding parameters, as published.
	"afm-on-device": {Arch: "llama", Dim: 3072, Layers: 26, Heads: 24, KVHeads: 8, HeadDim: 128, FFN: 8192, Vocab: 49152, SeqLen: 4096, RopeTheta: 500000, NormEps: 1e-5, TiedEmbed: true},
}

// SyntheticNames lists the synthetic shapes, sorted.
func SyntheticNames() []string {
	var s []string
	for n := range SyntheticConfigs {
		s = append(s, n)
	}
	sort.Strings(s)
	return s
}

// SyntheticConfig returns a named synthetic shape.
func SyntheticConfig(name string) (Config, error) {
	c, ok := SyntheticConfigs[name]
	if !ok {
		return Config{}, fmt.Errorf("synthetic model %q is unknown; known: %v", name, SyntheticNames())
	}
	return c, nil
}

// Synthetic builds a model of the named shape with float32 weights drawn
// from N(0, 0.02) (norm weights 1) with a fixed seed: for speed and memory
// work only, never for quality. It has no tokenizer. Weights are generated
// straight into each tensor's bytes, in parallel over chunks of
// syntheticChunk elements, each chunk from its own PCG stream seeded by
// (seed, tensor, chunk): the result does not depend on the CPU count.
func Synthetic(name string, seed uint64) (*Model, error) {
	c, err := SyntheticConfig(name)
	if err != nil {
		return nil, err
	}
	m := &Model{Config: c, Tensors: map[string]*Tensor{}, Format: "synthetic", Source: "synthetic:" + name}
	var jobs []chunkJob
	for ti, ns := range ExpectedShapes(c) {
		n := 1
		for _, d := range ns.Shape {
			n *= d
		}
		t := &Tensor{Name: ns.Name, Shape: append([]int(nil), ns.Shape...), Type: F32, Data: make([]byte, 4*n)}
		m.Tensors[ns.Name] = t
		v := unsafe.Slice((*float32)(unsafe.Pointer(&t.Data[0])), n)
		vector := len(ns.Shape) == 1
		for c0 := 0; c0 < n; c0 += syntheticChunk {
			jobs = append(jobs, chunkJob{v: v[c0:min(n, c0+syntheticChunk)], ti: ti, ci: c0 / syntheticChunk, one: vector})
		}
	}
	parallelChunks(jobs, func(j chunkJob) {
		if j.one {
			for i := range j.v {
				j.v[i] = 1
			}
			return
		}
		rng := rand.New(rand.NewPCG(seed^uint64(j.ti)<<32^uint64(j.ci), 0x5eed))
		for i := range j.v {
			j.v[i] = float32(rng.NormFloat64() * 0.02)
		}
	})
	return m, nil
}

// syntheticChunk is the unit of parallel, deterministic generation.
const syntheticChunk = 1 << 16

type chunkJob struct {
	v   []float32
	ti  int // tensor index in ExpectedShapes
	ci  int // chunk index within the tensor
	one bool
}

// parallelChunks runs f over jobs on all CPUs.
func parallelChunks(jobs []chunkJob, f func(chunkJob)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				f(jobs[i])
			}
		}()
	}
	wg.Wait()
}
