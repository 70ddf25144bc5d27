package formats

import (
	"os"
	"path/filepath"

	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/formats/gguf"
	"github.com/squeeze-ml/squeeze/formats/hf"
	"github.com/squeeze-ml/squeeze/ir"
)

// loadByMagic dispatches on the first bytes of a file. It reports ok=false
// when the file is none of the magic-bearing formats.
func loadByMagic(path string, head []byte, opt LoadOptions) (*ir.Model, bool, error) {
	if len(head) >= 4 && string(head[:4]) == "GGUF" {
		m, err := gguf.Load(path)
		return m, true, err
	}
	if bundle.Sniff(head) {
		m, _, err := bundle.Load(path, bundle.Options{Verify: opt.VerifyBundle})
		return m, true, err
	}
	return nil, false, nil
}

// loadDir loads a Hugging Face checkpoint directory.
func loadDir(path string) (*ir.Model, error) {
	if _, err := os.Stat(filepath.Join(path, "config.json")); err != nil {
		return nil, &os.PathError{Op: "load", Path: path, Err: errNotHF}
	}
	return hf.Load(path)
}

type loadError string

func (e loadError) Error() string { return string(e) }

const errNotHF = loadError("a directory is read as a Hugging Face checkpoint, but it has no config.json")
