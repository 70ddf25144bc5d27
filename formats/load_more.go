package formats

import (
	"fmt"

	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/ir"
)

// loadByMagic dispatches on the first bytes of a file. It reports ok=false
// when the file is none of the magic-bearing formats.
func loadByMagic(path string, head []byte, opt LoadOptions) (*ir.Model, bool, error) {
	if string(head[:min(4, len(head))]) == "GGUF" {
		return nil, true, fmt.Errorf("%s: GGUF support is not built yet", path)
	}
	if bundle.Sniff(head) {
		m, _, err := bundle.Load(path, bundle.Options{Verify: opt.VerifyBundle})
		return m, true, err
	}
	return nil, false, nil
}

func loadDir(path string) (*ir.Model, error) {
	return nil, fmt.Errorf("%s: Hugging Face directories are not supported yet", path)
}
