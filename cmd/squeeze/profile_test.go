package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime/kernels"
	"github.com/squeeze-ml/squeeze/talaria"
)

// Apple's published figures for its ~3B on-device model on iPhone 15 Pro:
// ~0.6 ms per prompt token and ~30 decode tokens/s; the profile must land
// within 25% of each from the device's published hardware figures alone.
func TestProfileAFMOnIPhone(t *testing.T) {
	out, _, err := squeeze(t, "profile", "--synthetic", "afm-on-device", "--device", "iphone15pro-ane", "--bpw", "3.7", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Totals map[string]any   `json:"totals"`
		Ops    []map[string]any `json:"ops"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ttft_ms", "ms_per_prompt_token", "decode_tokens_per_s", "energy_mj_per_token", "peak_memory_bytes"} {
		if _, ok := r.Totals[k]; !ok {
			t.Errorf("totals.%s missing", k)
		}
	}
	if len(r.Ops) == 0 {
		t.Fatal("no ops")
	}
	for _, k := range []string{"name", "kind", "bits", "latency_us", "energy_uj", "weight_bytes", "flops"} {
		if _, ok := r.Ops[0][k]; !ok {
			t.Errorf("ops[].%s missing", k)
		}
	}
	if v := r.Totals["ms_per_prompt_token"].(float64); math.Abs(v-0.6)/0.6 > 0.25 {
		t.Errorf("ms per prompt token %.3f, Apple published ~0.6", v)
	}
	if v := r.Totals["decode_tokens_per_s"].(float64); math.Abs(v-30)/30 > 0.25 {
		t.Errorf("decode %.1f tokens/s, Apple published ~30", v)
	}
}

func TestProfileWhatIfOnRealModel(t *testing.T) {
	out, _, err := squeeze(t, "profile", stories, "--device", "rpi5", "--what-if", "blk.*.ffn_*=2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Changed []string `json:"changed_tensors"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Changed) != 15 { // ffn_gate, ffn_up, ffn_down in 5 layers; norms untouched
		t.Errorf("what-if changed %d tensors: %v", len(r.Changed), r.Changed)
	}
}

// quickHostCache points the user cache at a temporary directory holding a
// quick host calibration, so --device host does not run the full probes.
func quickHostCache(t *testing.T) {
	t.Helper()
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", tmp)
	t.Setenv("HOME", tmp)
	dir, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	// in the arithmetic profile uses by default (--kernels int8), so that
	// the host key matches and profile reads this quick profile
	prev := kernels.SetMode(kernels.ModeInt8)
	defer kernels.SetMode(prev)
	if _, err := talaria.HostDevice(talaria.HostOptions{CacheDir: filepath.Join(dir, "squeeze"), Quick: true, Threads: runtime.GOMAXPROCS(0)}); err != nil {
		t.Fatal(err)
	}
}

func TestProfileMeasure(t *testing.T) {
	quickHostCache(t)
	out, _, err := squeeze(t, "profile", "--synthetic", "stories260K", "--measure", "--bpw", "4",
		"--prompt-tokens", "8", "--measure-steps", "3", "--measure-warmup", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Model   string           `json:"model"`
		Kernels string           `json:"kernels"`
		Ops     []map[string]any `json:"ops"`
		Steps   int              `json:"steps"`
		Summary map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(r.Kernels, "/int8") {
		t.Errorf("kernels %q: profile --measure runs the int8 arithmetic by default, as run does", r.Kernels)
	}
	cfg, _ := ir.SyntheticConfig("stories260K")
	if len(r.Ops) != len(cfg.Ops()) || r.Steps != 3 || !strings.Contains(r.Model, "4bpw") {
		t.Errorf("model %q, %d ops (config %d), %d steps", r.Model, len(r.Ops), len(cfg.Ops()), r.Steps)
	}
	for _, o := range r.Ops {
		if o["name"] == "blk.0.ffn_up" && o["encoding"] != "lut4/g16" {
			t.Errorf("blk.0.ffn_up measured as %v, expected the 4-bit model (lut4/g16)", o["encoding"])
		}
	}
	out, _, err = squeeze(t, "profile", "--synthetic", "stories260K", "--measure", "--prompt-tokens", "4", "--measure-steps", "2", "--top", "3")
	if err != nil || !strings.Contains(out, "median |error|") || !strings.Contains(out, "top 3 shown") {
		t.Errorf("table: err %v\n%s", err, out)
	}
	// --plan: the synthetic model is encoded as the plan says.
	plan := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(plan, []byte(`{"version": 1, "target_bpw": 4, "seed": 1, "tensors": [
 {"name": "blk.0.ffn_up", "shape": [172, 64], "bits": 2, "group_size": 16, "per_row_scale": true}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = squeeze(t, "profile", "--synthetic", "stories260K", "--measure", "--plan", plan, "--prompt-tokens", "4", "--measure-steps", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	r.Ops = nil
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	for _, o := range r.Ops {
		want := "f32"
		if o["name"] == "blk.0.ffn_up" {
			want = "lut2/g16+s"
		}
		if o["kind"] == "linear" && o["encoding"] != want {
			t.Errorf("--plan: %v measured as %v, expected %s", o["name"], o["encoding"], want)
		}
	}
	for _, bad := range [][]string{
		{"profile", "--synthetic", "stories260K", "--measure", "--device", "m2"},
		{"profile", stories, "--measure", "--bpw", "4"},
		{"profile", "--synthetic", "stories260K", "--measure", "--context", "64"},
	} {
		if _, _, err := squeeze(t, bad...); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// TestProfilePerGroupPlan: a per-group plan (compile's default on
// stories260K: lutmix tensors of parts) is costed at its parts' bytes.
// Talaria saw its entries as float32 before (their Bits field is 0), so a
// 3.7 bpw plan was profiled at ~7.9 bits per weight.
func TestProfilePerGroupPlan(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.json")
	if _, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--calib", "../../testdata/tinystories/calib.txt", "--calib-windows", "4",
		"--write-plan", plan, "-o", filepath.Join(dir, "b.sqz")); err != nil {
		t.Fatal(err)
	}
	pp := readPlanFile(t, plan)
	if pp.Granularity != "group" {
		t.Fatalf("granularity %q: the test needs a per-group plan", pp.Granularity)
	}
	out, _, err := squeeze(t, "profile", stories, "--device", "rpi5", "--plan", plan, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Totals talaria.Totals `json:"totals"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	// the palettized weights' bytes plus the float32 norms, nothing more
	planned := pp.TotalBits / 8
	if r.Totals.WeightBytes < planned || r.Totals.WeightBytes > planned+planned/20 {
		t.Errorf("profiled weight bytes %d (%.2f bits per weight), the plan's palettized bytes %d", r.Totals.WeightBytes, r.Totals.BitsPerWeight, planned)
	}
	if _, _, err := squeeze(t, "profile", "--synthetic", "stories260K", "--plan", plan, "--device", "host", "--measure"); err == nil || !strings.Contains(err.Error(), "per-group parts") {
		t.Errorf("measuring a per-group plan on synthetic weights: %v", err)
	}
}
