package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// TestKernelFlag: the commands that run a model default to the int8 path,
// SQUEEZE_KERNELS changes the default, the flag wins over both, anything
// else is refused by name, and apply restores the previous mode.
func TestKernelFlag(t *testing.T) {
	prev := kernels.SetMode(kernels.ModeFloat)
	defer kernels.SetMode(prev)
	for _, c := range []struct {
		flag, env string
		want      kernels.Mode
		err       string
	}{
		{"", "", kernels.ModeInt8, ""},
		{"", "float", kernels.ModeFloat, ""},
		{"", "int8", kernels.ModeInt8, ""},
		{"int8", "float", kernels.ModeInt8, ""},
		{"float", "int8", kernels.ModeFloat, ""},
		{"fp16", "", 0, `--kernels "fp16"`},
		{"", "fast", 0, `SQUEEZE_KERNELS="fast"`},
	} {
		t.Setenv("SQUEEZE_KERNELS", c.env)
		k := kernelFlag{c.flag}
		restore, err := k.apply()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("flag %q env %q: error %v, want one naming %s", c.flag, c.env, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("flag %q env %q: %v", c.flag, c.env, err)
		}
		if got := kernels.CurrentMode(); got != c.want {
			t.Errorf("flag %q env %q: mode %v, want %v", c.flag, c.env, got, c.want)
		}
		restore()
		if got := kernels.CurrentMode(); got != kernels.ModeFloat {
			t.Errorf("flag %q env %q: restore left mode %v", c.flag, c.env, got)
		}
	}
}

// TestKernelFlagCommands: every command that takes --kernels refuses a bad
// value by name before doing any work (profile and compile's --device host
// included: they choose the arithmetic the host profile is measured in).
func TestKernelFlagCommands(t *testing.T) {
	stories := "../../testdata/stories260K/stories260K.bin"
	for _, args := range [][]string{
		{"run", stories, "--prompt", "x", "--kernels", "fp8"},
		{"profile", "--synthetic", "stories260K", "--device", "host", "--kernels", "fp8"},
		{"profile", "--synthetic", "stories260K", "--measure", "--kernels", "fp8"},
		{"compile", stories, "--target", "3.7bpw", "--device", "host", "--max-decode-ms", "1", "--kernels", "fp8", "-o", filepath.Join(t.TempDir(), "x.sqz")},
	} {
		_, _, err := squeeze(t, args...)
		if err == nil || !strings.Contains(err.Error(), `--kernels "fp8"`) {
			t.Errorf("%v: error %v, want one naming --kernels \"fp8\"", args, err)
		}
	}
}

// TestEvalKernels: eval runs a bundle with the int8 kernels unless told
// otherwise, says which in its JSON (the arithmetic the build runs), and
// --kernels float gives the exact arithmetic, which differs from int8
// (where the build has the int8 kernels: amd64 with AVX2) by no more than
// the int8 path's small error.
func TestEvalKernels(t *testing.T) {
	b := filepath.Join(t.TempDir(), "b4.sqz")
	if _, _, err := squeeze(t, "compile", stories, "--target", "4.1bpw", "--bits", "4", "-o", b); err != nil {
		t.Fatal(err)
	}
	hasI8 := int8Runs()
	kld := map[string]float64{}
	for _, k := range []string{"", "float", "int8"} {
		args := []string{"eval", b, "--text", "../../testdata/tinystories/calib.txt", "--ctx", "128", "--max-windows", "6",
			"--ref", stories, "--json", "--threads", "1"}
		if k != "" {
			args = append(args, "--kernels", k)
		}
		out, _, err := squeeze(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			KLD     float64 `json:"kld_mean"`
			Kernels string  `json:"kernels"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		want := k
		if k == "" {
			want = "int8"
		}
		if !hasI8 {
			want = "float" // what this build runs, whatever the mode
		}
		if r.Kernels != want {
			t.Errorf("--kernels %q: eval reports %q kernels, want %q", k, r.Kernels, want)
		}
		kld[map[string]string{"": "int8", "int8": "int8int8", "float": "floatfloat"}[k]] = r.KLD
	}
	// An unpalettized model has no palettized arithmetic to report.
	out, _, err := squeeze(t, "eval", stories, "--text", "../../testdata/tinystories/calib.txt", "--ctx", "128", "--max-windows", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, `"kernels"`) {
		t.Errorf("eval of the f32 model reports kernels: %s", out)
	}
	if kld["int8"] != kld["int8int8"] {
		t.Errorf("default eval KLD %v differs from --kernels int8 %v", kld["int8"], kld["int8int8"])
	}
	f, i := kld["floatfloat"], kld["int8"]
	if hasI8 && f == i {
		t.Errorf("int8 and float kernels gave the same KLD %v: the int8 path did not run", f)
	}
	if !(f > 0) || math.Abs(i-f) > 0.05*f {
		t.Errorf("KLD float %v, int8 %v: more than 5%% apart", f, i)
	}
}

// int8Runs reports whether this build has the int8 kernels.
func int8Runs() bool {
	defer kernels.SetMode(kernels.SetMode(kernels.ModeInt8))
	return kernels.EffectiveMode() == kernels.ModeInt8
}
