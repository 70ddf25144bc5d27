package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats/gguf"
	"github.com/squeeze-ml/squeeze/formats/hf"
	"github.com/squeeze-ml/squeeze/ir"
)

func init() { extraCommands = append(extraCommands, newExportCmd) }

type exportOptions struct {
	model  modelFlags
	Format string
	DType  string
	Out    string
}

func newExportCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &exportOptions{}
	c := &cobra.Command{
		Use:   "export MODEL --format gguf|hf -o PATH",
		Short: "Write a model as GGUF (llama.cpp) or a Hugging Face directory",
		Args:  cobra.MaximumNArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runExport(o, args, stdout) },
	}
	o.model.bind(c)
	f := c.Flags()
	f.StringVar(&o.Format, "format", "", "gguf or hf (required)")
	f.StringVar(&o.DType, "dtype", "f32", "weight type: f32 or f16 (GGUF keeps norm vectors f32, as llama.cpp does; HF stores everything in the one dtype)")
	f.StringVarP(&o.Out, "output", "o", "", "output file (gguf) or directory (hf) (required)")
	return c
}

func runExport(o *exportOptions, args []string, stdout io.Writer) error {
	var dt ir.DType
	switch o.DType {
	case "f32":
		dt = ir.F32
	case "f16":
		dt = ir.F16
	default:
		return fmt.Errorf("--dtype %q: expected f32 or f16", o.DType)
	}
	if o.Out == "" {
		return fmt.Errorf("-o PATH is required")
	}
	if o.Format != "gguf" && o.Format != "hf" {
		return fmt.Errorf("--format %q: expected gguf or hf", o.Format)
	}
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	if o.Format == "gguf" {
		err = gguf.Write(o.Out, m, dt)
	} else {
		err = hf.Write(o.Out, m, dt)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s)\n", o.Out, o.Format, o.DType)
	return nil
}
