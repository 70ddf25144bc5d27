package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
)

const calibText = "../../testdata/tinystories/calib.txt"

// compileJSON runs squeeze compile with args and returns its --json result.
func compileJSON(t *testing.T, out string, args ...string) compileResult {
	t.Helper()
	return squeezeCompile(t, append([]string{"compile", stories, "--calib", calibText, "--calib-windows", "4", "-o", out, "--json"}, args...)...)
}

// squeezeCompile runs squeeze with args (a compile with --json) and
// returns its result.
func squeezeCompile(t *testing.T, args ...string) compileResult {
	t.Helper()
	so, se, err := squeeze(t, args...)
	if err != nil {
		t.Fatalf("squeeze %v: %v\n%s", args, err, se)
	}
	var r compileResult
	if err := json.Unmarshal([]byte(so), &r); err != nil {
		t.Fatalf("compile --json: %v\n%s", err, so)
	}
	return r
}

// Same inputs and seed give a byte-identical bundle, whatever the number
// of threads (calibration, candidates and palettization are parallel).
func TestCompileDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sqz"), filepath.Join(dir, "b.sqz")
	compileJSON(t, a, "--target", "3.7bpw", "--threads", "1")
	compileJSON(t, b, "--target", "3.7bpw", "--threads", "2")
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatalf("two compiles with the same inputs and seed differ: %d and %d bytes", len(da), len(db))
	}
}

// The allocation meets the target and leaves little of it unused.
func TestCompileMeetsTarget(t *testing.T) {
	dir := t.TempDir()
	for _, target := range []float64{2.5, 3.7} {
		r := compileJSON(t, filepath.Join(dir, "x.sqz"), "--target", jsonFloat(target), "--group-size", "tensor")
		if r.BPW > target || r.BPW < target-0.02 {
			t.Errorf("--target %g: achieved %.4f bits per palettized weight, want in [%g, %g]", target, r.BPW, target-0.02, target)
		}
		var sum float64
		for _, e := range r.Tensors {
			sum += e.Damage
		}
		if !(r.PredictedDamage > 0) || abs(sum-r.PredictedDamage) > 1e-9*r.PredictedDamage {
			t.Errorf("--target %g: predicted damage %g, tensors sum to %g", target, r.PredictedDamage, sum)
		}
	}
}

// Per-group allocation (the default on small models) meets the target,
// splits some tensors into lutmix parts, and the bundle loads, inspects
// and evaluates; odd --granularity requests fail clearly.
func TestCompileGroupGranularity(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "g.sqz")
	plan := filepath.Join(dir, "plan.json")
	r := compileJSON(t, out, "--target", "3.7bpw", "--write-plan", plan)
	// the plan, parts included, feeds back to the same bundle
	again := filepath.Join(dir, "again.sqz")
	compileJSON(t, again, "--plan", plan)
	if a, b := mustRead(t, out), mustRead(t, again); !bytes.Equal(a, b) {
		t.Fatalf("compile --plan of the written plan gives a different bundle (%d vs %d bytes)", len(a), len(b))
	}
	if r.BPW > 3.7 || r.BPW < 3.68 {
		t.Fatalf("achieved %.4f bpw for target 3.7", r.BPW)
	}
	split := 0
	for _, e := range r.Tensors {
		if len(e.Parts) > 0 {
			split++
		}
	}
	if split == 0 {
		t.Fatal("no tensor got per-group widths")
	}
	so, _, err := squeeze(t, "inspect", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(so, `"type": "lutmix"`); n != split {
		t.Fatalf("inspect shows %d lutmix tensors, the plan split %d", n, split)
	}
	so, _, err = squeeze(t, "eval", out, "--ref", stories, "--text", calibText, "--max-windows", "4", "--json")
	if err != nil || !strings.Contains(so, "kld_mean") {
		t.Fatalf("eval of a lutmix bundle: %v\n%s", err, so)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--granularity", "rows"}, "expected tensor or group"},
		{[]string{"--granularity", "group", "--group-size", "tensor"}, "nothing to cut"},
	} {
		args := append([]string{"compile", stories, "--target", "3.7bpw", "-o", filepath.Join(dir, "x.sqz")}, c.args...)
		if _, _, err := squeeze(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("squeeze %v: %v, want an error mentioning %q", args, err, c.want)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonFloat(v float64) string { b, _ := json.Marshal(v); return string(b) }

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// The big-model path (--fast on: sampled candidates, pruned group sizes,
// fewer histogram bins, no error feedback) with a random token stream
// (--calib-tokens random:N) is deterministic too, and meets the target.
func TestCompileFastDeterministic(t *testing.T) {
	dir := t.TempDir()
	var data [][]byte
	for _, th := range []string{"1", "2"} {
		out := filepath.Join(dir, "f"+th+".sqz")
		args := []string{"compile", stories, "--calib-tokens", "random:600", "--fast", "on", "--target", "3.2bpw", "--threads", th, "-o", out, "--json"}
		so, se, err := squeeze(t, args...)
		if err != nil {
			t.Fatalf("squeeze %v: %v\n%s", args, err, se)
		}
		var r compileResult
		if err := json.Unmarshal([]byte(so), &r); err != nil {
			t.Fatalf("compile --json: %v\n%s", err, so)
		}
		if !r.Fast || !r.Calibrated || r.BPW > 3.2 || r.BPW < 3.1 {
			t.Errorf("--fast on --calib-tokens random:600: fast %v calibrated %v bpw %.4f, want fast, calibrated, bpw in [3.1, 3.2]", r.Fast, r.Calibrated, r.BPW)
		}
		d, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, d)
	}
	if !bytes.Equal(data[0], data[1]) {
		t.Fatalf("--fast compiles with 1 and 2 threads differ: %d and %d bytes", len(data[0]), len(data[1]))
	}
}

// --calib-tokens rejects ids outside the vocabulary, naming the file and
// the token.
func TestCompileCalibTokensBad(t *testing.T) {
	f := filepath.Join(t.TempDir(), "toks.txt")
	if err := os.WriteFile(f, []byte("1 5 99999"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := squeeze(t, "compile", stories, "--calib-tokens", f, "--target", "3.7bpw", "-o", filepath.Join(t.TempDir(), "x.sqz"))
	if err == nil || !strings.Contains(err.Error(), "toks.txt") || !strings.Contains(err.Error(), "99999") {
		t.Fatalf("error %v, want one naming the file and the token 99999", err)
	}
}

// compile --qat trains the palettes and indices after palettizing: the
// bundle keeps the plan's size (QAT is zero bytes), reports held-out KL
// before and after (after no worse), and --qat without --calib is refused.
func TestCompileQAT(t *testing.T) {
	dir := t.TempDir()
	// A short calibration text keeps the distillation (teacher logits of
	// every window, held-out evaluation) to a few seconds.
	text, err := os.ReadFile(calibText)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "calib.txt")
	if err := os.WriteFile(short, text[:12000], 0o644); err != nil {
		t.Fatal(err)
	}
	plain := compileJSON(t, filepath.Join(dir, "p.sqz"), "--target", "3.7bpw", "--error-feedback=off", "--calib", short)
	q := compileJSON(t, filepath.Join(dir, "q.sqz"), "--target", "3.7bpw", "--error-feedback=off", "--calib", short, "--qat", "--qat-steps", "3", "--sample-tokens", "300")
	if q.QAT == nil || q.QAT.Steps != 3 || q.QAT.SampledTokens < 300 {
		t.Fatalf("compile --qat --sample-tokens 300: qat result %+v", q.QAT)
	}
	// The 3-4 bpw recipe reached the trainer (qatRecipeFor).
	if r := qatRecipeFor(q.BPW); q.QAT.LR != r.QAT.LR || q.QAT.LR != 0.0025 || q.QAT.WidthSteps || q.QAT.EMA != 0.99 {
		t.Errorf("compile --qat at %.3f bpw: recipe lr %v, width steps %v, ema %v; want %+v", q.BPW, q.QAT.LR, q.QAT.WidthSteps, q.QAT.EMA, r)
	}
	if !(q.QAT.HeldOutKLAfter <= q.QAT.HeldOutKLBefore) || !(q.QAT.HeldOutKLBefore > 0) {
		t.Errorf("held-out KL %v -> %v", q.QAT.HeldOutKLBefore, q.QAT.HeldOutKLAfter)
	}
	if q.Bytes != plain.Bytes || q.BPW != plain.BPW {
		t.Errorf("--qat bundle %d bytes at %.4f bpw, without %d at %.4f: QAT must not change the size", q.Bytes, q.BPW, plain.Bytes, plain.BPW)
	}
	if _, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--qat", "-o", filepath.Join(dir, "x.sqz")); err == nil ||
		!strings.Contains(err.Error(), "--qat needs --calib") {
		t.Errorf("--qat without --calib: %v", err)
	}
	if _, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--calib", short, "--sample-tokens", "100", "-o", filepath.Join(dir, "x.sqz")); err == nil ||
		!strings.Contains(err.Error(), "--sample-tokens") {
		t.Errorf("--sample-tokens without --qat or --recover: %v", err)
	}
	if _, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--calib", short, "--qat", "--qat-steps", "-1", "-o", filepath.Join(dir, "x.sqz")); err == nil ||
		!strings.Contains(err.Error(), "--qat-steps") {
		t.Errorf("--qat-steps 0: %v", err)
	}
}

// --json reports the CPU time of each stage beside its wall time, and
// --cpuprofile writes a (gzipped) pprof profile of the compile.
func TestCompileStageCPUAndProfile(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "c.prof")
	args := []string{"compile", stories, "--calib-tokens", "random:256", "--fast", "on", "--target", "3.7bpw", "--threads", "2",
		"-o", filepath.Join(dir, "c.sqz"), "--json", "--cpuprofile", prof}
	r := squeezeCompile(t, args...)
	var cpu float64
	for _, st := range []string{"load", "calibrate", "candidates", "palettize", "write"} {
		v, ok := r.StageCPUSeconds[st]
		if !ok || v < 0 {
			t.Errorf("stage_cpu_seconds[%q] = %v (present %v), want a value >= 0", st, v, ok)
		}
		cpu += v
	}
	// CPU time cannot exceed wall time times the CPUs (plus the clocks'
	// granularity); a process that ran at all used some.
	if lim := r.Seconds*float64(goruntime.NumCPU()) + 0.5; !(cpu > 0) || cpu > lim {
		t.Errorf("stage CPU seconds sum to %g, want in (0, %g]", cpu, lim)
	}
	b, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--cpuprofile wrote %d bytes, want a gzipped pprof profile", len(b))
	}
}

// The --qat recipe bands: the width-scaled recipe below 3 bpw, the long
// unscaled one from 3 to 4, the short one (no sampled text) from 4 up;
// every one keeps the moving average.
func TestQATRecipeFor(t *testing.T) {
	for _, tc := range []struct {
		bpw   float64
		steps int
		long  bool
		lr    float64
		width bool
	}{{2.5, 1200, true, 0.007, true}, {2.999, 1200, true, 0.007, true}, {3, 1200, true, 0.0025, false}, {3.7, 1200, true, 0.0025, false},
		{4, 200, false, 0.005, false}, {4.32, 200, false, 0.005, false}} {
		r := qatRecipeFor(tc.bpw)
		if r.Steps != tc.steps || r.Long != tc.long || r.QAT.LR != tc.lr || r.QAT.WidthSteps != tc.width || r.QAT.EMA != qatEMA {
			t.Errorf("%.3f bpw: %+v, want %d steps, long %v, lr %v, width %v", tc.bpw, r, tc.steps, tc.long, tc.lr, tc.width)
		}
	}
}
