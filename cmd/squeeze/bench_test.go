package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func TestBenchSyntheticJSON(t *testing.T) {
	for _, k := range []string{"int8", "float"} {
		o := &benchOptions{Synthetic: "stories260K", Bits: 4, GroupSize: 16, Threads: 1, PromptTokens: 8,
			GenTokens: 4, Reps: 2, StreamMiB: 8, Kernels: kernelFlag{k}, JSON: true}
		var out, errb bytes.Buffer
		if err := runBench(o, nil, &out, &errb); err != nil {
			t.Fatal(err)
		}
		var r benchResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		m, _ := ir.SyntheticPalettized("stories260K", 4, 16, 1)
		var wb int64
		for _, tn := range m.Tensors {
			if len(tn.Shape) == 2 { // tied: the embedding is the classifier
				wb += tn.Bytes()
			}
		}
		if r.WeightBytesPerToken != wb {
			t.Errorf("weight_bytes_per_token %d, want %d", r.WeightBytesPerToken, wb)
		}
		wantK := k
		if !int8Runs() {
			wantK = "float" // the arithmetic this build runs
		}
		if r.PrefillTokensPerS <= 0 || r.DecodeTokensPerS <= 0 || r.StreamBandwidthGBps <= 0 || len(r.DecodeRuns) != 2 || r.Kernels != wantK {
			t.Fatalf("implausible result %+v", r)
		}
		if got := r.DecodeTokensPerS * float64(wb) / 1e9; math.Abs(got-r.BandwidthGBps) > 1e-9*got {
			t.Errorf("bandwidth_gbps %v, want decode x bytes = %v", r.BandwidthGBps, got)
		}
		if math.Abs(r.BandwidthFraction-r.BandwidthGBps/r.StreamBandwidthGBps) > 1e-12 {
			t.Errorf("bandwidth_fraction %v inconsistent", r.BandwidthFraction)
		}
		if len(r.FractionRuns) != len(r.DecodeRuns) || len(r.StreamRuns) != len(r.DecodeRuns) {
			t.Fatalf("%d per-repetition fractions for %d decode and %d probe runs", len(r.FractionRuns), len(r.DecodeRuns), len(r.StreamRuns))
		}
		for i, f := range r.FractionRuns {
			if want := r.DecodeRuns[i] * float64(wb) / 1e9 / r.StreamRuns[i]; math.Abs(f-want) > 1e-12*want {
				t.Errorf("bandwidth_fraction_runs[%d] = %v, want decode run x bytes / probe run = %v", i, f, want)
			}
		}
		if r.PeakRSSBytes < 0 || r.BitsPerWeight < 4 || r.BitsPerWeight > 4.5 {
			t.Errorf("peak rss %d, bits per weight %v", r.PeakRSSBytes, r.BitsPerWeight)
		}
	}
	// Human output names the figures.
	o := &benchOptions{Synthetic: "stories260K", BPW: 32, GroupSize: 16, Threads: 2, PromptTokens: 4, GenTokens: 2, Reps: 1, StreamMiB: 4}
	var out bytes.Buffer
	if err := runBench(o, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"prefill", "decode", "streaming", "peak resident"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestBenchErrors(t *testing.T) {
	base := benchOptions{GroupSize: 16, Threads: 1, PromptTokens: 4, GenTokens: 2, Reps: 1, StreamMiB: 4}
	for _, c := range []struct {
		mod  func(o *benchOptions)
		args []string
		want string
	}{
		{func(o *benchOptions) {}, nil, "missing MODEL"},
		{func(o *benchOptions) { o.Synthetic = "stories260K" }, []string{"x.bin"}, "not both"},
		{func(o *benchOptions) { o.Synthetic = "stories260K"; o.Bits = 5 }, nil, "--bits 5"},
		{func(o *benchOptions) { o.Synthetic = "stories260K"; o.Bits = 4; o.BPW = 4 }, nil, "either --bpw or --bits"},
		{func(o *benchOptions) { o.Synthetic = "stories260K"; o.Kernels = kernelFlag{"fast"} }, nil, "--kernels"},
		{func(o *benchOptions) { o.Synthetic = "stories260K"; o.PromptTokens = 600 }, nil, "context"},
		{func(o *benchOptions) { o.Synthetic = "nope" }, nil, "unknown"},
		{func(o *benchOptions) { o.Threads = 0 }, nil, "must be >= 1"},
		{func(o *benchOptions) { o.BPW = 4 }, []string{"x.bin"}, "--synthetic models only"},
	} {
		o := base
		c.mod(&o)
		var out bytes.Buffer
		err := runBench(&o, c.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %v: error %v, want %q", o, c.args, err, c.want)
		}
	}
}
