package eval

import (
	"fmt"
	"math"
)

// Thresholds are what a compressed model must meet against its original
// on the same text. A zero (or negative) field is not checked.
type Thresholds struct {
	// MaxKLD bounds the mean KL(original || compressed) per scored token.
	MaxKLD float64
	// MaxKLDP99 bounds its 99th percentile (the worst positions).
	MaxKLDP99 float64
	// MaxPPLRatio bounds compressed PPL / original PPL (1.05 = at most 5%
	// higher).
	MaxPPLRatio float64
	// MinTop1 is the least fraction of positions where both models put
	// the same token on top.
	MinTop1 float64
}

// Check is one threshold applied to one measured value.
type Check struct {
	Metric string  `json:"metric"` // kld_mean, kld_p99, ppl_ratio, top1_agree
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // "<=" or ">="
	Limit  float64 `json:"limit"`
	Pass   bool    `json:"pass"`
}

func (c Check) String() string {
	verdict := "pass"
	if !c.Pass {
		verdict = "FAIL"
	}
	return fmt.Sprintf("%s %.5g (limit %s %.5g): %s", c.Metric, c.Value, c.Op, c.Limit, verdict)
}

// Gate applies th to r, a Result measured with the original as the
// reference (Evaluate(compressed, original, ...)), and returns one Check
// per threshold set, in a fixed order. A NaN value fails its check. It is
// an error to gate a Result without reference figures, or with no
// threshold at all (a gate that checks nothing passes everything).
func Gate(r *Result, th Thresholds) ([]Check, error) {
	if r == nil || r.KLDMean == nil || r.KLDP99 == nil || r.Top1Agree == nil || r.RefPPL == nil {
		return nil, fmt.Errorf("gate: the evaluation has no reference figures (evaluate with the original as the reference)")
	}
	if err := th.Validate(); err != nil {
		return nil, err
	}
	var cs []Check
	atMost := func(metric string, v, limit float64) {
		if limit > 0 {
			cs = append(cs, Check{Metric: metric, Value: v, Op: "<=", Limit: limit, Pass: v <= limit})
		}
	}
	atMost("kld_mean", *r.KLDMean, th.MaxKLD)
	atMost("kld_p99", *r.KLDP99, th.MaxKLDP99)
	atMost("ppl_ratio", r.PPL / *r.RefPPL, th.MaxPPLRatio)
	if th.MinTop1 > 0 {
		cs = append(cs, Check{Metric: "top1_agree", Value: *r.Top1Agree, Op: ">=", Limit: th.MinTop1, Pass: *r.Top1Agree >= th.MinTop1})
	}
	return cs, nil
}

// Validate refuses thresholds a gate cannot use: non-finite or negative
// values, a top-1 minimum above 1, or none set at all (a gate that checks
// nothing passes everything).
func (th Thresholds) Validate() error {
	set := false
	for _, v := range []float64{th.MaxKLD, th.MaxKLDP99, th.MaxPPLRatio, th.MinTop1} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("gate: threshold %v: expected a finite number >= 0 (0 = not checked)", v)
		}
		set = set || v > 0
	}
	if th.MinTop1 > 1 {
		return fmt.Errorf("gate: minimum top-1 agreement %v is above 1, which no model meets", th.MinTop1)
	}
	if !set {
		return fmt.Errorf("gate: no threshold set")
	}
	return nil
}
