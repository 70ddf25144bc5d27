package hf

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// Write saves m as a Hugging Face model directory: config.json,
// model.safetensors (dtype F32 or F16) and, when m has a tokenizer,
// tokenizer.json and tokenizer_config.json.
//
// The result is a true HF checkpoint: if m uses the interleaved RoPE layout
// (Config.RopeNeoX false: llama2.c, GGUF "llama"), the rows of attn_q and
// attn_k (and their biases) are permuted into HF's rotate-half layout, as
// transformers' convert_llama_weights_to_hf.py does. Palettized tensors are
// refused; other encodings are decoded and re-encoded as dtype.
//
// The directory is written beside dir under a temporary name and renamed
// into place; an existing dir is replaced only once the new one is complete.
func Write(dir string, m *ir.Model, dtype ir.DType) error {
	if dtype != ir.F32 && dtype != ir.F16 {
		return fmt.Errorf("hf: %s: dtype %s is not supported for writing (f32 or f16)", dir, ir.Encodings[dtype].Name)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("hf: %s: %w", dir, err)
	}
	for _, name := range m.TensorNames() {
		if t := m.Tensors[name]; ir.Encodings[t.Type].Bits > 0 {
			return fmt.Errorf("hf: %s: tensor %q is palettized (%s); a Hugging Face checkpoint needs dense weights (export the bundle instead)", dir, name, ir.Encodings[t.Type].Name)
		}
	}
	dir = filepath.Clean(dir)
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("hf: %s exists and is not a directory", dir)
	}
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, ".squeeze-tmp-hf-*")
	if err != nil {
		return fmt.Errorf("hf: %s: cannot write: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeFiles(tmp, m, dtype); err != nil {
		return fmt.Errorf("hf: %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("hf: %s: %w", dir, err)
	}
	// Swap into place: move an existing directory aside first.
	var old string
	if _, err := os.Stat(dir); err == nil {
		old, err = os.MkdirTemp(parent, ".squeeze-old-hf-*")
		if err != nil {
			return fmt.Errorf("hf: %s: %w", dir, err)
		}
		os.Remove(old)
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("hf: %s: cannot replace: %w", dir, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("hf: %s: %w", dir, err)
	}
	ok = true
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

func writeFiles(tmp string, m *ir.Model, dtype ir.DType) error {
	c := m.Config
	archName, modelType := "LlamaForCausalLM", "llama"
	if c.QKVBias {
		archName, modelType = "Qwen2ForCausalLM", "qwen2"
	}
	torchDType := "float32"
	if dtype == ir.F16 {
		torchDType = "float16"
	}
	cfg := map[string]any{
		"architectures":           []string{archName},
		"model_type":              modelType,
		"hidden_size":             c.Dim,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"head_dim":                c.HeadDim,
		"intermediate_size":       c.FFN,
		"vocab_size":              c.Vocab,
		"max_position_embeddings": c.SeqLen,
		"rope_theta":              c.RopeTheta,
		"rms_norm_eps":            c.NormEps,
		"tie_word_embeddings":     c.TiedEmbed,
		"hidden_act":              "silu",
		"rope_scaling":            nil,
		"torch_dtype":             torchDType,
		"initializer_range":       0.02,
		"use_cache":               true,
	}
	if c.QKVBias {
		cfg["use_sliding_window"] = false
		cfg["sliding_window"] = nil
	} else {
		cfg["attention_bias"] = false
		cfg["mlp_bias"] = false
	}
	bos, eos := any(nil), any(nil)
	if t := m.Tokenizer; t != nil {
		if t.BOS >= 0 {
			bos = t.BOS
		}
		if t.EOS >= 0 {
			eos = t.EOS
		}
	}
	cfg["bos_token_id"], cfg["eos_token_id"] = bos, eos
	if err := writeJSON(filepath.Join(tmp, "config.json"), cfg); err != nil {
		return err
	}

	var tensors []stTensor
	for _, ns := range ir.ExpectedShapes(c) {
		t := m.Tensors[ns.Name]
		tensors = append(tensors, denseTensor(hfName(ns.Name), t, dtype, ropePerm(c, ns.Name)))
	}
	if err := writeFile(filepath.Join(tmp, "model.safetensors"), func(w io.Writer) error {
		return writeSafetensors(w, tensors)
	}); err != nil {
		return err
	}

	if t := m.Tokenizer; t != nil {
		js, err := tokenizer.MarshalJSON(t)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(tmp, "tokenizer.json"), func(w io.Writer) error {
			_, err := w.Write(js)
			return err
		}); err != nil {
			return err
		}
		tc := map[string]any{
			"add_bos_token":    t.BOS >= 0 && t.Kind == tokenizer.SentencePiece,
			"add_eos_token":    false,
			"model_max_length": c.SeqLen,
			"bos_token":        tokText(t, t.BOS),
			"eos_token":        tokText(t, t.EOS),
			"unk_token":        tokText(t, t.UNK),
			"tokenizer_class":  "PreTrainedTokenizerFast",
		}
		if t.Kind == tokenizer.SentencePiece {
			tc["tokenizer_class"] = "LlamaTokenizerFast"
			tc["legacy"] = true
			tc["add_prefix_space"] = t.AddSpacePrefix
		}
		if err := writeJSON(filepath.Join(tmp, "tokenizer_config.json"), tc); err != nil {
			return err
		}
	}
	return nil
}

func tokText(t *tokenizer.Tokenizer, id int) any {
	if id < 0 || id >= len(t.Tokens) {
		return nil
	}
	return t.Tokens[id]
}

// ropePerm returns the number of heads whose rows must be permuted from the
// interleaved RoPE layout into HF's rotate-half layout, or 0.
func ropePerm(c ir.Config, canon string) int {
	if c.RopeNeoX {
		return 0
	}
	for l := 0; l < c.Layers; l++ {
		switch canon {
		case ir.Blk(l, ir.AttnQ), ir.Blk(l, ir.AttnQB):
			return c.Heads
		case ir.Blk(l, ir.AttnK), ir.Blk(l, ir.AttnKB):
			return c.KVHeads
		}
	}
	return 0
}

// permuteRow returns the source row (interleaved layout) of row r of the
// permuted (rotate-half) matrix, for heads heads of rows/heads rows each.
// It is transformers' permute:
//
//	w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)
//
// so within a head, new row j*half+i is old row 2*i+j.
func permuteRow(r, rows, heads int) int {
	hd := rows / heads
	half := hd / 2
	h, k := r/hd, r%hd
	j, i := k/half, k%half
	return h*hd + 2*i + j
}

// unpermuteRow is the inverse: the source row (rotate-half layout) of row r
// of the interleaved matrix.
func unpermuteRow(r, rows, heads int) int {
	hd := rows / heads
	half := hd / 2
	h, k := r/hd, r%hd
	i, j := k/2, k%2
	return h*hd + j*half + i
}

// denseTensor describes how to write t as dtype, permuting rows for RoPE
// when permHeads > 0. F32 data written as F32 without permutation is
// written straight from t.Data.
func denseTensor(name string, t *ir.Tensor, dtype ir.DType, permHeads int) stTensor {
	st := stTensor{Name: name, DType: "F32", Shape: t.Shape}
	es := 4
	if dtype == ir.F16 {
		st.DType, es = "F16", 2
	}
	st.Size = int64(t.Elems()) * int64(es)
	rows, cols := t.Rows(), t.Cols()
	if len(t.Shape) == 1 {
		rows, cols = t.Shape[0], 1 // a vector (bias) permutes element-wise
	}
	st.Write = func(w io.Writer) error {
		if t.Type == dtype && permHeads == 0 {
			_, err := w.Write(t.Data)
			return err
		}
		var row []float32
		if len(t.Shape) > 1 {
			row = make([]float32, cols)
		}
		var vec []float32
		if len(t.Shape) == 1 {
			vec = t.F32()
		}
		buf := make([]byte, cols*es)
		for r := 0; r < rows; r++ {
			src := r
			if permHeads > 0 {
				src = permuteRow(r, rows, permHeads)
			}
			if vec != nil {
				row = vec[src : src+1]
			} else {
				t.DecodeRow(src, row)
			}
			for i, v := range row {
				if dtype == ir.F16 {
					binary.LittleEndian.PutUint16(buf[2*i:], ir.F32ToF16(v))
				} else {
					binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
				}
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
	return st
}

func writeJSON(path string, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	js = append(js, '\n')
	return writeFile(path, func(w io.Writer) error {
		_, err := w.Write(js)
		return err
	})
}

func writeFile(path string, write func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
