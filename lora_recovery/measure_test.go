package lorarecovery

import (
	"os"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

// Measurements, skipped unless LORA_MEASURE=1 (they take minutes):
//
//	LORA_MEASURE=1 go test ./lora_recovery/ -run TestMeasure -v -timeout 30m

// TestMeasureStories260K: a full recovery run on stories260K (real model,
// crude LUT2 student): 300 steps x 8 windows x 128 tokens over ~50k
// calibration tokens.
func TestMeasureStories260K(t *testing.T) {
	if os.Getenv("LORA_MEASURE") == "" {
		t.Skip("set LORA_MEASURE=1")
	}
	teacher := loadLlama2c(t, stories260K, tok512)
	student := palettize2(teacher)
	tokens := calibTokens(t, teacher, 50000)
	_, rep, err := Train(teacher, student, tokens, Options{Rank: 8, Steps: 300, Batch: 8, SeqLen: 128, LR: 3e-3, Seed: 1, EvalEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stories260K: %d steps, %d train tokens, %v total (%v in steps), %.1f us per training token (threads %d); held-out KL none %.4f, init %.4f, best %.4f @%d",
		rep.Steps, rep.TrainTokens, rep.Duration, rep.StepTime, rep.SecondsPerToken*1e6, rep.Threads, rep.BaseHeldOutKL, rep.InitHeldOutKL, rep.BestHeldOutKL, rep.BestStep)
}

// TestMeasureSynthetic110M: stories110M shapes (synthetic weights), with
// LORA_LAYERS layers (default 2) to keep it short; zero init (the SVD init
// of 768x2048 residuals is not what is timed here).
func TestMeasureSynthetic110M(t *testing.T) {
	if os.Getenv("LORA_MEASURE") == "" {
		t.Skip("set LORA_MEASURE=1")
	}
	c := ir.SyntheticConfigs["stories110M"]
	c.Layers = 2
	if s := os.Getenv("LORA_LAYERS"); s == "12" {
		c.Layers = 12
	}
	teacher := randomModel(c, 1, 0.02)
	student := palettize2(teacher)
	tokens := make([]int, 128*6)
	for i := range tokens {
		tokens[i] = (i*7919 + 13) % c.Vocab
	}
	_, rep, err := Train(teacher, student, tokens, Options{Rank: 8, Steps: 2, Batch: 2, SeqLen: 128, Seed: 1, Init: InitZero, EvalEvery: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("synthetic stories110M, %d layers: %d steps x %d x %d tokens, %v in steps, %v total (incl. teacher pass over %d windows and 3 held-out evals), %.0f us per training token",
		c.Layers, rep.Steps, rep.Batch, rep.SeqLen, rep.StepTime, rep.Duration, rep.TrainWindows+rep.HeldOutWindows, rep.SecondsPerToken*1e6)
}
