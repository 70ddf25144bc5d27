package llama2c

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

const magic = 0x616b3432

// Load maps a checkpoint and reads its tokenizer: tokPath if non-empty,
// else the single tokenizer.bin or tok*.bin beside the checkpoint. A
// checkpoint without any tokenizer loads with Tokenizer nil.
func Load(path, tokPath string) (*ir.Model, error) {
	mp, err := fileio.MapFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	m, err := Parse(path, mp.Data)
	if err != nil {
		mp.Close()
		return nil, err
	}
	m.AddCloser(mp)
	if tokPath == "" {
		tokPath, err = FindTokenizer(path)
		if err != nil {
			m.Close()
			return nil, err
		}
	}
	if tokPath != "" {
		tok, err := LoadTokenizer(tokPath, m.Config.Vocab)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.Tokenizer = tok
		m.Meta["tokenizer"] = tokPath
	}
	return m, nil
}

// FindTokenizer returns the single tokenizer.bin or tok*.bin beside a
// checkpoint, "" if there is none, and an error if there are several.
func FindTokenizer(model string) (string, error) {
	dir := filepath.Dir(model)
	var found []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && strings.HasSuffix(n, ".bin") && (n == "tokenizer.bin" || strings.HasPrefix(n, "tok")) {
			found = append(found, filepath.Join(dir, n))
		}
	}
	sort.Strings(found)
	if len(found) > 1 {
		for _, f := range found {
			if filepath.Base(f) == "tokenizer.bin" {
				return f, nil
			}
		}
		return "", fmt.Errorf("llama2c: %s: several tokenizers beside the model (%s); pick one with --tokenizer", model, strings.Join(found, ", "))
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return "", nil
}

// Sniff reports whether data starts like a llama2.c checkpoint.
func Sniff(data []byte) bool {
	if len(data) < 28 {
		return false
	}
	if binary.LittleEndian.Uint32(data) == magic {
		return true
	}
	h := readHeader(data)
	return h.dim > 0 && h.dim <= 1<<16 && h.layers > 0 && h.layers <= 1024 && h.heads > 0 && h.heads <= 1024 && h.hidden > 0
}

type header struct {
	dim, hidden, layers, heads, kvHeads, vocab, seqLen int
}

func readHeader(b []byte) header {
	g := func(i int) int { return int(int32(binary.LittleEndian.Uint32(b[4*i:]))) }
	return header{g(0), g(1), g(2), g(3), g(4), g(5), g(6)}
}

// Parse builds a model from checkpoint bytes (normally a mapping). Tensors
// of a float32 checkpoint alias data.
func Parse(name string, data []byte) (*ir.Model, error) {
	fail := func(f string, a ...any) error { return fmt.Errorf("llama2c: %s: "+f, append([]any{name}, a...)...) }
	if len(data) < 28 {
		return nil, fail("file is %d bytes, shorter than the 28-byte header", len(data))
	}
	version, off := 0, 28
	var shared bool
	var groupSize int
	var h header
	if binary.LittleEndian.Uint32(data) == magic {
		if len(data) < 256 {
			return nil, fail("file is %d bytes, shorter than the 256-byte v1/v2 header", len(data))
		}
		version = int(int32(binary.LittleEndian.Uint32(data[4:])))
		if version != 1 && version != 2 {
			return nil, fail("version = %d, expected 1 or 2 (or a legacy header without magic)", version)
		}
		h = readHeader(data[8:])
		shared = data[36] != 0
		if version == 2 {
			groupSize = int(int32(binary.LittleEndian.Uint32(data[37:])))
		}
		off = 256
	} else {
		h = readHeader(data)
		shared = h.vocab > 0
		if h.vocab < 0 {
			h.vocab = -h.vocab
		}
	}
	if h.heads <= 0 || h.dim <= 0 || h.dim%h.heads != 0 {
		return nil, fail("header: dim = %d is not a positive multiple of n_heads = %d", h.dim, h.heads)
	}
	c := ir.Config{Arch: "llama", Dim: h.dim, Layers: h.layers, Heads: h.heads, KVHeads: h.kvHeads,
		HeadDim: h.dim / max(h.heads, 1), FFN: h.hidden, Vocab: h.vocab, SeqLen: h.seqLen,
		RopeTheta: 10000, NormEps: 1e-5, TiedEmbed: shared}
	if err := c.Validate(); err != nil {
		return nil, fail("header: %v", err)
	}
	m := &ir.Model{Config: c, Tensors: map[string]*ir.Tensor{}, Format: "llama2c", Source: name,
		Meta: map[string]string{"llama2c.version": fmt.Sprint(version)}}
	L, dim, kv, hid, V := c.Layers, c.Dim, c.KVDim(), c.FFN, c.Vocab

	// take consumes n float32 from the file as a tensor view.
	take := func(tname string, shape ...int) error {
		n := 1
		for _, d := range shape {
			n *= d
		}
		end := int64(off) + 4*int64(n)
		if end > int64(len(data)) {
			return fail("tensor %q: data ends at byte %d, file has %d", tname, end, len(data))
		}
		m.Tensors[tname] = &ir.Tensor{Name: tname, Shape: shape, Type: ir.F32, Data: data[off:end:end]}
		off = int(end)
		return nil
	}
	perLayer := func(kind string, shape ...int) error {
		for l := 0; l < L; l++ {
			if err := take(ir.Blk(l, kind), shape...); err != nil {
				return err
			}
		}
		return nil
	}
	type step struct {
		kind  string
		shape []int
	}
	mats := []step{{ir.AttnQ, []int{dim, dim}}, {ir.AttnK, []int{kv, dim}}, {ir.AttnV, []int{kv, dim}},
		{ir.AttnOut, []int{dim, dim}}, {ir.FFNGate, []int{hid, dim}}, {ir.FFNDown, []int{dim, hid}}, {ir.FFNUp, []int{hid, dim}}}
	var err error
	switch version {
	case 0:
		err = firstErr(
			func() error { return take(ir.NameTokenEmbd, V, dim) },
			func() error { return perLayer(ir.AttnNorm, dim) },
			func() error { return perLayer(ir.AttnQ, dim, dim) },
			func() error { return perLayer(ir.AttnK, kv, dim) },
			func() error { return perLayer(ir.AttnV, kv, dim) },
			func() error { return perLayer(ir.AttnOut, dim, dim) },
			func() error { return perLayer(ir.FFNNorm, dim) },
			func() error { return perLayer(ir.FFNGate, hid, dim) },
			func() error { return perLayer(ir.FFNDown, dim, hid) },
			func() error { return perLayer(ir.FFNUp, hid, dim) },
			func() error { return take(ir.NameOutputNorm, dim) },
			func() error {
				// freq_cis_real and freq_cis_imag: seq_len * head_size / 2 each (unused)
				skip := int64(c.SeqLen) * int64(c.HeadDim) / 2 * 2 * 4
				if int64(off)+skip > int64(len(data)) {
					return fail("freq_cis tables end at byte %d, file has %d", int64(off)+skip, len(data))
				}
				off += int(skip)
				return nil
			},
		)
		if err == nil && !shared {
			err = take(ir.NameOutput, V, dim)
		}
	case 1:
		err = firstErr(
			func() error { return perLayer(ir.AttnNorm, dim) },
			func() error { return perLayer(ir.FFNNorm, dim) },
			func() error { return take(ir.NameOutputNorm, dim) },
			func() error { return take(ir.NameTokenEmbd, V, dim) },
		)
		for _, s := range mats {
			if err == nil {
				err = perLayer(s.kind, s.shape...)
			}
		}
		if err == nil && !shared {
			err = take(ir.NameOutput, V, dim)
		}
	case 2:
		if groupSize <= 0 || groupSize > 1<<20 {
			return nil, fail("header: group_size = %d, expected 1..1048576", groupSize)
		}
		err = firstErr(
			func() error { return perLayer(ir.AttnNorm, dim) },
			func() error { return perLayer(ir.FFNNorm, dim) },
			func() error { return take(ir.NameOutputNorm, dim) },
		)
		q8 := func(tname string, shape ...int) error {
			n := shape[0] * shape[1]
			if n%groupSize != 0 {
				return fail("tensor %q: %d values are not a multiple of group_size %d", tname, n, groupSize)
			}
			end := int64(off) + int64(n) + 4*int64(n/groupSize)
			if end > int64(len(data)) {
				return fail("tensor %q: data ends at byte %d, file has %d", tname, end, len(data))
			}
			q := data[off : off+n]
			s := data[off+n : end]
			v := make([]float32, n)
			for i := range v {
				sc := math.Float32frombits(binary.LittleEndian.Uint32(s[4*(i/groupSize):]))
				v[i] = float32(int8(q[i])) * sc
			}
			m.Tensors[tname] = ir.NewF32(tname, v, shape...)
			off = int(end)
			return nil
		}
		if err == nil {
			err = q8(ir.NameTokenEmbd, V, dim)
		}
		for _, s := range mats {
			for l := 0; l < L && err == nil; l++ {
				err = q8(ir.Blk(l, s.kind), s.shape...)
			}
		}
		if err == nil && !shared {
			err = q8(ir.NameOutput, V, dim)
		}
	}
	if err != nil {
		return nil, err
	}
	if off != len(data) {
		return nil, fail("%d bytes of trailing data after the last tensor (ends at byte %d, file has %d): wrong header?", len(data)-off, off, len(data))
	}
	for _, t := range m.Tensors {
		for _, v := range t.F32() {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fail("tensor %q holds a NaN or Inf value", t.Name)
			}
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func firstErr(fs ...func() error) error {
	for _, f := range fs {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// LoadTokenizer reads a llama2.c tokenizer.bin with vocab entries.
func LoadTokenizer(path string, vocab int) (*tokenizer.Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c tokenizer: %w", err)
	}
	return ParseTokenizer(path, data, vocab)
}

// ParseTokenizer parses tokenizer.bin bytes: int32 max_token_length, then
// per token float32 score, int32 length, bytes. Spaces become "▁" so the
// vocabulary is in SentencePiece form; ids 0, 1, 2 are unk, BOS, EOS.
func ParseTokenizer(name string, data []byte, vocab int) (*tokenizer.Tokenizer, error) {
	fail := func(f string, a ...any) error {
		return fmt.Errorf("llama2c tokenizer: %s: "+f, append([]any{name}, a...)...)
	}
	if vocab <= 0 {
		return nil, fail("vocabulary size %d", vocab)
	}
	if len(data) < 4 {
		return nil, fail("file is %d bytes, shorter than its 4-byte header", len(data))
	}
	maxLen := int(int32(binary.LittleEndian.Uint32(data)))
	// each entry needs at least 8 bytes: check before allocating
	if int64(vocab)*8 > int64(len(data)-4) {
		return nil, fail("holds at most %d entries, the model needs %d", (len(data)-4)/8, vocab)
	}
	t := &tokenizer.Tokenizer{Kind: tokenizer.SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddSpacePrefix: true,
		Tokens: make([]string, vocab), Scores: make([]float32, vocab), Types: make([]tokenizer.TokenType, vocab)}
	off := 4
	for i := 0; i < vocab; i++ {
		if off+8 > len(data) {
			return nil, fail("token %d: entry header at byte %d, file has %d", i, off, len(data))
		}
		t.Scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if n < 0 || n > len(data)-off || (maxLen > 0 && n > maxLen) {
			return nil, fail("token %d: length %d (max_token_length %d, %d bytes left)", i, n, maxLen, len(data)-off)
		}
		s := string(data[off : off+n])
		off += n
		switch {
		case i == 0:
			t.Types[i] = tokenizer.Unknown
		case i == 1 || i == 2:
			t.Types[i] = tokenizer.Control
		default:
			t.Types[i] = tokenizer.Normal
			if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
				t.Types[i] = tokenizer.Byte
			}
		}
		t.Tokens[i] = strings.ReplaceAll(s, " ", "▁")
	}
	if err := t.Init(); err != nil {
		return nil, fail("%v", err)
	}
	return t, nil
}
