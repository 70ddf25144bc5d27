package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/talaria"
)

// budgetFlags are compile's device budgets (Talaria-guided allocation).
type budgetFlags struct {
	Device       string
	MaxDecodeMs  float64
	MaxPrefillMs float64
	MaxEnergyMJ  float64
	PromptTokens int
	Context      int
	Kernels      kernelFlag
}

func (b *budgetFlags) bind(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&b.Device, "device", "", "device profile for the budgets (a built-in, host, or a JSON file)")
	f.Float64Var(&b.MaxDecodeMs, "max-decode-ms", 0, "budget: predicted decode latency per token on --device, ms")
	f.Float64Var(&b.MaxPrefillMs, "max-prefill-ms-per-token", 0, "budget: predicted prefill latency per prompt token, ms")
	f.Float64Var(&b.MaxEnergyMJ, "max-energy-mj-per-token", 0, "budget: predicted decode energy per token, mJ")
	f.IntVar(&b.PromptTokens, "budget-prompt-tokens", 1024, "prefill length the budgets are costed at")
	f.StringVar(&b.Kernels.name, "kernels", "", "with --device host: the arithmetic the bundle will run with, which the host profile measures (int8, run's default, or float; SQUEEZE_KERNELS sets the default). Compilation itself always uses the exact float arithmetic")
	f.IntVar(&b.Context, "budget-context", 0, "decode context the budgets are costed at (default: the prompt length)")
}

func (b *budgetFlags) active() bool {
	return b.MaxDecodeMs > 0 || b.MaxPrefillMs > 0 || b.MaxEnergyMJ > 0
}

func (b *budgetFlags) check() error {
	if _, err := b.Kernels.mode(); err != nil {
		return err
	}
	if b.active() && b.Device == "" {
		return fmt.Errorf("--max-decode-ms / --max-prefill-ms-per-token / --max-energy-mj-per-token need --device")
	}
	for name, v := range map[string]float64{"--max-decode-ms": b.MaxDecodeMs, "--max-prefill-ms-per-token": b.MaxPrefillMs, "--max-energy-mj-per-token": b.MaxEnergyMJ} {
		if v < 0 {
			return fmt.Errorf("%s %v: must be positive", name, v)
		}
	}
	return nil
}

// allocateWithBudgets chooses one candidate per tensor minimising predicted
// damage subject to the size target and the device budgets, with Talaria's
// per-op costs (talaria.SolveBudgets), and returns the plan and the
// predicted figures. An infeasible request fails with the best figures
// achievable.
func allocateWithBudgets(m *ir.Model, cands []palettize.TensorCandidates, target float64, b *budgetFlags, stderr io.Writer) (*palettize.Plan, *talaria.BudgetResult, error) {
	restore, err := b.Kernels.apply()
	if err != nil {
		return nil, nil, err
	}
	dev, err := talaria.ResolveDevice(b.Device, talaria.HostOptions{Log: stderr})
	restore() // the host profile is measured in the bundle's arithmetic; compile stays on float
	if err != nil {
		return nil, nil, err
	}
	choices := map[string][]talaria.Choice{}
	for _, tc := range cands {
		for _, o := range tc.Options {
			choices[tc.Name] = append(choices[tc.Name], talaria.Choice{
				Encoding: talaria.TensorEncoding{Bits: o.Bits, GroupSize: o.GroupSize, PerRowScale: o.PerRowScale},
				Damage:   o.Damage, Bytes: o.Bytes})
		}
	}
	req := talaria.BudgetRequest{
		Profile: talaria.Options{Config: m.Config, Model: m.Source, Device: dev, PrefillTokens: b.PromptTokens, DecodeContext: b.Context},
		Choices: choices,
		Budgets: talaria.Budgets{MaxDecodeMsPerToken: b.MaxDecodeMs, MaxPrefillMsPerToken: b.MaxPrefillMs,
			MaxEnergyMJPerToken: b.MaxEnergyMJ, TargetBPW: target},
	}
	res, err := talaria.SolveBudgets(req)
	if err != nil {
		var inf *talaria.InfeasibleError
		if errors.As(err, &inf) {
			return nil, nil, fmt.Errorf("the budgets cannot be met on %s: %v; best achievable (each alone): decode %.3f ms/token, prefill %.4f ms/token, %.3f mJ/token, %.3f bpw",
				dev.Name, inf.Violations, inf.Best.DecodeMsPerToken, inf.Best.PrefillMsPerToken, inf.Best.EnergyMJPerToken, inf.Best.ChoiceBPW)
		}
		return nil, nil, err
	}
	plan := &palettize.Plan{Version: palettize.PlanVersion, TargetBPW: target}
	for _, tc := range cands {
		enc, ok := res.Plan[tc.Name]
		if !ok {
			return nil, nil, fmt.Errorf("budgets: no choice for tensor %q", tc.Name)
		}
		found := false
		for _, o := range tc.Options {
			if o.Bits == enc.Bits && o.GroupSize == enc.GroupSize && o.PerRowScale == enc.PerRowScale {
				plan.Tensors = append(plan.Tensors, palettize.PlanEntry{Name: tc.Name, Shape: tc.Shape, Bits: o.Bits, GroupSize: o.GroupSize,
					PerRowScale: o.PerRowScale, Damage: o.Damage, Bytes: o.Bytes, BPW: 8 * float64(o.Bytes) / float64(tc.Weights)})
				plan.TotalWeights += tc.Weights
				plan.TotalBits += 8 * o.Bytes
				plan.PredictedDamage += o.Damage
				found = true
				break
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("budgets: chosen encoding %+v of %q is not one of its candidates", enc, tc.Name)
		}
	}
	plan.AchievedBPW = float64(plan.TotalBits) / float64(plan.TotalWeights)
	return plan, res, nil
}
