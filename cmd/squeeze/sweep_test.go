package main

import (
	"encoding/json"
	"testing"
)

func TestSweepCurveIsMonotone(t *testing.T) {
	out, _, err := squeeze(t, "sweep", stories, "--targets", "2.5,4", "--bits", "2,4", "--group-size", "tensor",
		"--text", "../../testdata/tinystories/dev.txt", "--max-windows", "3", "--ctx", "128", "--json")
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
}
