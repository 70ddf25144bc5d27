package main

import (
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
)

// sampleText draws about nTokens tokens of text from the original model
// itself (temperature 1, no nucleus cut: the teacher's own distribution),
// as independent sequences started from BOS, each up to the model's context
// or until it ends, joined by newlines; it also returns the number of
// sampled tokens. Distilling on the teacher's own
// samples as well as on --calib (as LLM-QAT does) gives the student more
// text that is exactly in the teacher's distribution, so longer palette QAT
// stops fitting the calibration text: on stories260K at 3.7 bpw, 600 QAT
// steps on calib.txt alone gave dev KLD 0.108 (worse than 200 steps,
// 0.105), 600 steps with 200k sampled tokens added 0.097.
//
// Sequence i uses seed+i, and the sequences are joined in order, so the
// text is the same for any thread count.
func sampleText(orig *ir.Model, nTokens int, seed uint64, threads int) (string, int, error) {
	if nTokens <= 0 {
		return "", 0, nil
	}
	tok := orig.Tokenizer
	if tok == nil {
		return "", 0, fmt.Errorf("--sample-tokens: %s has no tokenizer to sample text with", orig.Source)
	}
	if tok.BOS < 0 {
		return "", 0, fmt.Errorf("--sample-tokens: the tokenizer of %s has no BOS token to start sequences from", orig.Source)
	}
	if threads <= 0 {
		threads = goruntime.NumCPU()
	}
	rt, err := runtime.New(orig, runtime.Options{Threads: 1})
	if err != nil {
		return "", 0, fmt.Errorf("--sample-tokens: %w", err)
	}
	var stop []int
	for _, id := range []int{tok.BOS, tok.EOS} {
		if id >= 0 {
			stop = append(stop, id)
		}
	}
	maxNew := orig.Config.SeqLen - 1
	// Sequences are drawn in rounds of one per worker until the total
	// reaches nTokens; a round's sequences are kept in seed order.
	// A sequence may end at once (the model can draw EOS or BOS as its
	// first token: stories260K does for 2 of its first 3000 seeds); it is
	// skipped. Only a long run of them means the model cannot be sampled.
	const maxEmptyRun = 64
	var (
		parts    []string
		total    int
		next     uint64
		emptyRun int
	)
	for total < nTokens {
		round := make([][]int, threads)
		errs := make([]error, threads)
		var wg sync.WaitGroup
		for w := range round {
			wg.Add(1)
			go func(w int, s uint64) {
				defer wg.Done()
				st := rt.NewState(0)
				round[w], errs[w] = rt.Generate(st, []int{tok.BOS}, maxNew, runtime.NewSampler(1, 1, s), stop, nil)
			}(w, seed+next+uint64(w))
		}
		wg.Wait()
		next += uint64(threads)
		for w, out := range round {
			if errs[w] != nil {
				return "", 0, fmt.Errorf("--sample-tokens: %w", errs[w])
			}
			if total >= nTokens {
				break
			}
			if len(out) == 0 {
				if emptyRun++; emptyRun >= maxEmptyRun {
					return "", 0, fmt.Errorf("--sample-tokens: %s ended %d sequences in a row at once (BOS or EOS first): nothing to sample", orig.Source, emptyRun)
				}
				continue
			}
			emptyRun = 0
			parts = append(parts, tok.Decode(out))
			total += len(out)
		}
	}
	return strings.Join(parts, "\n") + "\n", total, nil
}
