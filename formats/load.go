package formats

import (
	"fmt"
	"os"
	"strings"

	"github.com/squeeze-ml/squeeze/formats/llama2c"
	"github.com/squeeze-ml/squeeze/ir"
)

// LoadOptions tune Load.
type LoadOptions struct {
	// Tokenizer is an explicit tokenizer file for llama2.c checkpoints.
	Tokenizer string
	// Seed for synthetic models.
	Seed uint64
	// VerifyBundle checks every bundle section's SHA-256 on load.
	VerifyBundle bool
}

// Load opens a model of any supported format, chosen by content: a
// directory is a Hugging Face checkpoint, a file starting with "GGUF" is
// GGUF, one starting with the bundle magic is a squeeze bundle, anything
// else is tried as a llama2.c checkpoint. "synthetic:NAME" builds a
// synthetic model of a named shape.
func Load(path string, opt LoadOptions) (*ir.Model, error) {
	if name, ok := strings.CutPrefix(path, "synthetic:"); ok {
		return ir.Synthetic(name, opt.Seed)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return loadDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 8)
	n, _ := f.Read(head)
	f.Close()
	head = head[:n]
	if m, ok, err := loadByMagic(path, head, opt); ok {
		return m, err
	}
	if opt.Tokenizer != "" {
		if _, err := os.Stat(opt.Tokenizer); err != nil {
			return nil, fmt.Errorf("--tokenizer: %w", err)
		}
	}
	return llama2c.Load(path, opt.Tokenizer)
}
