package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// Write writes m as a GGUF v3 file that llama.cpp loads as architecture
// "llama". Matrices are stored as dtype (ir.F32 or ir.F16); vectors (norm
// weights, biases) are always F32, as llama.cpp's converters do. The file is
// written to a temporary file and renamed into place. Output is
// deterministic: the same model gives the same bytes.
//
// llama.cpp applies RoPE to adjacent pairs (x[2i], x[2i+1]) for "llama". A
// model whose Config.RopeNeoX is set (Hugging Face layout: x[i] paired with
// x[i+headDim/2]) has its attn_q and attn_k rows (and biases) permuted into
// that layout, exactly as convert_hf_to_gguf.py's LlamaModel.permute does, so
// the written model computes the same function. The file then reads back with
// RopeNeoX false.
//
// Palettized tensors cannot be written: GGUF has no LUT encoding.
func Write(path string, m *ir.Model, dtype ir.DType) error {
	if m == nil {
		return fmt.Errorf("gguf: %s: no model to write", path)
	}
	if dtype != ir.F32 && dtype != ir.F16 {
		return fmt.Errorf("gguf: %s: cannot write weights as %s; expected f32 or f16", path, encName(dtype))
	}
	c := m.Config
	if err := m.Validate(); err != nil {
		return fmt.Errorf("gguf: %s: cannot write an invalid model: %w", path, err)
	}

	// Plan the tensors.
	type plan struct {
		t     *ir.Tensor
		name  string
		ne    []uint64
		out   ir.DType
		heads int // >0: permute rows NeoX -> adjacent pairs for this many heads
		size  uint64
		off   uint64
	}
	var plans []*plan
	var dataSize uint64
	for _, n := range m.TensorNames() {
		t := m.Tensors[n]
		if n == ir.NameOutput && c.TiedEmbed {
			continue // the classifier is token_embd
		}
		if t.IsPalettized() || ir.Encodings[t.Type].Bits > 0 {
			return fmt.Errorf("gguf: %s: tensor %q is palettized (%s); GGUF has no palettized encoding, write a squeeze bundle instead",
				path, n, encName(t.Type))
		}
		if err := t.Check(); err != nil {
			return fmt.Errorf("gguf: %s: %w", path, err)
		}
		if len(t.Shape) < 1 || len(t.Shape) > 2 {
			return fmt.Errorf("gguf: %s: tensor %q has shape %v; the writer handles vectors and matrices", path, n, t.Shape)
		}
		p := &plan{t: t, name: ggufName(n), out: dtype}
		if len(t.Shape) == 1 {
			p.out = ir.F32
		}
		for j := len(t.Shape) - 1; j >= 0; j-- {
			p.ne = append(p.ne, uint64(t.Shape[j]))
		}
		if c.RopeNeoX {
			switch {
			case isLayerKind(n, ir.AttnQ), isLayerKind(n, ir.AttnQB):
				p.heads = c.Heads
			case isLayerKind(n, ir.AttnK), isLayerKind(n, ir.AttnKB):
				p.heads = c.KVHeads
			}
		}
		if p.heads > 0 {
			rows := t.Shape[0]
			if rows != p.heads*c.HeadDim {
				return fmt.Errorf("gguf: %s: tensor %q has %d rows, expected %d heads x %d to permute for RoPE", path, n, rows, p.heads, c.HeadDim)
			}
		}
		p.size = uint64(ir.Encodings[p.out].DataBytes(t.Elems()))
		p.off = dataSize
		dataSize += alignUp(p.size, defaultAlignment)
		plans = append(plans, p)
	}

	// Metadata.
	var kv kvBuffer
	kv.str("general.architecture", "llama")
	kv.str("general.name", modelName(m))
	kv.u32("general.alignment", defaultAlignment)
	ftype := uint32(0) // LLAMA_FTYPE_ALL_F32
	if dtype == ir.F16 {
		ftype = 1 // LLAMA_FTYPE_MOSTLY_F16
	}
	kv.u32("general.file_type", ftype)
	kv.u32("llama.context_length", uint32(c.SeqLen))
	kv.u32("llama.embedding_length", uint32(c.Dim))
	kv.u32("llama.block_count", uint32(c.Layers))
	kv.u32("llama.feed_forward_length", uint32(c.FFN))
	kv.u32("llama.rope.dimension_count", uint32(c.HeadDim))
	kv.u32("llama.attention.head_count", uint32(c.Heads))
	kv.u32("llama.attention.head_count_kv", uint32(c.KVHeads))
	if c.HeadDim*c.Heads != c.Dim {
		kv.u32("llama.attention.key_length", uint32(c.HeadDim))
		kv.u32("llama.attention.value_length", uint32(c.HeadDim))
	}
	kv.f32("llama.attention.layer_norm_rms_epsilon", float32(c.NormEps))
	kv.f32("llama.rope.freq_base", float32(c.RopeTheta))
	kv.u32("llama.vocab_size", uint32(c.Vocab))
	writeTokenizer(&kv, m)

	// Header: magic, version, counts, metadata, tensor infos.
	var hdr bytes.Buffer
	hdr.WriteString(magic)
	putU32(&hdr, 3)
	putU64(&hdr, uint64(len(plans)))
	putU64(&hdr, uint64(kv.n))
	hdr.Write(kv.buf.Bytes())
	for _, p := range plans {
		putStr(&hdr, p.name)
		putU32(&hdr, uint32(len(p.ne)))
		for _, n := range p.ne {
			putU64(&hdr, n)
		}
		id, _ := ggmlTypeOf(p.out)
		putU32(&hdr, id)
		putU64(&hdr, p.off)
	}
	hdr.Write(make([]byte, alignUp(uint64(hdr.Len()), defaultAlignment)-uint64(hdr.Len())))

	return fileio.WriteAtomic(path, func(f *os.File) error {
		w := bufio.NewWriterSize(f, 1<<20)
		if _, err := w.Write(hdr.Bytes()); err != nil {
			return fmt.Errorf("gguf: %s: %w", path, err)
		}
		var pad [defaultAlignment]byte
		for _, p := range plans {
			b := encodeTensor(p.t, p.out, p.heads, c.HeadDim)
			if uint64(len(b)) != p.size {
				return fmt.Errorf("gguf: %s: tensor %q encoded to %d bytes, expected %d", path, p.name, len(b), p.size)
			}
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("gguf: %s: %w", path, err)
			}
			if _, err := w.Write(pad[:alignUp(p.size, defaultAlignment)-p.size]); err != nil {
				return fmt.Errorf("gguf: %s: %w", path, err)
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("gguf: %s: %w", path, err)
		}
		return nil
	})
}

func writeTokenizer(kv *kvBuffer, m *ir.Model) {
	t := m.Tokenizer
	if t == nil {
		kv.str("tokenizer.ggml.model", "no_vocab")
		return
	}
	if t.Kind == tokenizer.ByteBPE {
		kv.str("tokenizer.ggml.model", "gpt2")
		if pre, ok := m.Meta["tokenizer.ggml.pre"]; ok {
			kv.str("tokenizer.ggml.pre", pre)
		}
	} else {
		kv.str("tokenizer.ggml.model", "llama")
	}
	kv.strArray("tokenizer.ggml.tokens", t.Tokens)
	if len(t.Scores) == len(t.Tokens) {
		kv.f32Array("tokenizer.ggml.scores", t.Scores)
	}
	if len(t.Types) == len(t.Tokens) {
		kv.i32Array("tokenizer.ggml.token_type", t.Types)
	}
	if t.Kind == tokenizer.ByteBPE {
		kv.strArray("tokenizer.ggml.merges", t.Merges)
	}
	for _, id := range []struct {
		key string
		v   int
	}{
		{"tokenizer.ggml.bos_token_id", t.BOS},
		{"tokenizer.ggml.eos_token_id", t.EOS},
		{"tokenizer.ggml.unknown_token_id", t.UNK},
	} {
		if id.v >= 0 {
			kv.u32(id.key, uint32(id.v))
		}
	}
	switch m.Meta["tokenizer.ggml.add_bos_token"] {
	case "true":
		kv.bool("tokenizer.ggml.add_bos_token", true)
	case "false":
		kv.bool("tokenizer.ggml.add_bos_token", false)
	default:
		if t.Kind == tokenizer.SentencePiece {
			kv.bool("tokenizer.ggml.add_bos_token", t.BOS >= 0)
		}
	}
	kv.bool("tokenizer.ggml.add_space_prefix", t.AddSpacePrefix)
}

// encodeTensor returns the tensor's bytes in encoding out. With heads > 0 the
// rows are permuted from the NeoX layout (pairs i, i+hd/2 within each head)
// to llama.cpp's adjacent-pair layout (pairs 2i, 2i+1), as
// convert_hf_to_gguf.py's permute: reshape(heads, 2, hd/2, in),
// swapaxes(1, 2). Destination row h*hd + 2i + j takes source row
// h*hd + j*hd/2 + i. The inverse (reading such a file into NeoX layout) takes
// destination row h*hd + j*hd/2 + i from source row h*hd + 2i + j.
func encodeTensor(t *ir.Tensor, out ir.DType, heads, headDim int) []byte {
	if t.Type == out && heads == 0 {
		return t.Data
	}
	rows, cols := t.Rows(), t.Cols()
	if len(t.Shape) == 1 && heads > 0 {
		// A bias vector is permuted element-wise: treat it as rows of one.
		rows, cols = t.Shape[0], 1
	}
	src := func(r int) int {
		if heads == 0 {
			return r
		}
		h, w := r/headDim, r%headDim
		return h*headDim + (w%2)*(headDim/2) + w/2
	}
	elem := 4
	if out == ir.F16 {
		elem = 2
	}
	b := make([]byte, rows*cols*elem)
	if t.Type == out {
		// Same encoding: move rows of raw bytes.
		rb := cols * elem
		for r := 0; r < rows; r++ {
			s := src(r)
			copy(b[r*rb:(r+1)*rb], t.Data[s*rb:(s+1)*rb])
		}
		return b
	}
	var all []float32
	if len(t.Shape) == 1 {
		all = t.F32()
	}
	row := make([]float32, cols)
	for r := 0; r < rows; r++ {
		s := src(r)
		if all != nil {
			copy(row, all[s*cols:(s+1)*cols])
		} else {
			t.DecodeRow(s, row)
		}
		o := b[r*cols*elem:]
		for i, x := range row {
			if out == ir.F16 {
				binary.LittleEndian.PutUint16(o[2*i:], ir.F32ToF16(x))
			} else {
				binary.LittleEndian.PutUint32(o[4*i:], math.Float32bits(x))
			}
		}
	}
	return b
}

// ggufName maps an ir name to the GGUF tensor name: ".weight" is appended
// unless the name is a bias.
func ggufName(n string) string {
	if strings.HasSuffix(n, ".bias") {
		return n
	}
	return n + ".weight"
}

// isLayerKind reports whether n is "blk.N.<kind>".
func isLayerKind(n, kind string) bool {
	if !strings.HasPrefix(n, "blk.") || !strings.HasSuffix(n, "."+kind) {
		return false
	}
	mid := n[len("blk.") : len(n)-len(kind)-1]
	if mid == "" {
		return false
	}
	for _, r := range mid {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func modelName(m *ir.Model) string {
	if s := m.Meta["general.name"]; s != "" {
		return s
	}
	if m.Source != "" {
		b := filepath.Base(strings.TrimSuffix(m.Source, "/"))
		return strings.TrimSuffix(b, filepath.Ext(b))
	}
	return "squeeze"
}

func encName(dt ir.DType) string {
	if e, ok := ir.Encodings[dt]; ok {
		return e.Name
	}
	return fmt.Sprintf("encoding %d", dt)
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// kvBuffer accumulates encoded metadata key/value pairs.
type kvBuffer struct {
	buf bytes.Buffer
	n   int
}

func (k *kvBuffer) key(key string, typ uint32) {
	putStr(&k.buf, key)
	putU32(&k.buf, typ)
	k.n++
}

func (k *kvBuffer) str(key, v string) { k.key(key, typeString); putStr(&k.buf, v) }
func (k *kvBuffer) u32(key string, v uint32) {
	k.key(key, typeUint32)
	putU32(&k.buf, v)
}
func (k *kvBuffer) f32(key string, v float32) {
	k.key(key, typeFloat32)
	putU32(&k.buf, math.Float32bits(v))
}
func (k *kvBuffer) bool(key string, v bool) {
	k.key(key, typeBool)
	if v {
		k.buf.WriteByte(1)
	} else {
		k.buf.WriteByte(0)
	}
}

func (k *kvBuffer) arrayHeader(key string, elem uint32, n int) {
	k.key(key, typeArray)
	putU32(&k.buf, elem)
	putU64(&k.buf, uint64(n))
}

func (k *kvBuffer) strArray(key string, v []string) {
	k.arrayHeader(key, typeString, len(v))
	for _, s := range v {
		putStr(&k.buf, s)
	}
}

func (k *kvBuffer) f32Array(key string, v []float32) {
	k.arrayHeader(key, typeFloat32, len(v))
	for _, f := range v {
		putU32(&k.buf, math.Float32bits(f))
	}
}

func (k *kvBuffer) i32Array(key string, v []tokenizer.TokenType) {
	k.arrayHeader(key, typeInt32, len(v))
	for _, x := range v {
		putU32(&k.buf, uint32(int32(x)))
	}
}

func putU32(b *bytes.Buffer, v uint32) { b.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func putU64(b *bytes.Buffer, v uint64) { b.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func putStr(b *bytes.Buffer, s string) {
	putU64(b, uint64(len(s)))
	b.WriteString(s)
}
