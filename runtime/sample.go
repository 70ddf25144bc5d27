package runtime

import (
	"sort"
)

// Sampler picks the next token from logits: argmax at temperature 0, else
// softmax(logits/temp) with top-p (nucleus) truncation, driven by llama2.c's
// xorshift generator so that a seed reproduces llama2.c's run.c output.
type Sampler struct {
	Temp  float32
	TopP  float32
	state uint64
	probs []probIndex
}

type probIndex struct {
	p float32
	i int
}

// NewSampler makes a sampler; seed 0 is replaced by 1 (xorshift needs a
// non-zero state).
func NewSampler(temp, topp float32, seed uint64) *Sampler {
	if seed == 0 {
		seed = 1
	}
	return &Sampler{Temp: temp, TopP: topp, state: seed}
}

func (s *Sampler) randU32() uint32 {
	s.state ^= s.state >> 12
	s.state ^= s.state << 25
	s.state ^= s.state >> 27
	return uint32((s.state * 0x2545F4914F6CDD1D) >> 32)
}

func (s *Sampler) randF32() float32 { return float32(s.randU32()>>8) / 16777216.0 }

// Argmax returns the index of the largest value (first on ties).
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// Sample picks a token; logits are modified in place.
func (s *Sampler) Sample(logits []float32) int {
	if s.Temp == 0 {
		return Argmax(logits)
	}
	for i := range logits {
		logits[i] /= s.Temp
	}
	softmax(logits)
	coin := s.randF32()
	if s.TopP <= 0 || s.TopP >= 1 {
		var cdf float32
		for i, p := range logits {
			cdf += p
			if coin < cdf {
				return i
			}
		}
		return len(logits) - 1
	}
	// top-p: drop tokens below (1-topp)/(n-1), sort descending, keep the
	// smallest prefix whose mass exceeds topp, sample within it.
	cutoff := (1 - s.TopP) / float32(len(logits)-1)
	s.probs = s.probs[:0]
	for i, p := range logits {
		if p >= cutoff {
			s.probs = append(s.probs, probIndex{p, i})
		}
	}
	sort.SliceStable(s.probs, func(a, b int) bool { return s.probs[a].p > s.probs[b].p })
	var cum float32
	last := len(s.probs) - 1
	for i, pi := range s.probs {
		cum += pi.p
		if cum > s.TopP {
			last = i
			break
		}
	}
	r := coin * cum
	var cdf float32
	for i := 0; i <= last; i++ {
		cdf += s.probs[i].p
		if r < cdf {
			return s.probs[i].i
		}
	}
	return s.probs[last].i
}

// Generate feeds the prompt (which should start with BOS) as one batched
// prefill, then samples up to n new tokens, calling emit(prev, next) for
// each; it stops early when the model produces BOS or EOS (as llama2.c stops
// on BOS). It returns the generated tokens.
func (r *Model) Generate(s *State, prompt []int, n int, smp *Sampler, stop []int, emit func(prev, next int)) ([]int, error) {
	logits := make([]float32, r.Cfg.Vocab)
	if len(prompt) == 0 {
		return nil, nil
	}
	if err := r.Forward(s, prompt, logits, false); err != nil {
		return nil, err
	}
	var out []int
	prev := prompt[len(prompt)-1]
	for i := 0; i < n; i++ {
		next := smp.Sample(logits)
		for _, st := range stop {
			if next == st {
				return out, nil
			}
		}
		out = append(out, next)
		if emit != nil {
			emit(prev, next)
		}
		prev = next
		if i == n-1 || s.Pos >= s.MaxSeq {
			break
		}
		if err := r.Forward(s, []int{next}, logits, false); err != nil {
			return out, err
		}
	}
	return out, nil
}
