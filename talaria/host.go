package talaria

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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
	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// ProbeVersion names the calibration probes; a cached host profile made by
// other probes is recalibrated. Bump it when the probes or the runtime
// kernels they call change.
const ProbeVersion = "probe-v2:kernels.MatVec(f32,lut)+kernels.Sum"

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

// HostKey identifies this machine and probe set for the cache.
func HostKey(threads int) string {
	return fmt.Sprintf("%s/%s/%s/threads=%d/kernels=%s/%s", runtime.GOOS, runtime.GOARCH, cpuModel(), threads, kernels.Impl(), ProbeVersion)
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
// what the runtime's kernels call:
//   - streaming memory bandwidth: kernels.StreamSum (one thread) or the
//     same SIMD kernels.Sum over contiguous slices (several threads) of a
//     float32 array much larger than the caches;
//   - float32 FMA throughput: kernels.MatVec on a cache-resident f32 matrix;
//   - LUT-decode throughput per index width: kernels.MatVec on a
//     cache-resident palettized tensor packed with ir.PackIndices;
//   - LUT group overhead: the same 4-bit MatVec with one LUT per row
//     against one LUT for the whole tensor;
//   - per-op dispatch overhead: fanning a tiny MatVec out to the worker
//     goroutines and waiting for them.
//
// Measured figures are achieved rates, so the efficiency factors are 1.
//
// TODO(measured mode): `squeeze profile --measure` should run each op of
// the runtime's forward pass instrumented and compare with this model
// (target: median absolute error within 20% over ops >= 50 us, synthetic
// stories110M at f32 and 4-bit). The runtime does not exist yet; this is
// not implemented.
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
	streamBytes, minDur := 256<<20, 60*time.Millisecond
	if opt.Quick {
		streamBytes, minDur = 8<<20, 3*time.Millisecond
	}
	bw := probeStream(streamBytes, T, 3)
	logf("host: streaming read %.1f GB/s (%d MiB, %d threads)", bw/1e9, streamBytes>>20, T)

	rng := rand.New(rand.NewPCG(1, 2))
	fw := make([]float32, 256*256)
	for i := range fw {
		fw[i] = float32(rng.NormFloat64())
	}
	ft := ir.NewF32("probe.f32", fw, 256, 256)
	fsec := timeMatVec(ft, T, minDur)
	flops := 2 * float64(ft.Elems()) / fsec
	logf("host: f32 MatVec %.2f GFLOP/s", flops/1e9)

	lut := map[string]float64{}
	for _, b := range ir.PaletteBits {
		t := lutTensor(rng, b, 64, 1024, 64)
		sec := timeMatVec(t, T, minDur)
		lut[strconv.Itoa(b)] = float64(t.Elems()) / sec / 1e9
		logf("host: lut%d MatVec %.3f Gweights/s", b, lut[strconv.Itoa(b)])
	}
	one := timeMatVec(lutTensor(rng, 4, 64, 1024, 64), T, minDur)
	per := timeMatVec(lutTensor(rng, 4, 64, 1024, 1), T, minDur)
	groupNs := max(0, (per-one)/63*1e9)
	logf("host: LUT group overhead %.1f ns", groupNs)

	overUs := probeDispatch(T, opt.Quick)
	logf("host: op dispatch overhead %.2f us", overUs)

	d := &Device{
		Schema: DeviceSchema, Name: "host", Class: ClassCPU,
		Description:     fmt.Sprintf("this machine (%s), measured with the runtime's reference kernels", cpuModel()),
		ActBytes:        4,
		KVBytes:         4,
		MemBandwidthGBs: bw / 1e9, MemEfficiency: 1,
		MemoryBytes: memTotal(),
		PeakTFLOPs:  flops / 1e12, ComputeEfficiency: 1,
		OnChipBytes:        cacheBytes(),
		LUTDecodeGElemS:    lut,
		LUTGroupOverheadNs: groupNs,
		OpOverheadUs:       overUs,
		DRAMPJPerByte:      40, OnChipPJPerByte: 1.25, PJPerFLOP: 2.3,
		Calibration: &Calibration{HostKey: HostKey(T), Measured: time.Now().UTC().Format(time.RFC3339),
			Threads: T, GoVersion: runtime.Version(), Probe: ProbeVersion},
	}
	q := ""
	if opt.Quick {
		q = " (quick probe)"
	}
	d.Sources = map[string]string{
		"act_bytes":             "the squeeze runtime computes activations in float32 (ir cost model)",
		"kv_bytes":              "the squeeze runtime keeps a float32 KV cache (ir.Config.KVCacheBytes)",
		"mem_bandwidth_gbs":     fmt.Sprintf("measured%s: best of 3 passes of kernels.Sum (kernels.StreamSum on one thread) over %d MiB of float32, %d threads", q, streamBytes>>20, T),
		"mem_efficiency":        "1: the bandwidth is an achieved (measured) figure",
		"memory_bytes":          "MemTotal of /proc/meminfo (0 -> 16 GiB when unreadable)",
		"peak_tflops":           fmt.Sprintf("measured%s: kernels.MatVec on a 256x256 float32 matrix (cache resident), %d threads", q, T),
		"compute_efficiency":    "1: the FLOP rate is an achieved (measured) figure",
		"onchip_bytes":          "largest CPU cache in /sys/devices/system/cpu/cpu0/cache (8 MiB when unreadable)",
		"lut_decode_gelem_s":    fmt.Sprintf("measured%s: kernels.MatVec on 64x1024 palettized tensors packed with ir.PackIndices, one LUT, %d threads", q, T),
		"lut_group_overhead_ns": fmt.Sprintf("measured%s: 4-bit MatVec with 64 LUTs minus with 1 LUT, over 63", q),
		"op_overhead_us":        fmt.Sprintf("measured%s: median time to fan a 1x16 MatVec out to %d goroutines and wait", q, T),
		"dram_pj_per_byte":      "ASSUMPTION: 5 pJ/bit DRAM access (not measured; see docs/TALARIA.md)",
		"onchip_pj_per_byte":    "Horowitz, ISSCC 2014: 8 KB SRAM 64-bit read 10 pJ = 1.25 pJ/byte (45 nm)",
		"pj_per_flop":           "Horowitz, ISSCC 2014 (45 nm): fp32 FMA 4.6 pJ = 2.3 pJ/FLOP",
	}
	if err := d.Validate("host calibration"); err != nil {
		return nil, err
	}
	return d, nil
}

// probeStream returns the best streaming-read rate (bytes/s) of reps sums
// over an array of size bytes: kernels.StreamSum on one thread, the same
// SIMD kernels.Sum over contiguous slices on several.
func probeStream(size, threads, reps int) float64 {
	if threads <= 1 {
		return kernels.StreamSum(size, 0) * 1e9
	}
	a := make([]float32, size/4)
	for i := range a {
		a[i] = 1
	}
	best := 0.0
	var sink float32
	for r := 0; r < reps; r++ {
		sums := make([]float32, threads)
		start := time.Now()
		parallel(threads, len(a), func(w, lo, hi int) { sums[w] = kernels.Sum(a[lo:hi]) })
		el := time.Since(start).Seconds()
		for _, s := range sums {
			sink += s
		}
		if bw := float64(size) / el; bw > best {
			best = bw
		}
	}
	if sink < 0 { // keep the sums alive
		fmt.Fprint(io.Discard, sink)
	}
	return best
}

// parallel splits [0, n) into threads contiguous ranges.
func parallel(threads, n int, f func(w, lo, hi int)) {
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

// timeMatVec returns the seconds one MatVec of t takes with rows split over
// threads, as the minimum over repeated runs for at least minDur.
func timeMatVec(t *ir.Tensor, threads int, minDur time.Duration) float64 {
	x := make([]float32, t.Cols())
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	out := make([]float32, t.Rows())
	best := 0.0
	start := time.Now()
	for it := 0; it < 3 || time.Since(start) < minDur; it++ {
		s := time.Now()
		parallel(threads, t.Rows(), func(_, lo, hi int) { kernels.MatVec(t, x, out, lo, hi) })
		el := time.Since(s).Seconds()
		if best == 0 || el < best {
			best = el
		}
		if it > 10000 {
			break
		}
	}
	return best
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
// worker goroutines and waiting for all of them.
func probeDispatch(threads int, quick bool) float64 {
	t := ir.NewF32("probe.tiny", make([]float32, 16*threads), threads, 16)
	x := make([]float32, 16)
	out := make([]float32, threads)
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
