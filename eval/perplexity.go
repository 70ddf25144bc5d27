package eval

import (
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/squeeze-ml/squeeze/runtime"
)

// Options configure an evaluation.
type Options struct {
	Ctx int // window length in tokens (default 256)
	// Workers evaluates windows in parallel, one KV cache each (default 1).
	Workers int
	// MaxWindows limits the number of windows (0 = all), for quick looks.
	MaxWindows int
	// Progress, if set, is called after each window with (done, total).
	Progress func(done, total int)
}

// Result is what an evaluation measured. KL fields are set only with a
// reference model.
type Result struct {
	PPL        float64  `json:"ppl"`
	NLL        float64  `json:"nll"` // mean negative log-likelihood per scored token (nats)
	PPLStderr  float64  `json:"ppl_stderr"`
	Tokens     int      `json:"tokens"`  // scored tokens
	Windows    int      `json:"windows"` //
	Ctx        int      `json:"ctx"`
	TextTokens int      `json:"text_tokens"` // tokens in the whole text, BOS included
	KLDMean    *float64 `json:"kld_mean,omitempty"`
	KLDP99     *float64 `json:"kld_p99,omitempty"`
	Top1Agree  *float64 `json:"top1_agree,omitempty"`
	// RefPPL and RefNLL are the reference model's perplexity and mean NLL
	// on the same scored tokens (with a reference only): a gate compares
	// the two without a second pass over the text.
	RefPPL *float64 `json:"ref_ppl,omitempty"`
	RefNLL *float64 `json:"ref_nll,omitempty"`
	// Kernels is the palettized arithmetic the model ran with (int8 or
	// float; set by the caller, which chose it; empty for a model without
	// palettized weights).
	Kernels string `json:"kernels,omitempty"`
}

type windowResult struct {
	nll   []float64
	rnll  []float64 // the reference's, with a reference
	kld   []float64
	agree int
}

// Evaluate scores model (and compares with ref, when not nil) on a token
// stream that starts with BOS.
func Evaluate(model, ref *runtime.Model, tokens []int, bos int, opt Options) (*Result, error) {
	if opt.Ctx <= 0 {
		opt.Ctx = 256
	}
	if opt.Ctx < 4 {
		return nil, fmt.Errorf("eval: --ctx %d is too small (need at least 4)", opt.Ctx)
	}
	if opt.Ctx > model.Cfg.SeqLen {
		return nil, fmt.Errorf("eval: --ctx %d exceeds the model's context of %d", opt.Ctx, model.Cfg.SeqLen)
	}
	if ref != nil && ref.Cfg.Vocab != model.Cfg.Vocab {
		return nil, fmt.Errorf("eval: reference vocabulary has %d tokens, model has %d", ref.Cfg.Vocab, model.Cfg.Vocab)
	}
	nw := len(tokens) / opt.Ctx
	if nw == 0 {
		return nil, fmt.Errorf("eval: the text is %d tokens, shorter than one window of --ctx %d", len(tokens), opt.Ctx)
	}
	if opt.MaxWindows > 0 && nw > opt.MaxWindows {
		nw = opt.MaxWindows
	}
	workers := max(1, min(opt.Workers, nw))
	results := make([]windowResult, nw)
	errs := make([]error, workers)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ev := newWindowEval(model, ref, opt.Ctx)
			for i := w; i < nw; i += workers {
				win := append([]int(nil), tokens[i*opt.Ctx:(i+1)*opt.Ctx]...)
				win[0] = bos
				r, err := ev.run(win)
				if err != nil {
					errs[w] = fmt.Errorf("eval: window %d: %w", i, err)
					return
				}
				results[i] = r
				if opt.Progress != nil {
					mu.Lock()
					done++
					opt.Progress(done, nw)
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
	// Reduce in window order so the figures do not depend on scheduling.
	var sum, sum2, rsum float64
	var klds []float64
	agree, count := 0, 0
	for _, r := range results {
		for _, v := range r.nll {
			sum += v
			sum2 += v * v
			count++
		}
		for _, v := range r.rnll {
			rsum += v
		}
		klds = append(klds, r.kld...)
		agree += r.agree
	}
	mean := sum / float64(count)
	res := &Result{NLL: mean, PPL: math.Exp(mean), Tokens: count, Windows: nw, Ctx: opt.Ctx, TextTokens: len(tokens)}
	if count > 1 {
		variance := (sum2/float64(count) - mean*mean) / float64(count-1)
		res.PPLStderr = math.Sqrt(math.Max(variance, 0)) * res.PPL
	}
	if ref != nil {
		var ks float64
		for _, k := range klds {
			ks += k
		}
		km := ks / float64(len(klds))
		sort.Float64s(klds)
		p99 := percentile(klds, 0.99)
		a := float64(agree) / float64(count)
		res.KLDMean, res.KLDP99, res.Top1Agree = &km, &p99, &a
		rn := rsum / float64(count)
		rp := math.Exp(rn)
		res.RefNLL, res.RefPPL = &rn, &rp
	}
	return res, nil
}

// percentile of sorted values with linear interpolation.
func percentile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	x := q * float64(len(s)-1)
	i := int(x)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	f := x - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}

type windowEval struct {
	model, ref *runtime.Model
	ms, rs     *runtime.State
	mlog, rlog []float32
	ctx        int
}

func newWindowEval(model, ref *runtime.Model, ctx int) *windowEval {
	e := &windowEval{model: model, ref: ref, ctx: ctx, ms: model.NewState(ctx), mlog: make([]float32, ctx*model.Cfg.Vocab)}
	if ref != nil {
		e.rs = ref.NewState(ctx)
		e.rlog = make([]float32, ctx*ref.Cfg.Vocab)
	}
	return e
}

func (e *windowEval) run(win []int) (windowResult, error) {
	V := e.model.Cfg.Vocab
	e.ms.Reset()
	if err := e.model.Forward(e.ms, win, e.mlog, true); err != nil {
		return windowResult{}, err
	}
	if e.ref != nil {
		e.rs.Reset()
		if err := e.ref.Forward(e.rs, win, e.rlog, true); err != nil {
			return windowResult{}, err
		}
	}
	first := e.ctx / 2
	var r windowResult
	lp := make([]float64, V)
	lq := make([]float64, V)
	for j := first; j < e.ctx-1; j++ {
		logSoftmax(e.mlog[j*V:(j+1)*V], lq)
		r.nll = append(r.nll, -lq[win[j+1]])
		if e.ref != nil {
			logSoftmax(e.rlog[j*V:(j+1)*V], lp)
			r.rnll = append(r.rnll, -lp[win[j+1]])
			var kl float64
			for i := range lp {
				p := math.Exp(lp[i])
				kl += p * (lp[i] - lq[i])
			}
			r.kld = append(r.kld, math.Max(kl, 0))
			if runtime.Argmax(e.mlog[j*V:(j+1)*V]) == runtime.Argmax(e.rlog[j*V:(j+1)*V]) {
				r.agree++
			}
		}
	}
	return r, nil
}

// logSoftmax writes log(softmax(x)) in float64.
func logSoftmax(x []float32, out []float64) {
	mx := x[0]
	for _, v := range x {
		if v > mx {
			mx = v
		}
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v - mx))
	}
	ls := math.Log(s) + float64(mx)
	for i, v := range x {
		out[i] = float64(v) - ls
	}
}
