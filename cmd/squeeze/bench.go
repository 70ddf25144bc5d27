package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

type benchOptions struct {
	Tokenizer    string
	Synthetic    string
	BPW          float64
	Bits         int
	GroupSize    int
	Threads      int
	PromptTokens int
	GenTokens    int
	Reps         int
	StreamMiB    int
	Kernels      kernelFlag
	CPUProfile   string
	JSON         bool
}

func newBenchCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &benchOptions{}
	c := &cobra.Command{
		Use:   "bench MODEL|BUNDLE|--synthetic NAME [--bpw X | --bits N]",
		Short: "Measure prefill and decode speed against this machine's streaming bandwidth",
		Long: `bench runs a prompt of --prompt-tokens through the model (prefill), then
decodes --gen-tokens one at a time, --reps times, and reports medians:
tokens/s, peak resident memory, weight bytes read per decoded token, the
weight bandwidth that implies, the streaming read bandwidth of this machine
measured in the same run (kernels.Sum over a large array on --threads
threads) and the fraction of it the decoder reaches.

A synthetic model (--synthetic NAME) is built at --bpw (or --bits): 32 is
float32, 16 float16, a palette width (1, 2, 3, 4, 6, 8) palettizes every
matrix at that width, any other rate mixes two widths (ir.SyntheticPalettized).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runBench(o, args, stdout, stderr) },
	}
	o.Kernels.bind(c)
	f := c.Flags()
	f.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer file for llama2.c checkpoints (not needed: bench feeds token ids)")
	f.StringVar(&o.Synthetic, "synthetic", "", fmt.Sprintf("benchmark a synthetic model of a named shape (%v)", ir.SyntheticNames()))
	f.Float64Var(&o.BPW, "bpw", 0, "synthetic rate in bits per weight (32 = f32, 16 = f16; default 32)")
	f.IntVar(&o.Bits, "bits", 0, "synthetic index width for every matrix (32, 16, 8, 6, 4, 3, 2, 1)")
	f.IntVar(&o.GroupSize, "group-size", 16, "synthetic: rows per LUT")
	f.IntVar(&o.Threads, "threads", 1, "threads")
	f.IntVar(&o.PromptTokens, "prompt-tokens", 128, "prefill length")
	f.IntVar(&o.GenTokens, "gen-tokens", 32, "tokens decoded one at a time")
	f.IntVar(&o.Reps, "reps", 3, "repetitions (medians are reported)")
	f.IntVar(&o.StreamMiB, "stream-mib", 512, "size of the streaming-bandwidth probe array")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the prefill and decode runs to this file")
	f.BoolVar(&o.JSON, "json", false, "print JSON")
	return c
}

// benchResult is what bench reports (medians over the repetitions).
type benchResult struct {
	Model               string  `json:"model"`
	Kernels             string  `json:"kernels"`
	Impl                string  `json:"impl"`
	Threads             int     `json:"threads"`
	PromptTokens        int     `json:"prompt_tokens"`
	GenTokens           int     `json:"gen_tokens"`
	Reps                int     `json:"reps"`
	BitsPerWeight       float64 `json:"bits_per_weight"`
	PrefillTokensPerS   float64 `json:"prefill_tokens_per_s"`
	DecodeTokensPerS    float64 `json:"decode_tokens_per_s"`
	PeakRSSBytes        int64   `json:"peak_rss_bytes"`
	WeightBytesPerToken int64   `json:"weight_bytes_per_token"`
	BandwidthGBps       float64 `json:"bandwidth_gbps"`
	StreamBandwidthGBps float64 `json:"stream_bandwidth_gbps"`
	BandwidthFraction   float64 `json:"bandwidth_fraction"`
	DecodeBoundTokPerS  float64 `json:"decode_bound_tokens_per_s"`
	LoadAvg             string  `json:"loadavg,omitempty"`
	// StartupMS is open (map, parse, verify the manifest) to a runtime
	// ready to run; FirstTokenMS adds the first one-token forward pass,
	// which pages the weights in (files only, not --synthetic).
	StartupMS    float64   `json:"startup_ms,omitempty"`
	FirstTokenMS float64   `json:"first_token_ms,omitempty"`
	PrefillRuns  []float64 `json:"prefill_runs"`
	DecodeRuns   []float64 `json:"decode_runs"`
	StreamRuns   []float64 `json:"stream_runs"`
	// FractionRuns is each repetition's decode bandwidth over the probe
	// taken just before it: on a shared machine the probe drifts between
	// repetitions, and a ratio of adjacent measurements drifts less than
	// bandwidth_fraction (the ratio of the medians).
	FractionRuns []float64 `json:"bandwidth_fraction_runs"`
}

func (o *benchOptions) load(args []string) (*ir.Model, error) {
	switch {
	case o.Synthetic != "" && len(args) > 0:
		return nil, fmt.Errorf("give either MODEL or --synthetic, not both")
	case o.Synthetic == "" && len(args) == 0:
		return nil, fmt.Errorf("missing MODEL (a llama2.c .bin, a GGUF file, a Hugging Face directory or a .sqz bundle) or --synthetic NAME")
	case o.Synthetic == "" && (o.BPW != 0 || o.Bits != 0):
		return nil, fmt.Errorf("--bpw and --bits apply to --synthetic models only")
	case o.Synthetic != "":
		if o.BPW != 0 && o.Bits != 0 {
			return nil, fmt.Errorf("give either --bpw or --bits, not both")
		}
		rate := o.BPW
		if o.Bits != 0 {
			ok := o.Bits == 16 || o.Bits == 32
			for _, b := range ir.PaletteBits {
				ok = ok || b == o.Bits
			}
			if !ok {
				return nil, fmt.Errorf("--bits %d: expected 32, 16 or one of %v", o.Bits, ir.PaletteBits)
			}
			rate = float64(o.Bits)
		}
		if rate == 0 {
			rate = 32
		}
		return ir.SyntheticPalettized(o.Synthetic, rate, o.GroupSize, 1)
	}
	return formats.Load(args[0], formats.LoadOptions{Tokenizer: o.Tokenizer})
}

func runBench(o *benchOptions, args []string, stdout, stderr io.Writer) error {
	if o.Threads < 1 || o.PromptTokens < 1 || o.GenTokens < 1 || o.Reps < 1 || o.StreamMiB < 1 {
		return fmt.Errorf("--threads, --prompt-tokens, --gen-tokens, --reps and --stream-mib must be >= 1 (got %d, %d, %d, %d, %d)",
			o.Threads, o.PromptTokens, o.GenTokens, o.Reps, o.StreamMiB)
	}
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	defer restore()
	tOpen := time.Now()
	m, err := o.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	c := m.Config
	if o.PromptTokens+o.GenTokens > c.SeqLen {
		return fmt.Errorf("--prompt-tokens %d + --gen-tokens %d exceed the model's context of %d", o.PromptTokens, o.GenTokens, c.SeqLen)
	}
	rt, err := runtime.New(m, runtime.Options{Threads: o.Threads})
	if err != nil {
		return err
	}
	ready := time.Since(tOpen)
	res := benchResult{Model: m.Source, Kernels: kernels.EffectiveMode().String(), Impl: kernels.Impl(),
		Threads: o.Threads, PromptTokens: o.PromptTokens, GenTokens: o.GenTokens, Reps: o.Reps}
	var wb, wn int64
	for name, t := range m.Tensors {
		if len(t.Shape) != 2 || (name == ir.NameTokenEmbd && !c.TiedEmbed) {
			continue
		}
		wb += t.Bytes()
		wn += int64(t.Elems())
	}
	res.WeightBytesPerToken = wb
	res.BitsPerWeight = 8 * float64(wb) / float64(max(wn, 1))

	prompt := make([]int, o.PromptTokens)
	for i := range prompt {
		prompt[i] = (1 + i*7919) % c.Vocab
	}
	logits := make([]float32, c.Vocab)
	s := rt.NewState(o.PromptTokens + o.GenTokens)
	// Warm-up: builds lazily made tables and touches every weight page.
	tFirst := time.Now()
	if err := rt.Forward(s, prompt[:1], logits, false); err != nil {
		return err
	}
	if o.Synthetic == "" { // a synthetic model's "open" is generating its weights
		res.StartupMS = float64(ready.Microseconds()) / 1e3
		res.FirstTokenMS = float64((ready + time.Since(tFirst)).Microseconds()) / 1e3
	}
	if o.CPUProfile != "" {
		pf, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for rep := 0; rep < o.Reps; rep++ {
		// The probe array is freed and the peak-RSS mark reset (Linux
		// clear_refs) before the model runs, so peak_rss_bytes is the
		// model's own.
		res.StreamRuns = append(res.StreamRuns, streamProbe(o.StreamMiB, o.Threads))
		s.Reset()
		t0 := time.Now()
		if err := rt.Forward(s, prompt, logits, false); err != nil {
			return err
		}
		res.PrefillRuns = append(res.PrefillRuns, float64(o.PromptTokens)/time.Since(t0).Seconds())
		tok := runtime.Argmax(logits)
		t0 = time.Now()
		for i := 0; i < o.GenTokens; i++ {
			if err := rt.Forward(s, []int{tok}, logits, false); err != nil {
				return err
			}
			tok = runtime.Argmax(logits)
		}
		res.DecodeRuns = append(res.DecodeRuns, float64(o.GenTokens)/time.Since(t0).Seconds())
	}
	res.PrefillTokensPerS = median(res.PrefillRuns)
	for i, d := range res.DecodeRuns {
		if g := res.StreamRuns[i]; g > 0 {
			res.FractionRuns = append(res.FractionRuns, d*float64(wb)/1e9/g)
		}
	}
	res.DecodeTokensPerS = median(res.DecodeRuns)
	res.StreamBandwidthGBps = median(res.StreamRuns)
	res.BandwidthGBps = res.DecodeTokensPerS * float64(wb) / 1e9
	if res.StreamBandwidthGBps > 0 {
		res.BandwidthFraction = res.BandwidthGBps / res.StreamBandwidthGBps
		res.DecodeBoundTokPerS = res.StreamBandwidthGBps * 1e9 / float64(wb)
	}
	res.PeakRSSBytes = peakRSS()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.TrimSpace(string(b))
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	fmt.Fprintf(w, "%s: %.3f bits per weight, kernels %s/%s, %d thread(s), medians of %d\n",
		res.Model, res.BitsPerWeight, res.Impl, res.Kernels, res.Threads, res.Reps)
	fmt.Fprintf(w, "prefill %d tokens: %10.1f tokens/s\n", o.PromptTokens, res.PrefillTokensPerS)
	fmt.Fprintf(w, "decode  %d tokens: %10.1f tokens/s (bound at stream bandwidth: %.1f)\n", o.GenTokens, res.DecodeTokensPerS, res.DecodeBoundTokPerS)
	fmt.Fprintf(w, "weights per token: %s; weight bandwidth %.2f GB/s of %.2f GB/s streaming = %.2f (per repetition: %s)\n",
		humanBytes(wb), res.BandwidthGBps, res.StreamBandwidthGBps, res.BandwidthFraction, fmtRuns(res.FractionRuns))
	fmt.Fprintf(w, "peak resident memory: %s; load average %s\n", humanBytes(res.PeakRSSBytes), res.LoadAvg)
	return nil
}

// fmtRuns prints per-repetition ratios as "0.71 0.74 0.69".
func fmtRuns(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strings.Join(parts, " ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// streamProbe allocates and fills a probe array of mib MiB, measures the
// streaming bandwidth over it, then returns the memory to the OS and
// resets the peak-RSS mark.
func streamProbe(mib, threads int) float64 {
	probe := make([]float32, mib<<20/4)
	for i := range probe {
		probe[i] = float32(i & 7)
	}
	g := streamGBps(probe, threads)
	probe = nil
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return g
}

// streamGBps is the streaming read bandwidth over a (GB/s, 1e9 bytes):
// kernels.StreamSumBuf on one thread; on several, each thread sums its
// contiguous share, best of 3 passes of kernels.Sum (one stream per thread)
// and 3 of kernels.Sum2 (two per thread, as the decode kernels read).
func streamGBps(a []float32, threads int) float64 {
	if threads <= 1 {
		return kernels.StreamSumBuf(a, 0)
	}
	threads = min(threads, goruntime.NumCPU()*4)
	best := 0.0
	chunk := (len(a) + threads - 1) / threads
	sums := make([]float32, threads)
	for pass := 0; pass < 6; pass++ {
		sum := kernels.Sum
		if pass%2 == 1 {
			sum = kernels.Sum2
		}
		var wg sync.WaitGroup
		t0 := time.Now()
		for t := 0; t < threads; t++ {
			lo, hi := t*chunk, min(len(a), (t+1)*chunk)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[t] = sum(a[lo:hi])
			}()
		}
		wg.Wait()
		if d := time.Since(t0).Seconds(); d > 0 {
			best = max(best, float64(4*len(a))/d/1e9)
		}
	}
	return best
}

// peakRSS reads VmHWM from /proc/self/status (0 where there is none).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n << 10 // kB
				}
			}
		}
	}
	return 0
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
