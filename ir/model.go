package ir

import (
	"errors"
	"fmt"
	"io"

	"github.com/squeeze-ml/squeeze/formats/tokenizer"
)

// Model is a loaded model: configuration, named tensors and tokenizer. Tensor
// data may point into memory-mapped files; Close releases them.
type Model struct {
	Config    Config
	Tensors   map[string]*Tensor
	Tokenizer *tokenizer.Tokenizer // nil when the source has none
	Format    string               // "llama2c", "gguf", "hf", "bundle", "synthetic"
	Source    string               // path it was loaded from
	// Meta carries format-specific facts worth showing (e.g. GGUF general.name).
	Meta map[string]string
	// AdapterSets are LoRA adapter sets that travel with the model (a
	// bundle may hold several); the runtime applies one on request.
	AdapterSets []*AdapterSet
	closers     []io.Closer
}

// AddCloser registers a resource (a mapping) to release on Close.
func (m *Model) AddCloser(c io.Closer) { m.closers = append(m.closers, c) }

// Close releases the model's mappings. Tensors must not be used afterwards.
func (m *Model) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// Tensor returns a tensor by canonical name or an error naming it.
func (m *Model) Tensor(name string) (*Tensor, error) {
	t, ok := m.Tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q is missing", m.Source, name)
	}
	return t, nil
}

// Classifier returns the output projection: "output", or the token embedding
// when the embeddings are tied (shared, not copied).
func (m *Model) Classifier() *Tensor {
	if t, ok := m.Tensors[NameOutput]; ok && !m.Config.TiedEmbed {
		return t
	}
	return m.Tensors[NameTokenEmbd]
}

// Validate checks the config and that every expected tensor is present with
// the expected shape and a consistent encoding.
func (m *Model) Validate() error {
	if err := m.Config.Validate(); err != nil {
		return fmt.Errorf("%s: %w", m.Source, err)
	}
	for _, ns := range ExpectedShapes(m.Config) {
		t, ok := m.Tensors[ns.Name]
		if !ok {
			return fmt.Errorf("%s: tensor %q is missing", m.Source, ns.Name)
		}
		if !sameShape(t.Shape, ns.Shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, expected %v", m.Source, ns.Name, t.Shape, ns.Shape)
		}
		if err := t.Check(); err != nil {
			return fmt.Errorf("%s: %w", m.Source, err)
		}
	}
	if m.Tokenizer != nil && m.Tokenizer.Size() != m.Config.Vocab {
		return fmt.Errorf("%s: tokenizer has %d tokens, model vocab is %d", m.Source, m.Tokenizer.Size(), m.Config.Vocab)
	}
	return nil
}

// NumParams counts the parameters (a tied classifier counted once).
func (m *Model) NumParams() int64 {
	var n int64
	for _, t := range m.Tensors {
		n += int64(t.Elems())
	}
	return n
}

// WeightBytes is the storage size of all tensors.
func (m *Model) WeightBytes() int64 {
	var n int64
	for _, t := range m.Tensors {
		n += t.Bytes()
	}
	return n
}

// TensorNames returns the tensor names in canonical order (ExpectedShapes
// order, then any extra tensors sorted).
func (m *Model) TensorNames() []string {
	seen := map[string]bool{}
	var out []string
	for _, ns := range ExpectedShapes(m.Config) {
		if _, ok := m.Tensors[ns.Name]; ok {
			out = append(out, ns.Name)
			seen[ns.Name] = true
		}
	}
	var extra []string
	for n := range m.Tensors {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sortStrings(extra)
	return append(out, extra...)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
