package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/reports"
)

type inspectOptions struct {
	model        modelFlags
	JSON         bool
	Original     string
	PromptTokens int
	Context      int
}

func newInspectCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &inspectOptions{}
	c := &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Show a model's config, tensors and ops with their FLOPs and bytes",
		Args:  cobra.MaximumNArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runInspect(o, args, stdout) },
	}
	o.model.bind(c)
	c.Flags().BoolVar(&o.JSON, "json", false, "print JSON")
	c.Flags().StringVar(&o.Original, "original", "", "bundles: the original model, to show each tensor's relative error")
	c.Flags().IntVar(&o.PromptTokens, "prompt-tokens", 128, "prefill length for the op costs")
	c.Flags().IntVar(&o.Context, "context", 256, "decode context for the op costs")
	return c
}

type inspectTensor struct {
	Name  string  `json:"name"`
	Shape []int   `json:"shape"`
	Type  string  `json:"type"`
	Bytes int64   `json:"bytes"`
	BPW   float64 `json:"bpw"`
	Group int     `json:"group_size,omitempty"`
	// Palettized tensors: number of LUTs, their value range, row scales.
	LUTs     int      `json:"luts,omitempty"`
	LUTMin   float32  `json:"lut_min,omitempty"`
	LUTMax   float32  `json:"lut_max,omitempty"`
	Scales   bool     `json:"row_scales,omitempty"`
	RelError *float64 `json:"rel_error,omitempty"` // ||W - W'||^2 / ||W||^2 against --original
	// Parts of a lutmix tensor (per-group widths), top to bottom.
	Parts []inspectPart `json:"parts,omitempty"`
}

type inspectPart struct {
	Rows   int    `json:"rows"`
	Type   string `json:"type"`
	Group  int    `json:"group_size"`
	Scales bool   `json:"row_scales,omitempty"`
}

type inspectOp struct {
	ir.Op
	Prefill ir.Cost `json:"prefill"`
	Decode  ir.Cost `json:"decode"`
}

type inspectReport struct {
	Source       string          `json:"source"`
	Format       string          `json:"format"`
	Config       ir.Config       `json:"config"`
	Params       int64           `json:"params"`
	WeightBytes  int64           `json:"weight_bytes"`
	Tokenizer    string          `json:"tokenizer"`
	Tensors      []inspectTensor `json:"tensors"`
	PromptTokens int             `json:"prompt_tokens"`
	Context      int             `json:"context"`
	Ops          []inspectOp     `json:"ops"`
}

func runInspect(o *inspectOptions, args []string, stdout io.Writer) error {
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	var orig *ir.Model
	if o.Original != "" {
		if orig, err = formats.Load(o.Original, formats.LoadOptions{Tokenizer: o.model.Tokenizer}); err != nil {
			return fmt.Errorf("--original: %w", err)
		}
		defer orig.Close()
	}
	rep := inspectReport{Source: m.Source, Format: m.Format, Config: m.Config, Params: m.NumParams(),
		WeightBytes: m.WeightBytes(), PromptTokens: o.PromptTokens, Context: o.Context, Tokenizer: "none"}
	if m.Tokenizer != nil {
		rep.Tokenizer = fmt.Sprintf("%s, %d tokens", m.Tokenizer.Kind, m.Tokenizer.Size())
	}
	for _, n := range m.TensorNames() {
		t := m.Tensors[n]
		it := inspectTensor{Name: n, Shape: t.Shape, Type: ir.Encodings[t.Type].Name, Bytes: t.Bytes(),
			BPW: 8 * float64(t.Bytes()) / float64(t.Elems())}
		parts := []*ir.Tensor{t}
		if t.Type == ir.LUTMIX {
			parts = t.Parts
		}
		first := true
		for _, pt := range parts {
			if pt.Pal == nil {
				continue
			}
			if t.Type == ir.LUTMIX {
				it.Parts = append(it.Parts, inspectPart{Rows: pt.Rows(), Type: ir.Encodings[pt.Type].Name, Group: pt.Pal.GroupSize, Scales: pt.Pal.Scales != nil})
			}
			it.Group = max(it.Group, pt.Pal.GroupSize)
			it.LUTs += pt.NumGroups()
			it.Scales = it.Scales || pt.Pal.Scales != nil
			for _, h := range pt.Pal.LUT {
				v := ir.F16ToF32(h)
				if first || v < it.LUTMin {
					it.LUTMin = v
				}
				if first || v > it.LUTMax {
					it.LUTMax = v
				}
				first = false
			}
		}
		if orig != nil {
			if ot, ok := orig.Tensors[n]; ok && ot.Elems() == t.Elems() {
				a, b := ot.F32(), t.F32()
				var num, den float64
				for i := range a {
					d := float64(a[i] - b[i])
					num += d * d
					den += float64(a[i]) * float64(a[i])
				}
				if den > 0 {
					r := num / den
					it.RelError = &r
				}
			}
		}
		rep.Tensors = append(rep.Tensors, it)
	}
	for _, op := range m.Config.Ops() {
		rep.Ops = append(rep.Ops, inspectOp{Op: op, Prefill: m.OpCost(op, ir.Prefill(o.PromptTokens)), Decode: m.OpCost(op, ir.DecodeAt(o.Context))})
	}
	if o.JSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	c := m.Config
	fmt.Fprintf(stdout, "%s (%s): %s parameters, %s of weights, tokenizer: %s\n\n", m.Source, m.Format, reports.SI(float64(rep.Params)), reports.Bytes(rep.WeightBytes), rep.Tokenizer)
	cfg := [][]string{
		{"dim", fmt.Sprint(c.Dim)}, {"layers", fmt.Sprint(c.Layers)}, {"heads / kv heads", fmt.Sprintf("%d / %d", c.Heads, c.KVHeads)},
		{"head dim", fmt.Sprint(c.HeadDim)}, {"ffn", fmt.Sprint(c.FFN)}, {"vocab", fmt.Sprint(c.Vocab)}, {"context", fmt.Sprint(c.SeqLen)},
		{"rope theta", fmt.Sprint(c.RopeTheta)}, {"rope style", map[bool]string{false: "interleaved pairs", true: "neox halves"}[c.RopeNeoX]},
		{"norm eps", fmt.Sprint(c.NormEps)}, {"tied embeddings", fmt.Sprint(c.TiedEmbed)}, {"qkv bias", fmt.Sprint(c.QKVBias)},
	}
	if err := reports.Table(stdout, []string{"config", "value"}, cfg, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	var rows [][]string
	for _, t := range rep.Tensors {
		g, luts, rel := "", "", ""
		typ := t.Type
		if len(t.Parts) > 0 {
			var w []string
			for _, p := range t.Parts {
				w = append(w, fmt.Sprintf("%s:%d", strings.TrimPrefix(p.Type, "lut"), p.Rows))
			}
			typ = "lutmix " + strings.Join(w, " ")
		}
		if t.Group > 0 {
			g = fmt.Sprint(t.Group)
			luts = fmt.Sprintf("%d in [%.3g, %.3g]", t.LUTs, t.LUTMin, t.LUTMax)
			if t.Scales {
				luts += " + row scales"
			}
		}
		if t.RelError != nil {
			rel = fmt.Sprintf("%.2e", *t.RelError)
		}
		rows = append(rows, []string{t.Name, fmt.Sprint(t.Shape), typ, g, luts, reports.Bytes(t.Bytes), fmt.Sprintf("%.2f", t.BPW), rel})
	}
	if err := reports.Table(stdout, []string{"tensor", "shape", "type", "lut group", "luts", "bytes", "bits/weight", "rel. error"}, rows,
		[]string{"total", "", "", "", "", reports.Bytes(rep.WeightBytes), fmt.Sprintf("%.2f", 8*float64(rep.WeightBytes)/float64(rep.Params)), ""}); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	rows = rows[:0]
	var pf, df float64
	var pb, db int64
	for _, op := range rep.Ops {
		pf += op.Prefill.FLOPs
		df += op.Decode.FLOPs
		pb += op.Prefill.WeightBytes + op.Prefill.ActBytes + op.Prefill.KVBytes
		db += op.Decode.WeightBytes + op.Decode.ActBytes + op.Decode.KVBytes
		rows = append(rows, []string{op.Name, string(op.Kind), reports.SI(op.Prefill.FLOPs), reports.Bytes(op.Prefill.WeightBytes + op.Prefill.ActBytes + op.Prefill.KVBytes),
			reports.SI(op.Decode.FLOPs), reports.Bytes(op.Decode.WeightBytes), reports.Bytes(op.Decode.ActBytes + op.Decode.KVBytes)})
	}
	return reports.Table(stdout, []string{"op", "kind", fmt.Sprintf("prefill%d flops", o.PromptTokens), "prefill bytes",
		fmt.Sprintf("decode@%d flops", o.Context), "decode weight bytes", "decode act+kv bytes"}, rows,
		[]string{"total", "", reports.SI(pf), reports.Bytes(pb), reports.SI(df), "", reports.Bytes(db)})
}
