package runtime

import (
	"fmt"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// Forward-pass throughput of the reference runtime (issue 2's benchmark).
// Run: go test -run '^$' -bench Forward -benchtime 5x ./runtime/
// Reported as tokens/s; "synthetic" shapes have random weights (speed only).
func BenchmarkForward(b *testing.B) {
	type model struct {
		name string
		load func(testing.TB) *ir.Model
	}
	models := []model{
		{"stories260K", func(tb testing.TB) *ir.Model { return loadStories(tb) }},
		{"synthetic-stories110M", func(tb testing.TB) *ir.Model {
			m, err := ir.Synthetic("stories110M", 1)
			if err != nil {
				tb.Fatal(err)
			}
			return m
		}},
	}
	for _, md := range models {
		m := md.load(b)
		for _, threads := range []int{1, 2} {
			rt, err := New(m, Options{Threads: threads})
			if err != nil {
				b.Fatal(err)
			}
			toks := make([]int, 128)
			for i := range toks {
				toks[i] = (i*31 + 1) % m.Config.Vocab
			}
			logits := make([]float32, m.Config.Vocab)
			b.Run(fmt.Sprintf("%s/prefill128/t%d", md.name, threads), func(b *testing.B) {
				s := rt.NewState(256)
				for i := 0; i < b.N; i++ {
					s.Reset()
					if err := rt.Forward(s, toks, logits, false); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(toks)*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
			b.Run(fmt.Sprintf("%s/decode@128/t%d", md.name, threads), func(b *testing.B) {
				s := rt.NewState(256)
				if err := rt.Forward(s, toks, logits, false); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s.Pos = 128
					if err := rt.Forward(s, toks[:1], logits, false); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
