package eval

import (
	"math"
	"strings"
	"testing"
)

func gateResult(ppl, refPPL, kld, p99, top1 float64) *Result {
	return &Result{PPL: ppl, RefPPL: &refPPL, KLDMean: &kld, KLDP99: &p99, Top1Agree: &top1}
}

func TestGate(t *testing.T) {
	all := Thresholds{MaxKLD: 0.1, MaxKLDP99: 1, MaxPPLRatio: 1.05, MinTop1: 0.9}
	for _, tc := range []struct {
		name string
		r    *Result
		th   Thresholds
		want string // the checks' verdicts in order
	}{
		{"all pass", gateResult(5.1, 5, 0.05, 0.5, 0.95), all, "kld_mean:T kld_p99:T ppl_ratio:T top1_agree:T"},
		{"at the limits", gateResult(5.25, 5, 0.1, 1, 0.9), all, "kld_mean:T kld_p99:T ppl_ratio:T top1_agree:T"},
		{"just over", gateResult(5.2501, 5, 0.10001, 1.0001, 0.8999), all, "kld_mean:F kld_p99:F ppl_ratio:F top1_agree:F"},
		{"only kld", gateResult(9, 5, 0.05, 7, 0.1), Thresholds{MaxKLD: 0.1}, "kld_mean:T"},
		{"NaN fails", gateResult(math.NaN(), 5, math.NaN(), math.NaN(), math.NaN()), all, "kld_mean:F kld_p99:F ppl_ratio:F top1_agree:F"},
	} {
		cs, err := Gate(tc.r, tc.th)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Metric+":"+map[bool]string{true: "T", false: "F"}[c.Pass])
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, g, tc.want)
		}
	}
	cs, _ := Gate(gateResult(5.5, 5, 0.2, 1, 0.9), Thresholds{MaxPPLRatio: 1.05})
	if len(cs) != 1 || math.Abs(cs[0].Value-1.1) > 1e-12 || cs[0].String() != "ppl_ratio 1.1 (limit <= 1.05): FAIL" {
		t.Errorf("ppl ratio check %+v (%s)", cs, cs[0])
	}
	for _, tc := range []struct {
		r    *Result
		th   Thresholds
		want string
	}{
		{&Result{PPL: 5}, all, "no reference"},
		{gateResult(5, 5, 0, 0, 1), Thresholds{}, "no threshold"},
		{gateResult(5, 5, 0, 0, 1), Thresholds{MaxKLD: math.NaN()}, "finite number"},
		{gateResult(5, 5, 0, 0, 1), Thresholds{MaxKLD: 0.1, MaxPPLRatio: -1}, "finite number >= 0"},
		{gateResult(5, 5, 0, 0, 1), Thresholds{MinTop1: 1.5}, "above 1"},
	} {
		if _, err := Gate(tc.r, tc.th); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.th, err, tc.want)
		}
	}
}
