package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/eval"
)

// exitCode is the status main exits with for err.
func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return 1
}

// TestGate: the original against itself passes every check (KL 0, PPL
// ratio 1, top-1 1); a 2-bit bundle (KLD ~4: every linear at 2 bits
// without calibration) fails a tight KL bound with exit
// status 1, reports the original's perplexity that eval gives for it
// alone on the same windows and the KL that eval --ref gives, and writes
// a JUnit report with the failure; an adapter set is gated when named;
// bad input exits 2 and writes no report.
func TestGate(t *testing.T) {
	recoverFixtures(t)
	dir := t.TempDir()
	win := []string{"--text", "../../testdata/tinystories/dev.txt", "--ctx", "128", "--max-windows", "6"}
	gate := func(args ...string) (gateReport, string, error) {
		t.Helper()
		out, stderr, err := squeeze(t, append(append([]string{"gate"}, win...), append(args, "--json")...)...)
		var r gateReport
		if out != "" {
			if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
				t.Fatalf("gate --json: %v\n%s", jerr, out)
			}
		}
		return r, stderr, err
	}

	self, _, err := gate("--original", stories, "--compressed", stories, "--min-top1", "1", "--max-kld-p99", "1e-9")
	if err != nil {
		t.Fatalf("the original against itself: %v", err)
	}
	if !self.Pass || len(self.Checks) != 4 || *self.Eval.KLDMean > 1e-9 || self.Eval.PPL != *self.Eval.RefPPL {
		t.Errorf("the original against itself: %+v (eval %+v)", self.Checks, self.Eval)
	}

	// another tool's output: llama.cpp's own Q8_0 GGUF of the model passes a
	// tight gate (its context is 128, as the win flags use)
	q8, _, err := gate("--original", stories, "--compressed", "../../testdata/stories260K/gguf/stories260K-Q8_0.gguf", "--max-kld", "0.002", "--max-ppl-ratio", "1.01")
	if err != nil || !q8.Pass || !(*q8.Eval.KLDMean > 0) {
		t.Errorf("llama.cpp Q8_0: %v, %+v", err, q8.Checks)
	}

	junit := filepath.Join(dir, "gate.xml")
	md := filepath.Join(dir, "summary.md")
	if err := os.WriteFile(md, []byte("earlier step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _, err := gate("--original", stories, "--compressed", recoverBundle, "--max-kld", "1e-3", "--max-ppl-ratio", "100", "--junit", junit, "--markdown", md)
	var failed gateFailed
	if !errors.As(err, &failed) || exitCode(err) != 1 || !strings.Contains(err.Error(), "kld_mean") {
		t.Fatalf("2-bit bundle under --max-kld 1e-3: error %v (exit %d), want a failed gate with exit 1", err, exitCode(err))
	}
	if r.Pass || len(r.Checks) != 2 || r.Checks[0].Metric != "kld_mean" || r.Checks[0].Pass || r.Checks[1].Metric != "ppl_ratio" {
		t.Errorf("2-bit bundle: %+v", r.Checks)
	}
	// one pass gives the original's perplexity, the same as eval's alone
	out, _, err := squeeze(t, append(append([]string{"eval", stories}, win...), "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var alone eval.Result
	if err := json.Unmarshal([]byte(out), &alone); err != nil {
		t.Fatal(err)
	}
	out, _, err = squeeze(t, append(append([]string{"eval", recoverBundle, "--ref", stories}, win...), "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var withRef eval.Result
	if err := json.Unmarshal([]byte(out), &withRef); err != nil {
		t.Fatal(err)
	}
	if *r.Eval.RefPPL != alone.PPL || *r.Eval.KLDMean != *withRef.KLDMean || r.Checks[1].Value != withRef.PPL/alone.PPL {
		t.Errorf("gate: original PPL %v, KLD %v, ratio %v; eval: original alone %v, bundle KLD %v, PPL %v",
			*r.Eval.RefPPL, *r.Eval.KLDMean, r.Checks[1].Value, alone.PPL, *withRef.KLDMean, withRef.PPL)
	}
	summary, err := os.ReadFile(md)
	if err != nil || !strings.HasPrefix(string(summary), "earlier step\n### squeeze gate **FAILED**") ||
		!strings.Contains(string(summary), "| kld_mean | ") || !strings.Contains(string(summary), "| **FAIL** |") {
		t.Errorf("Markdown summary (appended after the earlier step's line): %v\n%s", err, summary)
	}
	raw, err := os.ReadFile(junit)
	if err != nil {
		t.Fatalf("no JUnit report after a failed gate: %v", err)
	}
	var suites struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(raw, &suites); err != nil {
		t.Fatalf("JUnit report: %v\n%s", err, raw)
	}
	if len(suites.Suites) != 1 || suites.Suites[0].Tests != 2 || suites.Suites[0].Failures != 1 ||
		suites.Suites[0].Cases[0].Failure == nil || !strings.Contains(suites.Suites[0].Cases[0].Failure.Message, "kld_mean") ||
		suites.Suites[0].Cases[1].Failure != nil {
		t.Errorf("JUnit report:\n%s", raw)
	}

	// a bundle with adapter sets: gated without them unless named (and
	// said so), with one when named
	base, stderr, err := gate("--original", stories, "--compressed", recoverTwoSets, "--max-kld", "100", "--max-ppl-ratio", "100")
	if err != nil || !strings.Contains(stderr, "holds adapter sets (a, b)") {
		t.Fatalf("two-set bundle: %v; stderr %q", err, stderr)
	}
	withA, stderr, err := gate("--original", stories, "--compressed", recoverTwoSets, "--max-kld", "100", "--max-ppl-ratio", "100", "--adapter", "a")
	if err != nil || strings.Contains(stderr, "holds adapter sets") || withA.Adapter != "a" || *withA.Eval.KLDMean == *base.Eval.KLDMean {
		t.Errorf("--adapter a: %v, KLD %v (base alone %v), stderr %q", err, *withA.Eval.KLDMean, *base.Eval.KLDMean, stderr)
	}

	// an original under another name than the bundle records: a warning
	renamed := filepath.Join(dir, "renamed.bin")
	abs, _ := filepath.Abs(stories)
	if err := os.Symlink(abs, renamed); err != nil {
		t.Fatal(err)
	}
	_, stderr, err = gate("--original", renamed, "--compressed", recoverBundle, "--max-kld", "100", "--max-ppl-ratio", "100")
	if err != nil || !strings.Contains(stderr, `compiled from "stories260K.bin"; --original is `+renamed) {
		t.Errorf("renamed original: %v; stderr %q", err, stderr)
	}

	bad := filepath.Join(dir, "bad.xml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compressed", recoverBundle}, "--original"},
		{[]string{"--original", stories}, "--compressed"},
		{[]string{"--original", stories, "--compressed", filepath.Join(dir, "missing.sqz")}, "missing.sqz"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--max-kld", "-1"}, "--max-kld -1"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--max-kld", "0", "--max-ppl-ratio", "0"}, "no threshold"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--min-top1", "2"}, "above 1"},
		{[]string{"--original", stories, "--compressed", recoverTwoSets, "--adapter", "c"}, "--adapter c"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--junit", filepath.Join(dir, "no", "x.xml")}, "does not exist"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--markdown", filepath.Join(dir, "no", "x.md")}, "--markdown"},
		{[]string{"--original", stories, "--compressed", recoverBundle, "--kernels", "fast"}, "fast"},
	} {
		args := tc.args
		if tc.want != "does not exist" { // (that case gives its own --junit)
			args = append(args, "--junit", bad)
		}
		_, _, err := gate(args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
			t.Errorf("%v: error %v (exit %d), want one mentioning %q with exit 2", tc.args, err, exitCode(err), tc.want)
		}
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a gate that could not measure wrote %s (%v)", bad, err)
	}
	if _, _, err := squeeze(t, "gate", "--original", stories, "--compressed", stories); err == nil || !strings.Contains(err.Error(), "--text") || exitCode(err) != 2 {
		t.Errorf("without --text: %v", err)
	}
}
