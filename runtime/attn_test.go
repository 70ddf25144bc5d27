package runtime

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// benchCtx is the context the decode benchmarks below decode at:
// SQUEEZE_CTX prompt tokens (default 128, the CLI bench's --prompt-tokens),
// then 32 decoded tokens, so attention sees 128-160 cached positions.
func benchCtx() int {
	if v, err := strconv.Atoi(os.Getenv("SQUEEZE_CTX")); err == nil && v >= 1 {
		return v
	}
	return 128
}

// BenchmarkDecodeOpsCtx is BenchmarkDecodeOps at the CLI bench's context:
// wall time per op kind of decode steps at SQUEEZE_CTX..SQUEEZE_CTX+31
// cached positions (1 thread, int8, SQUEEZE_BPW). The prefill is not
// counted.
//
//	SQUEEZE_BPW=3.7 go test -run '^$' -bench DecodeOpsCtx -benchtime 64x ./runtime/
func BenchmarkDecodeOpsCtx(b *testing.B) {
	m := benchDecodeModel(b)
	ctx := benchCtx()
	byKind := map[string]time.Duration{}
	on := false
	bytesOf := weightBytesByKind(m)
	rt, err := New(m, Options{Threads: 1, OpTimer: func(op string, d time.Duration) {
		if on {
			byKind[opKind(op)] += d
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, m.Config.Vocab)
	s := rt.NewState(ctx + 32)
	prompt := make([]int, ctx)
	for i := range prompt {
		prompt[i] = (1 + i*7919) % m.Config.Vocab
	}
	probe := kernels.StreamSum(256<<20, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%32 == 0 {
			b.StopTimer()
			on = false
			s.Reset()
			if err := rt.Forward(s, prompt, logits, false); err != nil {
				b.Fatal(err)
			}
			on = true
			b.StartTimer()
		}
		if err := rt.Forward(s, []int{1 + i%64}, logits, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportOps(b, byKind, bytesOf, probe, fmt.Sprintf("context %d-%d: ", ctx, ctx+31))
}

// BenchmarkAttnAB compares decode with attnLegacy on and off in one
// process at SQUEEZE_CTX..SQUEEZE_CTX+31 cached positions, alternating
// every 4 tokens (the shared machine's load changes by the minute): median
// ms per token of each and the median of the per-round ratios, 1 and 2
// threads (SQUEEZE_BPW: rate, default 3.7). Prefills are not timed.
//
//	SQUEEZE_BPW=3.7 go test -run '^$' -bench AttnAB -benchtime 24x ./runtime/
func BenchmarkAttnAB(b *testing.B) {
	m := benchDecodeModel(b)
	ctx := benchCtx()
	logits := make([]float32, m.Config.Vocab)
	prompt := make([]int, ctx)
	for i := range prompt {
		prompt[i] = (1 + i*7919) % m.Config.Vocab
	}
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			// each path decodes on its own cache, in its own layout
			attnLegacy = true
			sLeg := rt.NewState(ctx + 32)
			attnLegacy = false
			sNew := rt.NewState(ctx + 32)
			step := func(leg bool) float64 {
				s := sNew
				if leg {
					s = sLeg
				}
				attnLegacy = leg
				defer func() { attnLegacy = false }()
				if s.Pos == 0 || s.Pos+4 > ctx+32 {
					s.Reset()
					if err := rt.Forward(s, prompt, logits, false); err != nil {
						b.Fatal(err)
					}
				}
				t0 := time.Now()
				for j := 0; j < 4; j++ {
					if err := rt.Forward(s, []int{1 + s.Pos%64}, logits, false); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(t0).Seconds() / 4 * 1e3
			}
			reportAB(b, step)
		})
	}
}

// TestAttend64SameBits: head dimensions 64 and 128 with grouped-query
// attention (8 query heads per KV head, as TinyLlama-1.1B) give the same
// logits with the attention kernels and head-major cache (attendKernels)
// as with the
// per-position loop over the position-major cache (attnLegacy): a 41-token
// prefill (every key count mod 4 and mod 8) then decode steps, 1 and 2
// threads, float weights. Without the assembly both runs take the loop.
func TestAttend64SameBits(t *testing.T) {
	for _, hd := range []int{64, 128} {
		t.Run(fmt.Sprintf("hd%d", hd), func(t *testing.T) { testAttendSameBits(t, hd) })
	}
}

func testAttendSameBits(t *testing.T, hd int) {
	const name = "attn-gqa-test"
	ir.SyntheticConfigs[name] = ir.Config{Arch: "llama", Dim: 256, Layers: 2, Heads: 16, KVHeads: 2, HeadDim: hd,
		FFN: 256, Vocab: 300, SeqLen: 128, RopeTheta: 10000, NormEps: 1e-5}
	defer delete(ir.SyntheticConfigs, name)
	m, err := ir.Synthetic(name, 3)
	if err != nil {
		t.Fatal(err)
	}
	// larger q and k weights: peaked softmaxes, not near-uniform ones
	for l := 0; l < m.Config.Layers; l++ {
		for _, k := range []string{ir.AttnQ, ir.AttnK} {
			w := m.Tensors[ir.Blk(l, k)].F32()
			for i := range w {
				w[i] *= 8
			}
		}
	}
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		run := func(legacy bool) []float32 {
			attnLegacy = legacy
			defer func() { attnLegacy = false }()
			s := rt.NewState(64)
			prompt := make([]int, 41)
			for i := range prompt {
				prompt[i] = 1 + (i*37)%290
			}
			all := make([]float32, len(prompt)*m.Config.Vocab)
			if err := rt.Forward(s, prompt, all, true); err != nil {
				t.Fatal(err)
			}
			logits := make([]float32, m.Config.Vocab)
			for i := 0; i < 6; i++ {
				if err := rt.Forward(s, []int{7 + i}, logits, false); err != nil {
					t.Fatal(err)
				}
				all = append(all, logits...)
			}
			return all
		}
		want, got := run(true), run(false)
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("threads %d: logit %d = %v, per-position loop %v", threads, i, got[i], want[i])
			}
		}
	}
}
