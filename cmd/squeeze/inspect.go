package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/reports"
)

type inspectOptions struct {
	model        modelFlags
	JSON         bool
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
	rep := inspectReport{Source: m.Source, Format: m.Format, Config: m.Config, Params: m.NumParams(),
		WeightBytes: m.WeightBytes(), PromptTokens: o.PromptTokens, Context: o.Context, Tokenizer: "none"}
	if m.Tokenizer != nil {
		rep.Tokenizer = fmt.Sprintf("%s, %d tokens", m.Tokenizer.Kind, m.Tokenizer.Size())
	}
	for _, n := range m.TensorNames() {
		t := m.Tensors[n]
		it := inspectTensor{Name: n, Shape: t.Shape, Type: ir.Encodings[t.Type].Name, Bytes: t.Bytes(),
			BPW: 8 * float64(t.Bytes()) / float64(t.Elems())}
		if t.Pal != nil {
			it.Group = t.Pal.GroupSize
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
		g := ""
		if t.Group > 0 {
			g = fmt.Sprint(t.Group)
		}
		rows = append(rows, []string{t.Name, fmt.Sprint(t.Shape), t.Type, g, reports.Bytes(t.Bytes), fmt.Sprintf("%.2f", t.BPW)})
	}
	if err := reports.Table(stdout, []string{"tensor", "shape", "type", "lut group", "bytes", "bits/weight"}, rows,
		[]string{"total", "", "", "", reports.Bytes(rep.WeightBytes), fmt.Sprintf("%.2f", 8*float64(rep.WeightBytes)/float64(rep.Params))}); err != nil {
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
