package eval

import (
	"math"
	"os"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/runtime"
)

// llama.cpp's llama-perplexity on stories260K f32, dev.txt, -c 256
// (../shared/anchors/llama.cpp.md): PPL 4.9156 over 644 windows.
const llamaCppPPL = 4.9156

func TestPerplexityMatchesLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("whole dev.txt evaluation")
	}
	m, err := llama2c.Load("../testdata/stories260K/stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text, err := os.ReadFile("../testdata/tinystories/dev.txt")
	if err != nil {
		t.Fatal(err)
	}
	toks := m.Tokenizer.Encode(string(text), true)
	// llama.cpp made 644 full windows: its tokenizer gave 164,865..165,120
	// tokens with BOS. Ours must land in the same range.
	if len(toks) < 644*256 || len(toks) >= 645*256 {
		t.Fatalf("dev.txt tokenizes to %d tokens (BOS included); llama.cpp's count is in [164864, 165120)", len(toks))
	}
	rt, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(rt, nil, toks, m.Tokenizer.BOS, Options{Ctx: 256, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ppl %.4f nll %.5f tokens %d windows %d (text tokens %d)", res.PPL, res.NLL, res.Tokens, res.Windows, res.TextTokens)
	if res.Windows != 644 {
		t.Errorf("windows = %d, llama.cpp made 644", res.Windows)
	}
	if rel := math.Abs(res.PPL-llamaCppPPL) / llamaCppPPL; rel > 0.005 {
		t.Errorf("PPL %.4f is %.2f%% from llama.cpp's %.4f (allowed 0.5%%)", res.PPL, 100*rel, llamaCppPPL)
	}
}

func TestSelfComparison(t *testing.T) {
	m, err := llama2c.Load("../testdata/stories260K/stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text, _ := os.ReadFile("../testdata/tinystories/calib.txt")
	toks := m.Tokenizer.Encode(string(text), true)
	rt, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Evaluate(rt, rt, toks, m.Tokenizer.BOS, Options{Ctx: 128, Workers: 2, MaxWindows: 6})
	if err != nil {
		t.Fatal(err)
	}
	if res.Windows != 6 || res.Tokens != 6*63 {
		t.Fatalf("windows %d tokens %d, want 6 and 6*63", res.Windows, res.Tokens)
	}
	// Against itself the KL divergence is zero and the top token always agrees.
	if *res.KLDMean > 1e-9 || *res.KLDP99 > 1e-9 || *res.Top1Agree != 1 {
		t.Errorf("self-comparison: kld %.3g p99 %.3g, top-1 agreement %.4f", *res.KLDMean, *res.KLDP99, *res.Top1Agree)
	}
	// The reference's perplexity on the same tokens is the model's own
	// against itself, and what evaluating the reference alone gives.
	alone, err := Evaluate(rt, nil, toks, m.Tokenizer.BOS, Options{Ctx: 128, Workers: 1, MaxWindows: 6})
	if err != nil {
		t.Fatal(err)
	}
	if *res.RefPPL != res.PPL || *res.RefNLL != res.NLL || alone.NLL != res.NLL || alone.RefPPL != nil {
		t.Errorf("reference NLL %v (PPL %v), model's %v, alone %v (ref %v)", *res.RefNLL, *res.RefPPL, res.NLL, alone.NLL, alone.RefPPL)
	}
	if _, err := Evaluate(rt, nil, toks[:100], m.Tokenizer.BOS, Options{Ctx: 128}); err == nil {
		t.Error("a text shorter than one window must be refused")
	}
}
