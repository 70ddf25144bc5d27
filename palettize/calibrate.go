package palettize

import (
	"fmt"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
)

// Calibration is what running the original model over calibration text
// found: for every linear weight, the mean square of each input channel
// over all calibration positions (the diagonal of X^T X / n, as llama.cpp's
// importance matrix and sensitive k-means use). The tied or separate
// classifier's entry is under "output".
type Calibration struct {
	Source     string               `json:"source"`
	TextTokens int                  `json:"text_tokens"`
	Windows    int                  `json:"windows"`
	Ctx        int                  `json:"ctx"`
	Positions  int                  `json:"positions"`
	Importance map[string][]float32 `json:"-"`
}

// Calibrate runs m over tokens (a stream starting with BOS) cut into windows
// of ctx tokens, each starting with BOS, and collects per-input-channel
// mean squares for every linear. Windows run in parallel (workers), but the
// statistics are reduced in window order, so the result does not depend on
// the worker count.
func Calibrate(m *ir.Model, tokens []int, bos, ctx, workers int, progress func(done, total int)) (*Calibration, error) {
	if ctx <= 1 {
		return nil, fmt.Errorf("calibrate: ctx %d is too small", ctx)
	}
	ctx = min(ctx, m.Config.SeqLen)
	nw := (len(tokens) + ctx - 1) / ctx
	if len(tokens) < 2 {
		return nil, fmt.Errorf("calibrate: the calibration text tokenizes to %d tokens; it needs at least 2", len(tokens))
	}
	workers = max(1, min(workers, nw))
	type acc map[string][]float64
	perWindow := make([]acc, nw)
	errs := make([]error, workers)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var cur acc
			rt, err := runtime.New(m, runtime.Options{Threads: 1, LinearHook: func(name string, x []float32, n int) {
				s := cur[name]
				in := len(x) / n
				if s == nil {
					s = make([]float64, in)
					cur[name] = s
				}
				for i := 0; i < n; i++ {
					for j, v := range x[i*in : (i+1)*in] {
						s[j] += float64(v) * float64(v)
					}
				}
			}})
			if err != nil {
				errs[w] = err
				return
			}
			st := rt.NewState(ctx)
			logits := make([]float32, ctx*m.Config.Vocab)
			for i := w; i < nw; i += workers {
				win := append([]int(nil), tokens[i*ctx:min((i+1)*ctx, len(tokens))]...)
				win[0] = bos
				cur = acc{}
				st.Reset()
				if err := rt.Forward(st, win, logits, true); err != nil {
					errs[w] = fmt.Errorf("calibrate: window %d: %w", i, err)
					return
				}
				perWindow[i] = cur
				if progress != nil {
					mu.Lock()
					done++
					progress(done, nw)
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	sums := map[string][]float64{}
	counts := map[string]int{}
	positions := 0
	for i, a := range perWindow {
		n := min((i+1)*ctx, len(tokens)) - i*ctx
		positions += n
		for name, s := range a {
			t := sums[name]
			if t == nil {
				t = make([]float64, len(s))
				sums[name] = t
			}
			for j, v := range s {
				t[j] += v
			}
			counts[name] += n
		}
	}
	imp := make(map[string][]float32, len(sums))
	for name, s := range sums {
		v := make([]float32, len(s))
		for j, x := range s {
			v[j] = float32(x / float64(counts[name]))
		}
		imp[name] = v
	}
	return &Calibration{TextTokens: len(tokens), Windows: nw, Ctx: ctx, Positions: positions, Importance: imp}, nil
}
