package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// maxJSONFile caps config.json, the shard index and tokenizer_config.json.
const maxJSONFile = 64 << 20

// maxTokenizerFile caps tokenizer.json (large vocabularies are ~10 MB).
const maxTokenizerFile = 256 << 20

// Load reads a Hugging Face model directory: config.json, model.safetensors
// or model.safetensors.index.json with its shards, and tokenizer.json when
// present (without one the model loads with Tokenizer nil).
//
// Weights are memory-mapped: F32 tensors point into the mapping (copied only
// if misaligned, noted in Meta["hf.copied"]), F16 and BF16 tensors keep their
// encoded bytes. The model is in HF's rotate-half RoPE layout, so
// Config.RopeNeoX is true and q/k are not permuted.
func Load(dir string) (*ir.Model, error) {
	cfgPath := filepath.Join(dir, "config.json")
	cfgData, err := readLimited(cfgPath, maxJSONFile)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	pc, err := parseConfig(cfgPath, cfgData)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	m := &ir.Model{Config: pc.Config, Tensors: map[string]*ir.Tensor{}, Format: "hf", Source: dir,
		Meta: map[string]string{"hf.architecture": pc.Arch}}
	for i, n := range pc.Notes {
		m.Meta[fmt.Sprintf("hf.note%d", i)] = n
	}
	if err := loadWeights(dir, m); err != nil {
		m.Close()
		return nil, fmt.Errorf("hf: %w", err)
	}
	if err := loadTokenizer(dir, m, pc); err != nil {
		m.Close()
		return nil, fmt.Errorf("hf: %w", err)
	}
	if err := m.Validate(); err != nil {
		m.Close()
		return nil, fmt.Errorf("hf: %w", err)
	}
	return m, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, larger than the %d-byte limit", path, st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// shardFiles returns the safetensors files of dir and, for a sharded
// checkpoint, which file holds each tensor.
func shardFiles(dir string) (files []string, weightMap map[string]string, err error) {
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	if _, err := os.Stat(idxPath); err == nil {
		data, err := readLimited(idxPath, maxJSONFile)
		if err != nil {
			return nil, nil, err
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", idxPath, err)
		}
		if len(idx.WeightMap) == 0 {
			return nil, nil, fmt.Errorf("%s: weight_map is missing or empty", idxPath)
		}
		seen := map[string]bool{}
		for name, f := range idx.WeightMap {
			if f == "" || f != filepath.Base(f) || f == "." || f == ".." || strings.ContainsAny(f, `/\`) {
				return nil, nil, fmt.Errorf("%s: weight_map[%q] = %q, expected a file name in the same directory", idxPath, name, f)
			}
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
		return files, idx.WeightMap, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		return []string{"model.safetensors"}, nil, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "pytorch_model.bin")); err == nil {
		return nil, nil, fmt.Errorf("%s: has pytorch_model.bin but no model.safetensors; only safetensors weights are supported", dir)
	}
	return nil, nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", dir)
}

type located struct {
	file  string
	data  []byte // the whole mapped file
	entry stEntry
}

func loadWeights(dir string, m *ir.Model) error {
	files, weightMap, err := shardFiles(dir)
	if err != nil {
		return err
	}
	all := map[string]located{} // HF name -> where
	for _, f := range files {
		path := filepath.Join(dir, f)
		mp, err := fileio.MapFile(path)
		if err != nil {
			return err
		}
		m.AddCloser(mp)
		hdr, err := parseSafetensors(path, mp.Data)
		if err != nil {
			return err
		}
		for _, name := range sortedNames(hdr) {
			if weightMap != nil && weightMap[name] != f {
				continue // the index puts it elsewhere (or nowhere)
			}
			if prev, dup := all[name]; dup {
				return fmt.Errorf("%s: tensor %q is also in %s", path, name, prev.file)
			}
			all[name] = located{file: path, data: mp.Data, entry: hdr[name]}
		}
	}
	for name, f := range weightMap {
		if _, ok := all[name]; !ok && canonicalName(name) != "" {
			return fmt.Errorf("%s: tensor %q listed in model.safetensors.index.json is not in that file", filepath.Join(dir, f), name)
		}
	}
	c := m.Config
	var copied []string
	for _, ns := range ir.ExpectedShapes(c) {
		hn := hfName(ns.Name)
		loc, ok := all[hn]
		if !ok {
			if ns.Name == ir.NameOutput {
				return fmt.Errorf("%s: tensor %q (%s) is missing and tie_word_embeddings is false", dir, hn, ns.Name)
			}
			return fmt.Errorf("%s: tensor %q (%s) is missing", dir, hn, ns.Name)
		}
		e := loc.entry
		if !sameShape(e.Shape, ns.Shape) {
			return fmt.Errorf("%s: tensor %q (%s): shape %v, expected %v from config.json", loc.file, hn, ns.Name, e.Shape, ns.Shape)
		}
		t := &ir.Tensor{Name: ns.Name, Shape: append([]int(nil), ns.Shape...)}
		raw := loc.data[e.Begin:e.End:e.End]
		switch e.DType {
		case "F32":
			t.Type = ir.F32
			if e.Begin%4 != 0 {
				raw = append([]byte(nil), raw...)
				copied = append(copied, ns.Name)
			}
		case "F16":
			t.Type = ir.F16
		case "BF16":
			t.Type = ir.BF16
		default:
			return fmt.Errorf("%s: tensor %q (%s): dtype %s is not supported (F32, F16, BF16)", loc.file, hn, ns.Name, e.DType)
		}
		t.Data = raw
		if err := t.Check(); err != nil {
			return fmt.Errorf("%s: %w", loc.file, err)
		}
		m.Tensors[ns.Name] = t
	}
	if len(copied) > 0 {
		m.Meta["hf.copied"] = fmt.Sprintf("%d misaligned F32 tensors copied: %s", len(copied), strings.Join(copied, ", "))
	}
	return nil
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

// loadTokenizer reads tokenizer.json (if present) and sets BOS/EOS from
// config.json, else tokenizer_config.json.
func loadTokenizer(dir string, m *ir.Model, pc *parsedConfig) error {
	path := filepath.Join(dir, "tokenizer.json")
	data, err := readLimited(path, maxTokenizerFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	tok, notes, err := tokenizer.ParseJSON(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i, n := range notes {
		m.Meta[fmt.Sprintf("tokenizer.note%d", i)] = n
	}
	vocab := m.Config.Vocab
	if tok.Size() > vocab {
		return fmt.Errorf("%s: %d tokens, but config.json vocab_size is %d", path, tok.Size(), vocab)
	}
	if pad := vocab - tok.Size(); pad > 0 {
		// Embedding rows beyond the tokenizer (padding to a multiple of 64
		// or 128, as Qwen2 does): placeholders that never encode.
		for id := tok.Size(); id < vocab; id++ {
			tok.Tokens = append(tok.Tokens, fmt.Sprintf("[PAD%d]", id))
			tok.Types = append(tok.Types, tokenizer.Unused)
			if tok.Scores != nil {
				tok.Scores = append(tok.Scores, -1e9)
			}
		}
		m.Meta["tokenizer.padded"] = fmt.Sprintf("%d placeholder tokens added to reach vocab_size %d", pad, vocab)
	}
	bos, eos := pc.BOS, pc.EOS
	if bos < 0 || eos < 0 {
		tb, te := tokenizerConfigIDs(dir, tok)
		if bos < 0 {
			bos = tb
		}
		if eos < 0 {
			eos = te
		}
	}
	for _, x := range []struct {
		field string
		id    int
	}{{"bos_token_id", bos}, {"eos_token_id", eos}} {
		if x.id < -1 || x.id >= vocab {
			return fmt.Errorf("%s: %s = %d, outside the vocabulary of %d", filepath.Join(dir, "config.json"), x.field, x.id, vocab)
		}
	}
	tok.BOS, tok.EOS = bos, eos
	for _, id := range []int{bos, eos} {
		if id >= 0 && tok.Types[id] == tokenizer.Normal {
			tok.Types[id] = tokenizer.Control
		}
	}
	if err := tok.Init(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m.Tokenizer = tok
	m.Meta["tokenizer"] = path
	return nil
}

// tokenizerConfigIDs looks up bos_token / eos_token of tokenizer_config.json
// (a string or {"content": ...}) in the vocabulary; -1 when absent.
func tokenizerConfigIDs(dir string, tok *tokenizer.Tokenizer) (bos, eos int) {
	bos, eos = -1, -1
	data, err := readLimited(filepath.Join(dir, "tokenizer_config.json"), maxJSONFile)
	if err != nil {
		return
	}
	var tc struct {
		BOS json.RawMessage `json:"bos_token"`
		EOS json.RawMessage `json:"eos_token"`
	}
	if json.Unmarshal(data, &tc) != nil {
		return
	}
	_ = tok.Init() // for ID; errors surface in the caller's Init
	look := func(raw json.RawMessage) int {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			var o struct {
				Content string `json:"content"`
			}
			if json.Unmarshal(raw, &o) != nil {
				return -1
			}
			s = o.Content
		}
		if id, ok := tok.ID(s); ok && s != "" {
			return id
		}
		return -1
	}
	return look(tc.BOS), look(tc.EOS)
}
