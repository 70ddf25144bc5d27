package runtime

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// BenchmarkDecodeOps accounts a decode step of the synthetic
// TinyLlama-1.1B shape (int8 kernels, 1 thread) by op kind: wall time per
// token and, for the linears, GB/s of weight bytes, next to the streaming
// probe measured in the same process. Run:
//
//	SQUEEZE_BPW=3.7 go test -run '^$' -bench DecodeOps -benchtime 32x ./runtime/
func BenchmarkDecodeOps(b *testing.B) {
	m := benchDecodeModel(b)
	byKind := map[string]time.Duration{}
	bytesOf := weightBytesByKind(m)
	rt, err := New(m, Options{Threads: 1, OpTimer: func(op string, d time.Duration) { byKind[opKind(op)] += d }})
	if err != nil {
		b.Fatal(err)
	}
	logits := make([]float32, m.Config.Vocab)
	s := rt.NewState(64)
	_ = rt.Forward(s, []int{1}, logits, false)
	clear(byKind)
	probe := kernels.StreamSum(256<<20, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%63 == 0 {
			s.Reset()
		}
		if err := rt.Forward(s, []int{1 + i%64}, logits, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportOps(b, byKind, bytesOf, probe, "")
}

// opKind is an op's kind: blk.N.KIND -> KIND, other ops unchanged.
func opKind(op string) string {
	if i := strings.LastIndexByte(op, '.'); i >= 0 && strings.HasPrefix(op, "blk.") {
		return op[i+1:]
	}
	return op
}

// weightBytesByKind sums the bytes of m's matrices by op kind (the tied
// classifier reads token_embd).
func weightBytesByKind(m *ir.Model) map[string]int64 {
	bytesOf := map[string]int64{}
	for name, t := range m.Tensors {
		if len(t.Shape) == 2 && name != ir.NameTokenEmbd {
			bytesOf[opKind(name)] += t.Bytes()
		}
	}
	if m.Tensors[ir.NameOutput] == nil {
		bytesOf[ir.NameOutput] = m.Tensors[ir.NameTokenEmbd].Bytes()
	}
	return bytesOf
}

// reportOps prints wall time per token and share by op kind, and for the
// linears GB/s of weight bytes against the probe, then reports tokens/s.
func reportOps(b *testing.B, byKind map[string]time.Duration, bytesOf map[string]int64, probe float64, header string) {
	var total time.Duration
	var keys []string
	for k, d := range byKind {
		total += d
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return byKind[keys[i]] > byKind[keys[j]] })
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%sprobe %.2f GB/s; %.2f ms/token\n", header, probe, float64(total.Microseconds())/1e3/float64(b.N))
	for _, k := range keys {
		d := byKind[k]
		per := d.Seconds() / float64(b.N)
		fmt.Fprintf(&sb, "%-16s %7.3f ms %5.1f%%", k, per*1e3, 100*d.Seconds()/total.Seconds())
		if nb := bytesOf[k]; nb > 0 {
			fmt.Fprintf(&sb, "  %6.2f GB/s = %.2f of probe", float64(nb)/per/1e9, float64(nb)/per/1e9/probe)
		}
		sb.WriteString("\n")
	}
	fmt.Println(sb.String())
	b.ReportMetric(float64(b.N)/total.Seconds(), "tokens/s")
}

// BenchmarkDecodeAB compares decode with decodeLegacy on and off in one
// process, alternating every 4 tokens (the shared machine's load changes
// by the minute): median ms per token of each and the median of the
// per-round ratios, 1 and 2 threads (SQUEEZE_BPW: rate, default 3.7):
//
//	SQUEEZE_BPW=3.7 go test -run '^$' -bench DecodeAB -benchtime 20x ./runtime/
func BenchmarkDecodeAB(b *testing.B) {
	m := benchDecodeModel(b)
	logits := make([]float32, m.Config.Vocab)
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			s := rt.NewState(64)
			_ = rt.Forward(s, []int{1}, logits, false)
			step := func(leg bool) float64 {
				decodeLegacy = leg
				defer func() { decodeLegacy = false }()
				t0 := time.Now()
				for j := 0; j < 4; j++ {
					if s.Pos >= 60 {
						s.Reset()
						_ = rt.Forward(s, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, logits, false)
					}
					if err := rt.Forward(s, []int{1 + s.Pos}, logits, false); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(t0).Seconds() / 4 * 1e3
			}
			reportAB(b, step)
		})
	}
}

// BenchmarkPrefillAB compares a 128-token prefill with its batch quantized
// per call (prefillPerCall, as before Input.PrepareBatch) and once per
// input, in one process, alternating (reportAB; SQUEEZE_BPW: rate,
// default 3.7):
//
//	go test -run '^$' -bench PrefillAB -benchtime 9x ./runtime/
func BenchmarkPrefillAB(b *testing.B) {
	m := benchDecodeModel(b)
	logits := make([]float32, m.Config.Vocab)
	toks := make([]int, 128)
	for i := range toks {
		toks[i] = 1 + i
	}
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("t%d", threads), func(b *testing.B) {
			s := rt.NewState(len(toks))
			step := func(perCall bool) float64 {
				prefillPerCall = perCall
				defer func() { prefillPerCall = false }()
				s.Reset()
				t0 := time.Now()
				if err := rt.Forward(s, toks, logits, false); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0).Seconds() * 1e3
			}
			step(false)
			reportAB(b, step)
		})
	}
}

// TestDecodeSameBits: decode with the shared inputs, fused sections,
// SwiGLU kernel and per-token RoPE table gives the logits of the previous
// decode path (decodeLegacy) bit for bit, int8 and float kernels, 1 and 2
// threads, on the synthetic stories110M shape at 3.7 bpw (lut4/lut2 mix,
// every matrix on the int8 kernels), after an 8-token prefill (whose logits
// are compared too: its linears read batch Inputs, legacy's MatMul).
func TestDecodeSameBits(t *testing.T) {
	if testing.Short() || kernels.Impl() != "avx2" {
		t.Skip("builds and decodes a 110M synthetic model: only with the assembly kernels")
	}
	m, err := ir.SyntheticPalettized("stories110M", 3.7, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []kernels.Mode{kernels.ModeInt8, kernels.ModeFloat} {
		prev := kernels.SetMode(mode)
		for _, threads := range []int{1, 2} {
			rt, err := New(m, Options{Threads: threads})
			if err != nil {
				t.Fatal(err)
			}
			sameAsLegacy(t, fmt.Sprintf("%v threads %d", mode, threads), func() []float32 {
				s := rt.NewState(16)
				logits := make([]float32, m.Config.Vocab)
				var all []float32
				if err := rt.Forward(s, []int{1, 5, 9, 13, 17, 21, 25, 29}, logits, false); err != nil {
					t.Fatal(err)
				}
				all = append(all, logits...) // prefill: a batch Input (legacy: MatMul per chunk)
				for i := 0; i < 3; i++ {
					if err := rt.Forward(s, []int{100 + i}, logits, false); err != nil {
						t.Fatal(err)
					}
					all = append(all, logits...)
				}
				return all
			})
		}
		kernels.SetMode(prev)
	}
}

// TestAttend8SameBits: the head-dim-8 attention (attend8) gives the general
// loop's bits: stories260K (8 heads of 8, 4 KV heads), a 41-token prefill
// (every key count mod 4) then decode steps, 1 and 2 threads.
func TestAttend8SameBits(t *testing.T) {
	m := loadStories(t)
	for _, threads := range []int{1, 2} {
		rt, err := New(m, Options{Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		sameAsLegacy(t, fmt.Sprintf("threads %d", threads), func() []float32 {
			s := rt.NewState(64)
			prompt := make([]int, 41)
			for i := range prompt {
				prompt[i] = 1 + (i*37)%500
			}
			all := make([]float32, len(prompt)*m.Config.Vocab)
			if err := rt.Forward(s, prompt, all, true); err != nil {
				t.Fatal(err)
			}
			logits := make([]float32, m.Config.Vocab)
			for i := 0; i < 5; i++ {
				if err := rt.Forward(s, []int{7 + i}, logits, false); err != nil {
					t.Fatal(err)
				}
				all = append(all, logits...)
			}
			return all
		})
	}
}

// sameAsLegacy runs run with decodeLegacy on (the previous decode path and
// the general attention loop), then off, and fails at the first logit
// that differs.
func sameAsLegacy(t *testing.T, what string, run func() []float32) {
	t.Helper()
	defer func() { decodeLegacy = false }()
	decodeLegacy = true
	want := run()
	decodeLegacy = false
	got := run()
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: logit %d = %v, previous path %v", what, i, got[i], want[i])
		}
	}
}

// benchDecodeModel builds the synthetic TinyLlama-1.1B shape at SQUEEZE_BPW
// bits per weight (default 3.7) and runs the kernels in int8 mode until
// the benchmark ends.
func benchDecodeModel(b *testing.B) *ir.Model {
	bpw := 3.7
	if v, err := strconv.ParseFloat(os.Getenv("SQUEEZE_BPW"), 64); err == nil {
		bpw = v
	}
	m, err := ir.SyntheticPalettized("tinyllama-1.1b", bpw, 16, 1)
	if err != nil {
		b.Fatal(err)
	}
	prev := kernels.SetMode(kernels.ModeInt8)
	b.Cleanup(func() { kernels.SetMode(prev) })
	return m
}

// reportAB runs step(legacy) and step(current) b.N times each, alternating
// which goes first, and reports the medians of both (ms) and of their
// per-round ratio (the speed-up).
func reportAB(b *testing.B, step func(legacy bool) float64) {
	var legacy, cur, ratio []float64
	for i := 0; i < b.N; i++ {
		var a, c float64
		if i%2 == 0 {
			a, c = step(true), step(false)
		} else {
			c, a = step(false), step(true)
		}
		legacy, cur, ratio = append(legacy, a), append(cur, c), append(ratio, a/c)
	}
	med := func(v []float64) float64 {
		v = append([]float64(nil), v...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(legacy), "legacy_ms")
	b.ReportMetric(med(cur), "new_ms")
	b.ReportMetric(med(ratio), "speedup")
}
