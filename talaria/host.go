package talaria

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/ir"
	sqzrt "github.com/squeeze-ml/squeeze/runtime"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// ProbeVersion names the calibration probes; a cached host profile made by
// other probes is recalibrated. Bump it when the probes or the runtime
// kernels they call change.
const ProbeVersion = "probe-v15:kernels.MatVecInput(f32 ring>LLC two row streams,f32,lut; int8 lut2 integer activation scales; input prepared once),kernels.MatMulInput(64 tokens, batch prepared once across threads),attention kernels(LLC),runtime.SplitRows"

// HostOptions control the host calibration.
type HostOptions struct {
	// CacheDir holds host-profile.json (default os.UserCacheDir()/squeeze).
	CacheDir string
	// Recalibrate ignores a cached profile.
	Recalibrate bool
	// NoCache neither reads nor writes the cache.
	NoCache bool
	// Threads is the number of worker goroutines the probes split rows
	// over, as the runtime does (default GOMAXPROCS).
	Threads int
	// Quick uses small probes (for tests): the figures are noisier.
	Quick bool
	// Log receives one line per probe (nil: quiet).
	Log io.Writer
}

// HostCachePath is where the host profile is cached.
func HostCachePath(opt HostOptions) (string, error) {
	dir := opt.CacheDir
	if dir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("host profile: no user cache dir: %w", err)
		}
		dir = filepath.Join(d, "squeeze")
	}
	return filepath.Join(dir, "host-profile.json"), nil
}

// HostKey identifies this machine, the kernels (implementation and
// palettized arithmetic) and the probe set for the cache.
func HostKey(threads int) string {
	return fmt.Sprintf("%s/%s/%s/threads=%d/kernels=%s-%s/%s", runtime.GOOS, runtime.GOARCH, cpuModel(), threads, kernels.Impl(), kernels.CurrentMode(), ProbeVersion)
}

// HostDevice returns the host profile: the cached one when its key matches
// this machine, else a fresh calibration (written to the cache).
func HostDevice(opt HostOptions) (*Device, error) {
	if opt.Threads <= 0 {
		opt.Threads = runtime.GOMAXPROCS(0)
	}
	path, err := HostCachePath(opt)
	if err != nil {
		return nil, err
	}
	if !opt.NoCache && !opt.Recalibrate {
		if d, err := LoadDevice(path); err == nil && d.Calibration != nil && d.Calibration.HostKey == HostKey(opt.Threads) {
			return d, nil
		}
	}
	d, err := CalibrateHost(opt)
	if err != nil {
		return nil, err
	}
	if !opt.NoCache {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("host profile: %w", err)
		}
		var buf bytes.Buffer
		if err := WriteDevice(&buf, d); err != nil {
			return nil, err
		}
		if err := fileio.WriteAtomic(path, func(f *os.File) error { _, err := f.Write(buf.Bytes()); return err }); err != nil {
			return nil, fmt.Errorf("host profile: %w", err)
		}
	}
	return d, nil
}

// CalibrateHost measures this machine with short micro-benchmarks that call
// what the runtime's kernels call, with rows split over goroutines exactly
// as runtime.linear splits a linear op (linearSplit):
//   - DRAM bandwidth: kernels.MatVec over a ring of 2048x768 float32
//     matrices (the stories110M FFN shape class, 6 MiB each) whose total is
//     at least 4x the last-level cache, so every matrix comes from DRAM as
//     a decode step's weights do; the rate is bytes over the median time
//     of one MatVec (minus the dispatch overhead);
//   - float32 FMA throughput: kernels.MatVec on a cache-resident 256x768
//     f32 matrix on one goroutine, times the threads;
//   - LUT-decode throughput per index width: kernels.MatVec on a 2048x768
//     palettized tensor packed with ir.PackIndices (the decode ops' shape
//     class; LUT decoding, not DRAM, bounds it);
//   - LUT group overhead: the same 4-bit MatVec with one LUT per row
//     against one LUT for the whole tensor;
//   - per-op dispatch overhead: fanning a tiny MatVec out to the worker
//     goroutines and waiting for them;
//   - split-op overhead: what a real split costs beyond that (the workers
//     must run on the other cores): a cache-resident 256x768 MatVec split
//     as runtime.linear splits it, against 1/T of its one-goroutine time;
//   - attention FLOP rate: the runtime's decode attention (the attention
//     kernels over a head-major cache; heads interleaved over the threads)
//     for 12 heads of 64 at context 256, the KV cache in the LLC (its
//     bytes are the memory term's);
//   - product FLOP rate per weight encoding: kernels.MatMul of 64 tokens
//     on a cache-resident 1024x768 tensor (f32, f16, each LUT width), the
//     compute term of linears (matmul_gflops).
//
// Measured figures are achieved rates, so the efficiency factors are 1.
// Measure (`squeeze profile --measure`) checks the result against the
// runtime's own per-op times.
func CalibrateHost(opt HostOptions) (*Device, error) {
	if opt.Threads <= 0 {
		opt.Threads = runtime.GOMAXPROCS(0)
	}
	T := opt.Threads
	logf := func(format string, a ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, format+"\n", a...)
		}
	}
	// The probes that stand in for decode ops (the split overhead, the
	// DRAM ring, the LUT widths, attention) take one sample each in turn,
	// round after round, for window: each median then spans the same few
	// seconds of a shared machine's load, as a measured decode run does.
	minDur, window := 60*time.Millisecond, 3*time.Second
	ringBytes := max(4*cacheBytes(), 64<<20)
	lutRows := 2048 // the stories110M FFN shape class, as the decode ops run it
	if opt.Quick {
		minDur, window, ringBytes, lutRows = 3*time.Millisecond, 20*time.Millisecond, 8<<20, 128
	}
	overUs := probeDispatch(T, opt.Quick)
	logf("host: op dispatch overhead %.2f us", overUs)

	rng := rand.New(rand.NewPCG(1, 2))
	split1, splitT := splitProbe(T)
	ring, nmat := ringProbe(ringBytes, T)
	attnStep, attnFLOPs := attentionProbe(0, T)
	samplers := []*sampler{{step: split1}, {step: splitT}, {step: ring}}
	lutS := map[int]*sampler{}
	var lutElems int
	for _, b := range ir.PaletteBits {
		t := lutTensor(rng, b, lutRows, 768, lutRows)
		lutElems = t.Elems()
		lutS[b] = &sampler{step: matVecProbe(t, T)}
		samplers = append(samplers, lutS[b])
	}
	for i := 0; i < nmat; i++ { // warm-up: page tables, goroutines, one pass of the ring
		ring()
	}
	for _, sm := range samplers {
		sm.step()
	}
	rounds := 0
	for start := time.Now(); rounds < 5 || time.Since(start) < window; rounds++ {
		for _, sm := range samplers {
			sm.ts = append(sm.ts, sm.step())
		}
	}
	oneSec := median(samplers[0].ts)
	parUs := 0.0
	if T > 1 {
		parUs = max(0, (median(samplers[1].ts)-oneSec/float64(T))*1e6-overUs)
	}
	logf("host: split-op overhead %.2f us (%d threads; %d rounds of the decode-op probes)", parUs, T, rounds)
	// Every split probe pays both overheads, which the cost model adds back
	// per op; the FMA rate is the one-goroutine 256x768 MatVec of the split
	// probe (cache resident) times the threads.
	splitUs := overUs + parUs
	less := func(sec float64) float64 { return max(sec-splitUs/1e6, sec/10) }
	bw := float64(2048*768*4) / less(median(samplers[2].ts))
	logf("host: DRAM MatVec read %.2f GB/s (%d x 2048x768 f32 = %d MiB ring, %d threads)", bw/1e9, nmat, nmat*2048*768*4>>20, T)
	flops := float64(T) * 2 * 256 * 768 / oneSec
	logf("host: f32 MatVec %.2f GFLOP/s", flops/1e9)
	// Attention alone, step after step: taken between the other probes its
	// rate read 6-7 GFLOP/s against 14-21 alone (after the slow lut6/lut8
	// probes most), while the runtime's own TinyLlama decode attention ran
	// at ~30; its KV bytes are the memory term's.
	var ats []float64
	attnStep()
	for start := time.Now(); len(ats) < 5 || time.Since(start) < minDur; {
		ats = append(ats, attnStep())
	}
	attn := attnFLOPs / median(ats)
	logf("host: decode attention %.3f GFLOP/s (KV cache in the LLC)", attn/1e9)
	lut := map[string]float64{}
	for _, b := range ir.PaletteBits {
		lut[strconv.Itoa(b)] = float64(lutElems) / less(median(lutS[b].ts)) / 1e9
		logf("host: lut%d MatVec %.3f Gweights/s", b, lut[strconv.Itoa(b)])
	}
	// Multi-token products per weight encoding, in the arithmetic the
	// runtime runs (kernels.CurrentMode): each alone, after the decode-op
	// rounds (a slow width must not thin out their samples).
	mmRows, mmTok, mmDur := 1024, 64, 250*time.Millisecond
	if opt.Quick {
		mmRows, mmTok, mmDur = 128, 8, 2*time.Millisecond
	}
	mm := map[string]float64{}
	fw := make([]float32, mmRows*768)
	for i := range fw {
		fw[i] = float32(rng.NormFloat64() * 0.02)
	}
	ft := ir.NewF32("probe.mm.f32", fw, mmRows, 768)
	mm["f32"] = matMulRate(ft, T, mmTok, mmDur) / 1e9
	mm["f16"] = matMulRate(f16Tensor("probe.mm.f16", fw, mmRows, 768), T, mmTok, mmDur) / 1e9
	for _, b := range ir.PaletteBits {
		mm[strconv.Itoa(b)] = matMulRate(lutTensor(rng, b, mmRows, 768, 16), T, mmTok, mmDur) / 1e9
	}
	logf("host: %d-token products (GFLOP/s): f32 %.1f, f16 %.1f, lut2 %.1f, lut3 %.1f, lut4 %.1f, lut8 %.1f", mmTok,
		mm["f32"], mm["f16"], mm["2"], mm["3"], mm["4"], mm["8"])

	// Per LUT group, on one goroutine (a split of this small tensor would
	// be mostly overhead); the groups of an op are spread over the threads.
	one := timeMatVec(lutTensor(rng, 4, 64, 1024, 64), 1, minDur, 0)
	per := timeMatVec(lutTensor(rng, 4, 64, 1024, 1), 1, minDur, 0)
	groupNs := max(0, (per-one)/63*1e9/float64(T))
	logf("host: LUT group overhead %.1f ns", groupNs)

	d := &Device{
		Schema: DeviceSchema, Name: "host", Class: ClassCPU,
		Description:     fmt.Sprintf("this machine (%s), measured with the runtime's reference kernels", cpuModel()),
		ActBytes:        4,
		KVBytes:         4,
		MemBandwidthGBs: bw / 1e9, MemEfficiency: 1,
		MemoryBytes: memTotal(),
		PeakTFLOPs:  flops / 1e12, ComputeEfficiency: 1,
		OnChipBytes:          cacheBytes(),
		LUTDecodeGElemS:      lut,
		LUTGroupOverheadNs:   groupNs,
		OpOverheadUs:         overUs,
		AttentionGFLOPs:      attn / 1e9,
		ParallelOpOverheadUs: parUs,
		MatMulGFLOPs:         mm,
		DRAMPJPerByte:        40, OnChipPJPerByte: 1.25, PJPerFLOP: 2.3,
		Calibration: &Calibration{HostKey: HostKey(T), Measured: time.Now().UTC().Format(time.RFC3339),
			Threads: T, GoVersion: runtime.Version(), Probe: ProbeVersion},
	}
	q := ""
	if opt.Quick {
		q = " (quick probe)"
	}
	d.Sources = map[string]string{
		"act_bytes":               "the squeeze runtime computes activations in float32 (ir cost model)",
		"kv_bytes":                "the squeeze runtime keeps a float32 KV cache (ir.Config.KVCacheBytes)",
		"mem_bandwidth_gbs":       fmt.Sprintf("measured%s: bytes / median time of kernels.MatVec over a ring of %d 2048x768 float32 matrices (%d MiB, > the LLC), rows split as runtime.linear splits them over %d threads", q, nmat, nmat*2048*768*4>>20, T),
		"mem_efficiency":          "1: the bandwidth is an achieved (measured) figure",
		"memory_bytes":            "MemTotal of /proc/meminfo (0 -> 16 GiB when unreadable)",
		"peak_tflops":             fmt.Sprintf("measured%s: %d threads x 2 x 256 x 768 FLOPs / median time of kernels.MatVec on a cache-resident 256x768 float32 matrix on one goroutine", q, T),
		"compute_efficiency":      "1: the FLOP rate is an achieved (measured) figure",
		"onchip_bytes":            "largest CPU cache in /sys/devices/system/cpu/cpu0/cache (8 MiB when unreadable)",
		"lut_decode_gelem_s":      fmt.Sprintf("measured%s: weights / (median time of kernels.MatVec on %dx768 palettized tensors packed with ir.PackIndices, one LUT, rows split as runtime.linear splits them over %d threads, less op_overhead_us)", q, lutRows, T),
		"lut_group_overhead_ns":   fmt.Sprintf("measured%s: median one-goroutine 4-bit 64x1024 MatVec time with 64 LUTs minus with 1 LUT, over 63 groups and %d threads (clamped at 0)", q, T),
		"op_overhead_us":          fmt.Sprintf("measured%s: median time to fan a 1x16 MatVec out to %d goroutines and wait", q, T),
		"attention_gflops":        fmt.Sprintf("measured%s: ir FLOPs of a decode attention step (12 heads x 64, context 256) / median time of the runtime's attention (its kernels over a head-major cache, as in attentionProbe) over two KV caches that stay in the LLC (the memory term charges the cache's bytes), %d threads", q, T),
		"matmul_gflops":           fmt.Sprintf("measured%s: 2 x rows x 768 x %d FLOPs / median time of kernels.MatMul of %d tokens on a cache-resident %dx768 tensor per encoding (palettized: random indices, LUT groups of 16 rows), rows split as runtime.linear splits them over %d threads, in the %s arithmetic", q, mmTok, mmTok, mmRows, T, kernels.CurrentMode()),
		"parallel_op_overhead_us": fmt.Sprintf("measured%s: median time of a cache-resident 256x768 float32 MatVec split over %d threads as runtime.linear splits it (runtime.SplitRows), less 1/%d of its median single-goroutine time and op_overhead_us (runs alternate)", q, T, T),
		"dram_pj_per_byte":        "ASSUMPTION: 5 pJ/bit DRAM access (not measured; see docs/TALARIA.md)",
		"onchip_pj_per_byte":      "Horowitz, ISSCC 2014: 8 KB SRAM 64-bit read 10 pJ = 1.25 pJ/byte (45 nm)",
		"pj_per_flop":             "Horowitz, ISSCC 2014 (45 nm): fp32 FMA 4.6 pJ = 2.3 pJ/FLOP",
	}
	if err := d.Validate("host calibration"); err != nil {
		return nil, err
	}
	return d, nil
}

// sampler is one calibration probe taken a sample at a time: step runs
// the probed work once and returns its seconds.
type sampler struct {
	step func() float64
	ts   []float64
}

// ringProbe prepares the DRAM probe: a ring of 2048x768 float32 matrices
// of at least ringBytes in total (more than the last-level cache, so each
// comes from DRAM as a decode step's weights do); each step runs the next
// matrix's MatVec split as runtime.linear splits it. It also returns the
// ring's length.
func ringProbe(ringBytes int64, threads int) (func() float64, int) {
	const rows, cols = 2048, 768
	per := int64(rows * cols * 4)
	n := int(max(2, (ringBytes+per-1)/per))
	ring := make([]*ir.Tensor, n)
	for i := range ring {
		w := make([]float32, rows*cols)
		for j := range w {
			w[j] = float32((i+j)%13) * 0.01
		}
		ring[i] = ir.NewF32("probe.ring", w, rows, cols)
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	out := make([]float32, rows)
	i := 0
	return func() float64 {
		t := ring[i]
		i = (i + 1) % n
		s := time.Now()
		linearSplit(threads, t, x, out)
		return time.Since(s).Seconds()
	}, n
}

// matVecProbe returns a step running t's MatVec split as runtime.linear
// splits it.
func matVecProbe(t *ir.Tensor, threads int) func() float64 {
	x := make([]float32, t.Cols())
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	out := make([]float32, t.Rows())
	return func() float64 {
		s := time.Now()
		linearSplit(threads, t, x, out)
		return time.Since(s).Seconds()
	}
}

// splitProbe returns two steps over one cache-resident 256x768 float32
// matrix (each step warms it with an untimed run first): its MatVec on one
// goroutine, and split over threads as runtime.linear splits it. Taken in turn, the split's median less
// 1/threads of the single one's is what a split op pays for waking
// workers on the other cores and waiting for the slowest.
func splitProbe(threads int) (one, split func() float64) {
	const rows, cols = 256, 768
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(i%9) * 0.01
	}
	t := ir.NewF32("probe.split", w, rows, cols)
	// The other probes run in between: warm the matrix back into the
	// caches (one untimed run) before each timed one.
	warm := func(f func() float64) func() float64 { return func() float64 { f(); return f() } }
	return warm(matVecProbe(t, 1)), warm(matVecProbe(t, threads))
}

// attentionProbe prepares the attention probe and returns a step and the
// FLOPs (ir.Config.Cost's count) of one step. A step is one decode step of
// attention run as runtime.attention runs it for head dimensions that are
// multiples of 64: for each head, over its head-major slice of the cache,
// kernels.AttnScores, the softmax exponentials (kernels.ExpShift) and their
// sum, kernels.AttnValues (without the assembly: the Dot / exp / Axpy
// loop, as runtime.attention falls back); heads interleaved over
// min(threads, heads) goroutines when heads*ctx*headDim >= 32768. The
// shape is stories110M's (12 heads x 64, no GQA) at context 256; each step
// takes the next of a ring of KV caches of at least ringBytes (at least
// two). CalibrateHost passes 0 (two 1.5 MiB caches that stay in the last
// level cache) and times steps one after another, so the rate is
// attention's compute alone; the cost model charges the KV cache's bytes
// to the memory term. (Session 8: the probe, then the pre-kernel loop over
// a cold ring sampled between the other probes, read 1.1-7 GFLOP/s, and
// TinyLlama's decode attention was predicted at 189 us against 41 us
// measured; most of the gap was the interleaving, which left the probe
// 2-3x slower than the same steps run alone.) Keep it in step with
// runtime.attention.
func attentionProbe(ringBytes int64, threads int) (func() float64, float64) {
	const heads, hd, ctx = 12, 64, 256
	const kvd = heads * hd
	per := int64(2 * ctx * kvd * 4)
	n := int(max(2, (ringBytes+per-1)/per))
	keys, vals := make([][]float32, n), make([][]float32, n)
	for i := range keys {
		keys[i], vals[i] = make([]float32, ctx*kvd), make([]float32, ctx*kvd)
		for j := range keys[i] {
			keys[i][j] = float32((i+j)%11) * 0.01
			vals[i][j] = float32((i+j)%7) * 0.01
		}
	}
	q := make([]float32, kvd)
	for i := range q {
		q[i] = float32(i%5) * 0.1
	}
	out := make([]float32, kvd)
	scores := make([]float32, heads*ctx)
	scale := float32(1 / math.Sqrt(float64(hd)))
	run := func(kc, vc []float32) {
		job := func(h int) {
			qh := q[h*hd : (h+1)*hd]
			sc := scores[h*ctx : (h+1)*ctx]
			o := out[h*hd : (h+1)*hd]
			// head-major cache, as runtime.State keeps it: head h's
			// positions are contiguous rows of hd floats
			kh := h * ctx * hd
			if mx, ok := kernels.AttnScores(qh, kc[kh:], hd, scale, sc); ok && kernels.ExpShift(sc, mx) {
				var sum float32
				for _, e := range sc {
					sum += e
				}
				if kernels.AttnValues(sc, vc[kh:], hd, sum, o) {
					return
				}
			}
			for t := 0; t < ctx; t++ {
				sc[t] = kernels.Dot(qh, kc[kh+t*hd:kh+(t+1)*hd]) * scale
			}
			mx := sc[0]
			for _, v := range sc[1:] {
				if v > mx {
					mx = v
				}
			}
			var sum float32
			for i, v := range sc {
				e := float32(math.Exp(float64(v - mx)))
				sc[i] = e
				sum += e
			}
			for i := range sc {
				sc[i] /= sum
			}
			for j := range o {
				o[j] = 0
			}
			for t := 0; t < ctx; t++ {
				kernels.Axpy(sc[t], vc[kh+t*hd:kh+(t+1)*hd], o)
			}
		}
		if threads <= 1 || heads*ctx*hd < 1<<15 {
			for h := 0; h < heads; h++ {
				job(h)
			}
			return
		}
		var wg sync.WaitGroup
		nt := min(threads, heads)
		for t := 0; t < nt; t++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for h := t; h < heads; h += nt {
					job(h)
				}
			}()
		}
		wg.Wait()
	}
	c := ir.Config{Heads: heads, KVHeads: heads, HeadDim: hd, Dim: kvd}
	fl := c.Cost(ir.Op{Kind: ir.OpAttention}, ir.DecodeAt(ctx), 0).FLOPs
	i := 0
	return func() float64 {
		s := time.Now()
		run(keys[i], vals[i])
		i = (i + 1) % n
		return time.Since(s).Seconds()
	}, fl
}

// linearSplit runs one decode-step linear op (n = 1) the way
// runtime.linear does (runtime.SplitRows: one thread when rows*cols <
// 65536, else chunks of whole 16-row groups claimed by the caller and the
// runtime's helper threads).
func linearSplit(threads int, t *ir.Tensor, x, out []float32) {
	linearSplitN(threads, t, x, out, 1)
}

// linearSplitN is linearSplit for n tokens (x holds n rows of cols, out n
// rows of rows), with the input prepared as runtime.linear prepares it: a
// kernels.Input quantized once before the split (runtime.PrepareInput),
// then MatMulInput per piece.
func linearSplitN(threads int, t *ir.Tensor, x, out []float32, n int) {
	var in kernels.Input
	in.ResetBatch(x, n)
	sqzrt.PrepareInput(threads, &in, n, t)
	sqzrt.SplitRows(threads, t.Rows(), t.Rows()*t.Cols()*n, func(r0, r1 int) {
		kernels.MatMulInput(t, &in, out, r0, r1)
	})
}

// matMulRate returns the achieved FLOP rate (ir's count, 2 x rows x cols
// x n) of t's n-token product split over threads as runtime.linear splits
// it: the median over at least 5 runs and minDur (one untimed run first).
func matMulRate(t *ir.Tensor, threads, n int, minDur time.Duration) float64 {
	x := make([]float32, n*t.Cols())
	for i := range x {
		x[i] = float32(i%7)*0.1 - 0.3
	}
	out := make([]float32, n*t.Rows())
	linearSplitN(threads, t, x, out, n)
	var ts []float64
	start := time.Now()
	for it := 0; it < 5 || time.Since(start) < minDur; it++ {
		s := time.Now()
		linearSplitN(threads, t, x, out, n)
		ts = append(ts, time.Since(s).Seconds())
	}
	return 2 * float64(t.Rows()) * float64(t.Cols()) * float64(n) / median(ts)
}

// timeMatVec returns the seconds one MatVec of t takes with rows split over
// threads as runtime.linear splits them: the median over repeated runs for
// at least minDur (a median, as Measure reports, so that a shared machine's
// load weighs on the probes as on the measurement), less the dispatch
// overhead overUs, which the cost model adds back per op.
func timeMatVec(t *ir.Tensor, threads int, minDur time.Duration, overUs float64) float64 {
	x := make([]float32, t.Cols())
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	out := make([]float32, t.Rows())
	var ts []float64
	start := time.Now()
	for it := 0; it < 5 || time.Since(start) < minDur; it++ {
		s := time.Now()
		linearSplit(threads, t, x, out)
		ts = append(ts, time.Since(s).Seconds())
		if it > 20000 {
			break
		}
	}
	med := median(ts)
	return max(med-overUs/1e6, med/10)
}

// lutTensor builds a palettized rows x cols tensor with random indices and
// float16 LUTs, groupSize rows per LUT.
func lutTensor(rng *rand.Rand, bits, rows, cols, groupSize int) *ir.Tensor {
	dt, _ := ir.LUTType(bits)
	n := rows * cols
	idx := make([]uint8, n)
	for i := range idx {
		idx[i] = uint8(rng.IntN(1 << bits))
	}
	groups := (rows + groupSize - 1) / groupSize
	lut := make([]uint16, groups<<bits)
	for i := range lut {
		lut[i] = ir.F32ToF16(float32(rng.NormFloat64() * 0.02))
	}
	return &ir.Tensor{Name: fmt.Sprintf("probe.lut%d", bits), Shape: []int{rows, cols}, Type: dt,
		Data: ir.PackIndices(bits, idx), Pal: &ir.Palette{GroupSize: groupSize, LUT: lut}}
}

// probeDispatch returns the median µs of fanning a tiny MatVec out to the
// worker goroutines and waiting for all of them (one goroutine per thread,
// as runtime.linear starts them).
func probeDispatch(threads int, quick bool) float64 {
	t := ir.NewF32("probe.tiny", make([]float32, 16*threads), threads, 16)
	x := make([]float32, 16)
	out := make([]float32, threads)
	parallel := func(threads, n int, f func(w, lo, hi int)) {
		if threads <= 1 {
			f(0, 0, n)
			return
		}
		var wg sync.WaitGroup
		for w := 0; w < threads; w++ {
			lo, hi := n*w/threads, n*(w+1)/threads
			wg.Add(1)
			go func() { defer wg.Done(); f(w, lo, hi) }()
		}
		wg.Wait()
	}
	n := 2000
	if quick {
		n = 200
	}
	ts := make([]float64, n)
	for i := range ts {
		s := time.Now()
		parallel(threads, threads, func(_, lo, hi int) { kernels.MatVec(t, x, out, lo, hi) })
		ts[i] = time.Since(s).Seconds() * 1e6
	}
	sort.Float64s(ts)
	return ts[n/2]
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown-cpu"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && (strings.TrimSpace(k) == "model name" || strings.TrimSpace(k) == "CPU part") {
			return strings.TrimSpace(v)
		}
	}
	return "unknown-cpu"
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb > 0 {
					return kb << 10
				}
			}
		}
	}
	return 16 << 30
}

func cacheBytes() int64 {
	var best int64
	for i := 0; i < 8; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/sys/devices/system/cpu/cpu0/cache/index%d/size", i))
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		mult := int64(1)
		switch {
		case strings.HasSuffix(s, "K"):
			mult, s = 1<<10, strings.TrimSuffix(s, "K")
		case strings.HasSuffix(s, "M"):
			mult, s = 1<<20, strings.TrimSuffix(s, "M")
		}
		if v, err := strconv.ParseInt(s, 10, 64); err == nil && v*mult > best {
			best = v * mult
		}
	}
	if best == 0 {
		return 8 << 20
	}
	return best
}
