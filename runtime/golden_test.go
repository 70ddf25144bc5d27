package runtime

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/ir"
)

const storiesDir = "../testdata/stories260K/"

func loadStories(t testing.TB) *ir.Model {
	t.Helper()
	m, err := llama2c.Load(storiesDir+"stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// recorded returns the text inside the first ``` block after marker in stories260K.md.
func recorded(t *testing.T, marker string) string {
	b, err := os.ReadFile(storiesDir + "stories260K.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("marker %q not in stories260K.md", marker)
	}
	s = s[i+len(marker):]
	return strings.TrimSuffix(s[:strings.Index(s, "```")], "\n")
}

// generateLikeRunC reproduces llama2.c run.c's generate(): 256 steps in all,
// the prompt included, printing pieces.
func generateLikeRunC(t *testing.T, m *ir.Model, smp *Sampler, threads int) string {
	rt, err := New(m, Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	prompt := m.Tokenizer.Encode("Once upon a time", true)
	s := rt.NewState(0)
	var sb strings.Builder
	sb.WriteString(m.Tokenizer.Decode(prompt[1:]))
	_, err = rt.Generate(s, prompt, 256-len(prompt)+1, smp, []int{m.Tokenizer.BOS}, func(prev, next int) {
		sb.WriteString(m.Tokenizer.Piece(prev, next))
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func TestGreedyMatchesLlama2c(t *testing.T) {
	m := loadStories(t)
	want := recorded(t, "-t 0.0\n")
	for _, th := range []int{1, 2} {
		got := generateLikeRunC(t, m, NewSampler(0, 0.9, 1), th)
		if got != want {
			t.Fatalf("threads=%d greedy text differs from llama2.c's:\n got: %q\nwant: %q", th, got, want)
		}
	}
}

// The top-p sample recorded in stories260K.md (t=1, p=0.9, seed 133742) was
// made by an older run.c and does not reproduce with the current sampler
// (it diverges at the 12th generated token), so sampling is tested for
// determinism and for top-p's contract instead of against that text.
func TestSamplingSeeded(t *testing.T) {
	m := loadStories(t)
	a := generateLikeRunC(t, m, NewSampler(1.0, 0.9, 133742), 1)
	b := generateLikeRunC(t, m, NewSampler(1.0, 0.9, 133742), 2)
	c := generateLikeRunC(t, m, NewSampler(1.0, 0.9, 7), 1)
	if a != b {
		t.Fatalf("same seed, different thread count, different text:\n%q\n%q", a, b)
	}
	if a == c {
		t.Fatalf("different seeds gave the same text %q", a)
	}
}

func TestTopPKeepsNucleus(t *testing.T) {
	// probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 may only pick the first two
	logits := []float32{float32(math.Log(0.5)), float32(math.Log(0.3)), float32(math.Log(0.15)), float32(math.Log(0.05))}
	s := NewSampler(1, 0.7, 42)
	count := make([]int, 4)
	for i := 0; i < 4000; i++ {
		l := append([]float32(nil), logits...)
		count[s.Sample(l)]++
	}
	if count[2] != 0 || count[3] != 0 {
		t.Fatalf("top-p 0.7 sampled outside the nucleus: %v", count)
	}
	if r := float64(count[0]) / float64(count[0]+count[1]); r < 0.58 || r > 0.67 {
		t.Fatalf("nucleus renormalisation off: P(first) = %.3f, want 0.625", r)
	}
}

type goldenFile struct {
	PromptTokens []int `json:"prompt_tokens"`
	Positions    []struct {
		Pos        int       `json:"pos"`
		InputToken int       `json:"input_token"`
		Argmax     int       `json:"argmax"`
		Logits     []float32 `json:"logits"`
	} `json:"positions"`
}

func TestGoldenLogits(t *testing.T) {
	m := loadStories(t)
	b, err := os.ReadFile(storiesDir + "golden_logits_once_upon_a_time.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if got := m.Tokenizer.Encode("Once upon a time", true); !equalInts(got, g.PromptTokens) {
		t.Fatalf("prompt tokens %v, llama2.c gives %v", got, g.PromptTokens)
	}
	// Token by token (decode path) and all at once (batched prefill).
	for _, batched := range []bool{false, true} {
		rt, err := New(m, Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		s := rt.NewState(0)
		toks := make([]int, len(g.Positions))
		for i, p := range g.Positions {
			toks[i] = p.InputToken
		}
		V := m.Config.Vocab
		all := make([]float32, len(toks)*V)
		if batched {
			if err := rt.Forward(s, toks, all, true); err != nil {
				t.Fatal(err)
			}
		} else {
			for i, tok := range toks {
				if err := rt.Forward(s, []int{tok}, all[i*V:(i+1)*V], false); err != nil {
					t.Fatal(err)
				}
			}
		}
		worst := 0.0
		for i, p := range g.Positions {
			if p.Pos != i {
				t.Fatalf("golden position %d out of order", p.Pos)
			}
			got := all[i*V : (i+1)*V]
			for j, w := range p.Logits {
				worst = math.Max(worst, math.Abs(float64(got[j]-w)))
			}
			if a := Argmax(got); a != p.Argmax {
				t.Errorf("batched=%v pos %d: argmax %d, llama2.c %d", batched, i, a, p.Argmax)
			}
		}
		if worst > 1e-4 {
			t.Errorf("batched=%v: max |logit - llama2.c| = %g over %d positions, want <= 1e-4", batched, worst, len(toks))
		}
		t.Logf("batched=%v: max abs logit error vs llama2.c %.2g", batched, worst)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
