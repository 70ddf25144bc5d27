package main

import (
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats"
)

// TestSampleText: the sampled text is the same for any thread count,
// reaches the requested size, and reads as the model's own text (it
// tokenizes back to about as many tokens as were sampled).
func TestSampleText(t *testing.T) {
	m, err := formats.Load("../../testdata/stories260K/stories260K.bin", formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, na, err := sampleText(m, 3000, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, nb, err := sampleText(m, 3000, 7, 2)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := sampleText(m, 3000, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || na != nb {
		t.Fatalf("1 and 2 threads sampled different text (%d vs %d tokens)", na, nb)
	}
	if a == c {
		t.Fatal("seeds 7 and 8 sampled the same text")
	}
	if na < 3000 || na > 3000+m.Config.SeqLen {
		t.Fatalf("sampled %d tokens, expected 3000 .. 3000 + one sequence", na)
	}
	re := len(m.Tokenizer.Encode(a, false))
	if re < na*9/10 || re > na*11/10 {
		t.Fatalf("sampled %d tokens, but the text tokenizes to %d", na, re)
	}
	if !strings.Contains(a, "Once upon a time") {
		t.Fatalf("text sampled from stories260K has no \"Once upon a time\": %.200q", a)
	}
	if s, n, err := sampleText(m, 0, 7, 2); s != "" || n != 0 || err != nil {
		t.Fatalf("0 tokens: %q, %d, %v", s, n, err)
	}
	// Seed 849's sequence ends at once (EOS first): it is skipped, not an
	// error (it used to stop --sample-tokens on one thread), and the text
	// is the same on one and two threads.
	d, nd, err := sampleText(m, 300, 849, 1)
	if err != nil {
		t.Fatalf("a sequence that ends at once: %v", err)
	}
	e, ne, err := sampleText(m, 300, 849, 2)
	if err != nil || d != e || nd != ne || nd < 300 {
		t.Fatalf("seed 849: 1 thread %d tokens, 2 threads %d tokens (%v), same text %v", nd, ne, err, d == e)
	}
	f, _, err := sampleText(m, 300, 850, 1)
	if err != nil || d != f {
		t.Fatalf("seed 849 (empty first sequence) should sample seed 850's text: %v", err)
	}
}
