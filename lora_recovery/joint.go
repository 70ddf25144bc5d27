package lorarecovery

import (
	"fmt"
	"math"

	"github.com/squeeze-ml/squeeze/ir"
)

// Joint training: palette QAT (qat.go) and LoRA adapters in one run. The
// adapters start from the importance-weighted residual of the compiled
// weights (as Train) and take their own Adam steps beside the latent
// weights, LUT entries, row scales and norms, on the same batches; the
// held-out evaluations, the best checkpoint and the moving average cover
// all of them. The sequential recipe (QAT, then Train on the QAT'd base)
// trains the adapters on indices that no longer move; here the indices can
// settle around what the adapters correct.

// JointAdapters configures the adapters of a joint run
// (TuneOptions.Adapters, with TuneOptions.QAT).
type JointAdapters struct {
	Rank    int            // adapter rank (>= 1)
	Ranks   map[string]int // per-target overrides of Rank, as Options.Ranks
	Targets []string       // linear kinds or tensor names [every linear]
	// Importance: per-input-channel calibration importance for the
	// residual initialisation, keyed by target name (missing: uniform).
	Importance map[string][]float32
	LR         float64 // peak Adam step of the adapters [1e-2, as Train]
	// Init is where the adapters start (InitResidual, the zero value, or
	// InitZero), as Options.Init.
	Init InitMode
	Name string // adapter set name ["lora-r<rank>"]
}

// addAdapters attaches residual-initialised adapters to the tuner's
// student net, after the palette parameters (P) and latent weights (N) in
// the gradient layout, and returns the number of adapter parameters.
func (tu *lutTuner) addAdapters(teacher, student *ir.Model, ja *JointAdapters, P, N int) (int, error) {
	tr := tu.tr
	c := tr.student.cfg
	if ja.Rank < 1 {
		return 0, fmt.Errorf("joint adapters: rank %d, expected >= 1", ja.Rank)
	}
	if !(ja.LR >= 0) {
		return 0, fmt.Errorf("joint adapters: learning rate %v, expected > 0", ja.LR)
	}
	if ja.LR == 0 {
		ja.LR = 1e-2
	}
	if ja.Init != InitResidual && ja.Init != InitZero {
		return 0, fmt.Errorf("joint adapters: unknown init mode %d", ja.Init)
	}
	targets, err := resolveTargets(c, ja.Targets)
	if err != nil {
		return 0, err
	}
	maxRank, err := setRanks(c, targets, ja.Rank, ja.Ranks, "joint adapters")
	if err != nil {
		return 0, err
	}
	tr.targets = targets
	tr.opt.Rank, tr.opt.Alpha, tr.opt.Init, tr.opt.Importance = ja.Rank, float64(ja.Rank), ja.Init, ja.Importance
	if err := tr.initAdapters(teacher, student, 1); err != nil {
		return 0, err
	}
	tr.bind(true)
	// The workers' activations were made before the adapters were bound:
	// make them again with the adapters' scratch.
	for w, a := range tr.work {
		b := newActs(tr.student, tr.T, maxRank, true)
		b.sink = a.sink
		tr.work[w] = b
	}
	tu.adOff = P + N
	return len(tr.theta), nil
}

// adapterStep clips the adapters' batch gradient g to global norm clip
// (none when clip <= 0) and takes one Adam step of size lr on theta (m, v:
// the Adam moments). Train and joint runs share it.
func adapterStep(theta, m, v, g []float32, step int, lr, clip float64) {
	if clip > 0 {
		var ss float64
		for _, x := range g {
			ss += float64(x) * float64(x)
		}
		if n := math.Sqrt(ss); n > clip {
			s := float32(clip / n)
			for i := range g {
				g[i] *= s
			}
		}
	}
	const b1, b2, adamEps = 0.9, 0.999, 1e-8
	bc1 := 1 - math.Pow(b1, float64(step))
	bc2 := 1 - math.Pow(b2, float64(step))
	stepSize := float32(lr / bc1)
	sq2 := float32(math.Sqrt(bc2))
	for i, x := range g {
		m[i] = b1*m[i] + (1-b1)*x
		v[i] = b2*v[i] + (1-b2)*x*x
		theta[i] -= stepSize * m[i] / (float32(math.Sqrt(float64(v[i])))/sq2 + adamEps)
	}
}
