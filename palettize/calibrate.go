package palettize

import (
	"fmt"
	"math/rand/v2"
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

	// The fields below are set by CalibrateWith with Sensitivity (see
	// sensitivity.go for what they mean).
	//
	// SensitivityWindows is how many windows the forward/backward pass ran
	// on (evenly spaced when fewer than Windows), and SensitivityPositions
	// the positions they hold.
	SensitivityWindows   int `json:"sensitivity_windows,omitempty"`
	SensitivityPositions int `json:"sensitivity_positions,omitempty"`
	// OutputFisher[name][i] is mean_t (dL/dy_ti)^2 for output channel i of
	// linear name (the classifier under "output"), L the log-loss of labels
	// drawn from the model itself.
	OutputFisher map[string][]float32 `json:"-"`
	// Gram[name] is mean_t x_t x_t^T (cols x cols, row-major, float64) of
	// the linear's input; linears that share an input share the slice.
	// Only with CalibrateOptions.Gram.
	Gram map[string][]float64 `json:"-"`
	// EmbedRowFisher (vocab) and EmbedColFisher (dim, mean 1) factor the
	// diagonal Fisher of the token-embedding lookup.
	EmbedRowFisher []float32 `json:"-"`
	EmbedColFisher []float32 `json:"-"`
}

// CalibrateOptions configure CalibrateWith.
type CalibrateOptions struct {
	Ctx     int // window length; clipped to the model's context
	Workers int // windows in parallel; results do not depend on it
	// Sensitivity runs a forward and backward pass (sensitivity.go) to
	// measure OutputFisher and the embedding Fisher, besides Importance.
	Sensitivity bool
	// Gram also collects each linear's input Gram matrix (for error
	// feedback quantization); it implies the forward/backward pass.
	Gram bool
	// MaxWindows > 0 runs the sensitivity pass on at most that many evenly
	// spaced windows (Importance then comes from those windows too).
	MaxWindows int
	Seed       uint64 // labels drawn for the Fisher
	Progress   func(done, total int)
}

// Calibrate runs m over tokens (a stream starting with BOS) cut into windows
// of ctx tokens, each starting with BOS, and collects per-input-channel
// mean squares for every linear. Windows run in parallel (workers), but the
// statistics are reduced in window order, so the result does not depend on
// the worker count.
func Calibrate(m *ir.Model, tokens []int, bos, ctx, workers int, progress func(done, total int)) (*Calibration, error) {
	return CalibrateWith(m, tokens, bos, CalibrateOptions{Ctx: ctx, Workers: workers, Progress: progress})
}

// CalibrateWith is Calibrate with options: with Sensitivity or Gram it runs
// palettize's own forward and backward pass (the runtime's arithmetic,
// checked against it by TestSensitivityForwardMatchesRuntime) and also
// fills OutputFisher, the embedding Fisher and (with Gram) the Gram
// matrices. Statistics are reduced in window order, so the result does not
// depend on Workers.
func CalibrateWith(m *ir.Model, tokens []int, bos int, opt CalibrateOptions) (*Calibration, error) {
	if opt.Sensitivity || opt.Gram {
		return calibrateSens(m, tokens, bos, opt)
	}
	ctx, workers, progress := opt.Ctx, opt.Workers, opt.Progress
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

// windowsOf returns the windows (start, end) of tokens cut in ctx, with at
// most maxW evenly spaced ones when maxW > 0.
func windowsOf(nTok, ctx, maxW int) [][2]int {
	nw := (nTok + ctx - 1) / ctx
	var out [][2]int
	pick := func(i int) { out = append(out, [2]int{i * ctx, min((i+1)*ctx, nTok)}) }
	if maxW > 0 && nw > maxW {
		for i := 0; i < maxW; i++ {
			pick(int((int64(i)*int64(nw) + int64(nw)/2) / int64(maxW)))
		}
		return out
	}
	for i := 0; i < nw; i++ {
		pick(i)
	}
	return out
}

func calibrateSens(m *ir.Model, tokens []int, bos int, opt CalibrateOptions) (*Calibration, error) {
	ctx := opt.Ctx
	if ctx <= 1 {
		return nil, fmt.Errorf("calibrate: ctx %d is too small", ctx)
	}
	if len(tokens) < 2 {
		return nil, fmt.Errorf("calibrate: the calibration text tokenizes to %d tokens; it needs at least 2", len(tokens))
	}
	ctx = min(ctx, m.Config.SeqLen)
	sm, err := newSensModel(m, ctx)
	if err != nil {
		return nil, err
	}
	wins := windowsOf(len(tokens), ctx, opt.MaxWindows)
	workers := max(1, min(opt.Workers, len(wins)))
	// Fewer windows than workers: split each matrix product instead.
	sm.inner = max(1, opt.Workers/len(wins))
	perWindow := make([]*sensAcc, len(wins))
	errs := make([]error, workers)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(wins); i += workers {
				win := append([]int(nil), tokens[wins[i][0]:wins[i][1]]...)
				win[0] = bos
				acc := newSensAcc()
				rng := rand.New(rand.NewPCG(opt.Seed, uint64(wins[i][0])))
				if err := sm.window(win, acc, rng, opt.Gram); err != nil {
					errs[w] = fmt.Errorf("calibrate: window %d: %w", i, err)
					return
				}
				perWindow[i] = acc
				if opt.Progress != nil {
					mu.Lock()
					done++
					opt.Progress(done, len(wins))
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
	tot := newSensAcc()
	sum := func(dst map[string][]float64, src map[string][]float64) {
		for k, v := range src {
			d := dst[k]
			if d == nil {
				d = make([]float64, len(v))
				dst[k] = d
			}
			for i, x := range v {
				d[i] += x
			}
		}
	}
	addVec := func(dst *[]float64, v []float64) {
		if *dst == nil {
			*dst = make([]float64, len(v))
		}
		for i, x := range v {
			(*dst)[i] += x
		}
	}
	for _, a := range perWindow {
		tot.positions += a.positions
		sum(tot.sumSq, a.sumSq)
		sum(tot.gram, a.gram)
		sum(tot.fisher, a.fisher)
		addVec(&tot.embRow, a.embRow)
		addVec(&tot.embCol, a.embCol)
	}
	n := float64(tot.positions)
	mean32 := func(v []float64) []float32 {
		o := make([]float32, len(v))
		for i, x := range v {
			o[i] = float32(x / n)
		}
		return o
	}
	c := &Calibration{TextTokens: len(tokens), Windows: (len(tokens) + ctx - 1) / ctx, Ctx: ctx, Positions: tot.positions,
		SensitivityWindows: len(wins), SensitivityPositions: tot.positions,
		Importance: map[string][]float32{}, OutputFisher: map[string][]float32{}}
	for k, v := range tot.sumSq {
		c.Importance[k] = mean32(v)
	}
	for k, v := range tot.fisher {
		c.OutputFisher[k] = mean32(v)
	}
	c.EmbedRowFisher = mean32(tot.embRow)
	c.EmbedColFisher = mean32(tot.embCol)
	var cm float64
	for _, v := range c.EmbedColFisher {
		cm += float64(v)
	}
	if cm /= float64(len(c.EmbedColFisher)); cm > 0 {
		for i := range c.EmbedColFisher {
			c.EmbedColFisher[i] = float32(float64(c.EmbedColFisher[i]) / cm)
		}
	}
	if opt.Gram {
		c.Gram = map[string][]float64{}
		for k, v := range tot.gram {
			for i := range v {
				v[i] /= n
			}
			c.Gram[k] = v
		}
		for l := 0; l < m.Config.Layers; l++ {
			q, g := c.Gram[ir.Blk(l, ir.AttnQ)], c.Gram[ir.Blk(l, ir.FFNGate)]
			c.Gram[ir.Blk(l, ir.AttnK)], c.Gram[ir.Blk(l, ir.AttnV)], c.Gram[ir.Blk(l, ir.FFNUp)] = q, q, g
		}
	}
	return c, nil
}
