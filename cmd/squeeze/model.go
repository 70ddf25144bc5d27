package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/ir"
)

// modelFlags are the flags every command that takes a MODEL shares.
type modelFlags struct {
	Tokenizer string
	Synthetic string
	Seed      uint64
	// Verify checks every section's SHA-256 when MODEL is a bundle.
	Verify bool
}

func (f *modelFlags) bind(c *cobra.Command) {
	c.Flags().StringVar(&f.Tokenizer, "tokenizer", "", "tokenizer file for llama2.c checkpoints (default: the tokenizer.bin or tok*.bin beside the model)")
	c.Flags().StringVar(&f.Synthetic, "synthetic", "", fmt.Sprintf("use a synthetic model of a named shape instead of MODEL (%v; random weights: speed only)", ir.SyntheticNames()))
	c.Flags().BoolVar(&f.Verify, "verify", false, "when MODEL is a .sqz bundle, check every section's SHA-256 before using it (reads the whole file once; without it only the header and the manifest's SHA-256 are checked, and weights are paged in as they are used)")
}

// load opens the model named by args[0] or --synthetic.
func (f *modelFlags) load(args []string) (*ir.Model, error) {
	switch {
	case f.Synthetic != "" && len(args) > 0:
		return nil, fmt.Errorf("give either MODEL or --synthetic, not both")
	case f.Synthetic != "":
		return formats.Load("synthetic:"+f.Synthetic, formats.LoadOptions{Seed: 1})
	case len(args) == 0:
		return nil, fmt.Errorf("missing MODEL (a llama2.c .bin, a GGUF file, a Hugging Face directory or a .sqz bundle)")
	}
	return formats.Load(args[0], formats.LoadOptions{Tokenizer: f.Tokenizer, VerifyBundle: f.Verify})
}

// sameShape refuses an original whose shape is not that of the model
// compressed was made from (recover, gate).
func sameShape(orig, compressed *ir.Model) error {
	oc, bc := orig.Config, compressed.Config
	if oc.Dim != bc.Dim || oc.Layers != bc.Layers || oc.Heads != bc.Heads || oc.KVHeads != bc.KVHeads ||
		oc.HeadDim != bc.HeadDim || oc.FFN != bc.FFN || oc.Vocab != bc.Vocab {
		return fmt.Errorf("the original %s (dim %d, %d layers, ffn %d, vocab %d) is not the model %s was compiled from (dim %d, %d layers, ffn %d, vocab %d)",
			orig.Source, oc.Dim, oc.Layers, oc.FFN, oc.Vocab, compressed.Source, bc.Dim, bc.Layers, bc.FFN, bc.Vocab)
	}
	return nil
}

// checkOutDir refuses an output path (of flag) whose directory does not
// exist, before any long work rather than at the end of it.
func checkOutDir(flag, path string) error {
	d := filepath.Dir(path)
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		return fmt.Errorf("%s %s: directory %s does not exist", flag, path, d)
	}
	return nil
}

func needTokenizer(m *ir.Model) error {
	if m.Tokenizer == nil {
		return fmt.Errorf("%s: no tokenizer found; pass --tokenizer PATH (llama2.c) or use a model that embeds one", m.Source)
	}
	return nil
}
