package main

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/runtime"
)

type runOptions struct {
	model   modelFlags
	Prompt  string
	N       int
	Temp    float32
	TopP    float32
	Seed    uint64
	Threads int
	Stats   bool
	Adapter string
	Kernels kernelFlag
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &runOptions{}
	c := &cobra.Command{
		Use:   "run MODEL --prompt TEXT",
		Short: "Generate text with a model or bundle",
		Args:  cobra.MaximumNArgs(1),
		RunE:  func(c *cobra.Command, args []string) error { return runRun(o, args, stdout, stderr) },
	}
	o.model.bind(c)
	o.Kernels.bind(c)
	f := c.Flags()
	f.StringVarP(&o.Prompt, "prompt", "p", "", "prompt text")
	f.IntVarP(&o.N, "tokens", "n", 256, "new tokens to generate at most")
	f.Float32Var(&o.Temp, "temp", 1.0, "sampling temperature (0 = greedy)")
	f.Float32Var(&o.TopP, "top-p", 0.9, "nucleus sampling mass (1 = off)")
	f.Uint64Var(&o.Seed, "seed", 0, "random seed (0 = from the clock)")
	f.IntVar(&o.Threads, "threads", 0, "threads (0 = all CPUs)")
	f.BoolVar(&o.Stats, "stats", false, "print tokens/s to stderr")
	f.StringVar(&o.Adapter, "adapter", "", "apply the bundle's adapter set of this name (none = the base alone)")
	return c
}

func runRun(o *runOptions, args []string, stdout, stderr io.Writer) error {
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := needTokenizer(m); err != nil {
		return err
	}
	if o.Temp < 0 {
		return fmt.Errorf("--temp %v: must be >= 0", o.Temp)
	}
	restore, err := o.Kernels.apply()
	if err != nil {
		return err
	}
	defer restore()
	rt, err := runtime.New(m, runtime.Options{Threads: o.Threads})
	if err != nil {
		return err
	}
	if err := selectAdapter(m, rt, o.Adapter); err != nil {
		return err
	}
	seed := o.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	tok := m.Tokenizer
	prompt := tok.Encode(o.Prompt, true)
	if len(prompt) >= m.Config.SeqLen {
		return fmt.Errorf("--prompt is %d tokens, the model's context is %d", len(prompt), m.Config.SeqLen)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	w.WriteString(tok.Decode(prompt[1:]))
	s := rt.NewState(0)
	var stop []int
	for _, id := range []int{tok.BOS, tok.EOS} {
		if id >= 0 {
			stop = append(stop, id)
		}
	}
	start := time.Now()
	out, err := rt.Generate(s, prompt, o.N, runtime.NewSampler(o.Temp, o.TopP, seed), stop, func(prev, next int) {
		w.WriteString(tok.Piece(prev, next))
		w.Flush()
	})
	w.WriteString("\n")
	if err != nil {
		return err
	}
	if o.Stats {
		el := time.Since(start).Seconds()
		fmt.Fprintf(stderr, "%d prompt + %d generated tokens in %.3fs (%.1f tokens/s overall)\n", len(prompt), len(out), el, float64(len(prompt)+len(out))/el)
	}
	return nil
}
