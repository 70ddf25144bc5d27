package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A budget that can be met gives a plan that meets it, with the predicted
// figures recorded; one that cannot fails with the best achievable figures
// and writes nothing.
func TestCompileBudgets(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.sqz")
	out, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--device", "rpi5", "--max-decode-ms", "0.45",
		"--bits", "2,4", "--group-size", "tensor", "--proxy", "input", "--error-feedback=off", "-o", ok, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r compileResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Device != "rpi5" || r.Predicted["decode_ms_per_token"] <= 0 || r.Predicted["decode_ms_per_token"] > 0.45 {
		t.Errorf("predicted figures %v on %q do not meet the 0.45 ms budget", r.Predicted, r.Device)
	}
	if r.BPW > 3.7 {
		t.Errorf("bpw %.4f above the target", r.BPW)
	}
	bad := filepath.Join(dir, "bad.sqz")
	_, _, err = squeeze(t, "compile", stories, "--target", "3.7bpw", "--device", "rpi5", "--max-decode-ms", "0.01",
		"--bits", "2,4", "--group-size", "tensor", "--proxy", "input", "--error-feedback=off", "-o", bad)
	if err == nil || !strings.Contains(err.Error(), "cannot be met") || !strings.Contains(err.Error(), "best achievable") {
		t.Fatalf("impossible budget: %v", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("an infeasible compile wrote a bundle")
	}
	if _, _, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--max-decode-ms", "1", "-o", bad); err == nil || !strings.Contains(err.Error(), "--device") {
		t.Errorf("budget without --device: %v", err)
	}
}

// compile --recover trains adapters as its last stage and reports their cost.
func TestCompileRecover(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.sqz")
	text, err := os.ReadFile("../../testdata/tinystories/calib.txt")
	if err != nil {
		t.Fatal(err)
	}
	calib := filepath.Join(dir, "calib.txt") // a tenth of it keeps the test quick
	if err := os.WriteFile(calib, text[:len(text)/10], 0o644); err != nil {
		t.Fatal(err)
	}
	// --adapter-budget 0.2: at 2.5 bpw (115 KiB) rank-1 adapters on all 35 linears and their
	// manifest entries take ~15 KiB, over the default 10%.
	js, _, err := squeeze(t, "compile", stories, "--target", "2.5bpw", "--calib", calib,
		"--calib-windows", "2", "--error-feedback=off", "--recover", "--adapter-budget", "0.2", "--steps", "2", "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r compileResult
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	if r.AdapterBytes <= 0 || r.AdapterBPW <= 0 {
		t.Fatalf("adapter_bytes %d adapter_bpw %v", r.AdapterBytes, r.AdapterBPW)
	}
	if float64(r.AdapterBytes) > 0.1*float64(r.Bytes) {
		t.Errorf("adapters %d bytes exceed 10%% of the %d-byte bundle", r.AdapterBytes, r.Bytes)
	}
	if _, _, err := squeeze(t, "run", out, "--adapter", "recover", "--prompt", "Once", "-n", "4", "--temp", "0"); err != nil {
		t.Fatalf("running the recovered bundle: %v", err)
	}
	if _, _, err := squeeze(t, "compile", stories, "--target", "2.5bpw", "--recover", "-o", out); err == nil || !strings.Contains(err.Error(), "--calib") {
		t.Errorf("--recover without --calib: %v", err)
	}
}
