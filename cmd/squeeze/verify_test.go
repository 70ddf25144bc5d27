package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/bundle"
)

// TestVerifyCorruptBundle: one flipped byte inside a weight section goes
// unnoticed by a plain load (only the header and the manifest's SHA-256
// are checked, so start-up does not read the weights), and --verify on
// run, eval and inspect refuses the bundle naming the section.
func TestVerifyCorruptBundle(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.sqz")
	if _, se, err := squeeze(t, "compile", stories, "--target", "3.7bpw", "--group-size", "tensor", "--granularity", "tensor", "-o", good); err != nil {
		t.Fatalf("compile: %v\n%s", err, se)
	}
	m, man, err := bundle.Load(good, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	// the largest section: a weight tensor's indices
	sec := man.Sections[0]
	for _, s := range man.Sections {
		if s.Size > sec.Size {
			sec = s
		}
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	raw[sec.Offset+sec.Size/2] ^= 0x5a
	bad := filepath.Join(dir, "bad.sqz")
	if err := os.WriteFile(bad, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := squeeze(t, "run", bad, "--prompt", "Once", "-n", "4", "--temp", "0"); err != nil {
		t.Fatalf("run without --verify: %v (a flipped weight byte is only found by --verify)", err)
	}
	for _, args := range [][]string{
		{"run", bad, "--verify", "--prompt", "Once", "-n", "4"},
		{"eval", bad, "--verify", "--text", "../../testdata/tinystories/calib.txt", "--ctx", "64", "--max-windows", "1"},
		{"inspect", bad, "--verify"},
	} {
		_, _, err := squeeze(t, args...)
		if err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") || !strings.Contains(err.Error(), sec.Name) {
			t.Errorf("squeeze %v: error %v, want a SHA-256 mismatch naming section %q", args, err, sec.Name)
		}
	}
	if _, _, err := squeeze(t, "run", good, "--verify", "--prompt", "Once", "-n", "4", "--temp", "0"); err != nil {
		t.Errorf("run --verify on the intact bundle: %v", err)
	}
}
