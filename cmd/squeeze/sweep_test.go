package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSweepCurveIsMonotone also draws the curve with the llama.cpp
// anchors (--plot, --anchors): the SVG carries both series' labels.
func TestSweepCurveIsMonotone(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "curve.svg")
	out, _, err := squeeze(t, "sweep", stories, "--targets", "2.5,4", "--bits", "2,4", "--group-size", "tensor",
		"--text", "../../testdata/tinystories/dev.txt", "--max-windows", "3", "--ctx", "128", "--json",
		"--plot", svg, "--anchors", "../../testdata/anchors/llama.cpp-stories260K.csv")
	if err != nil {
		t.Fatal(err)
	}
	var r sweepResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != 2 {
		t.Fatalf("%d points", len(r.Points))
	}
	lo, hi := r.Points[0], r.Points[1]
	for _, p := range r.Points {
		if p.BPW > p.TargetBPW {
			t.Errorf("target %.3g: achieved %.4f bpw exceeds it", p.TargetBPW, p.BPW)
		}
	}
	if !(hi.KLDMean < lo.KLDMean) || !(hi.Bytes > lo.Bytes) {
		t.Errorf("more bits must cost bytes and cut divergence: %+v vs %+v", lo, hi)
	}
	raw, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"squeeze (", "llama.cpp + imatrix", "llama.cpp without imatrix", "bits per weight"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the plot lacks %q", want)
		}
	}
}

// TestSweepPlotInputs: the plot's inputs are refused before any work.
func TestSweepPlotInputs(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("series,bpw,kld_mean\nx,7.1,zero\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	header := filepath.Join(dir, "header.csv")
	if err := os.WriteFile(header, []byte("name,bits,kld\nx,7.1,0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"sweep", stories, "--targets", "4", "--text", "../../testdata/tinystories/dev.txt"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--plot", filepath.Join(dir, "c.jpeg")}, "expected .svg"},
		{[]string{"--plot", filepath.Join(dir, "no", "c.svg")}, "does not exist"},
		{[]string{"--anchors", bad}, "goes with --plot"},
		{[]string{"--plot", filepath.Join(dir, "c.svg"), "--anchors", bad}, "row 1 (x)"},
		{[]string{"--plot", filepath.Join(dir, "c.svg"), "--anchors", header}, "header line"},
		{[]string{"--plot", filepath.Join(dir, "c.svg"), "--anchors", filepath.Join(dir, "none.csv")}, "none.csv"},
	} {
		if _, _, err := squeeze(t, append(base, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "c.svg")); !os.IsNotExist(err) {
		t.Errorf("a refused sweep wrote its plot (%v)", err)
	}
}
