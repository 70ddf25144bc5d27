package hf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/squeeze-ml/squeeze/formats/tokenizer"
)

// seedDir builds a small HF directory and returns it (the seeds of the fuzz
// targets are the files the tests generate).
func seedDir(f *testing.F, fx fixture) string {
	dir := f.TempDir()
	fx.build(f, dir)
	return dir
}

func FuzzSafetensorsHeader(f *testing.F) {
	for _, fx := range []fixture{
		{arch: "LlamaForCausalLM", dtype: "F32", pad: true, noTok: true},
		{arch: "Qwen2ForCausalLM", dtype: "BF16", pad: false, noTok: true},
	} {
		b, err := os.ReadFile(filepath.Join(seedDir(f, fx), "model.safetensors"))
		if err != nil {
			f.Fatal(err)
		}
		// the header and the first bytes of data keep the inputs small
		f.Add(b[:min(len(b), 4096)])
	}
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, err := parseSafetensors("fuzz.safetensors", data)
		if err != nil {
			return
		}
		for name, e := range hdr {
			if e.Begin < 8 || e.End < e.Begin || e.End > int64(len(data)) {
				t.Fatalf("tensor %q: accepted offsets [%d, %d) in a %d-byte file", name, e.Begin, e.End, len(data))
			}
			_ = data[e.Begin:e.End]
		}
	})
}

func FuzzConfigJSON(f *testing.F) {
	for _, fx := range []fixture{
		{arch: "LlamaForCausalLM", dtype: "F32", noTok: true},
		{arch: "Qwen2ForCausalLM", dtype: "F32", noTok: true, tied: true},
		{arch: "MistralForCausalLM", dtype: "F32", noTok: true, cfgEdit: func(c map[string]any) { c["sliding_window"] = 64; c["head_dim"] = 4; c["eos_token_id"] = []int{2, 3} }},
	} {
		b, err := os.ReadFile(filepath.Join(seedDir(f, fx), "config.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pc, err := parseConfig("config.json", data)
		if err != nil {
			return
		}
		if err := pc.Config.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
	})
}

func FuzzTokenizerJSON(f *testing.F) {
	b, err := os.ReadFile(filepath.Join(seedDir(f, fixture{arch: "LlamaForCausalLM", dtype: "F32"}), "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}}, {"type": "ByteLevel", "add_prefix_space": false}]},
 "added_tokens": [{"id": 5, "content": "<|endoftext|>", "special": true}],
 "model": {"type": "BPE", "vocab": {"Ġ": 0, "t": 1, "Ġt": 2, "h": 3, "e": 4}, "merges": ["Ġ t", ["h", "e"]]}}`))
	f.Add([]byte(`{"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"},
 "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {"<unk>": 0, "<0x41>": 1, "▁": 2, "a": 3, "▁a": 4}, "merges": [["▁", "a"]]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, _, err := tokenizer.ParseJSON(data)
		if err != nil {
			return
		}
		ids := tok.Encode("Hello wörld  \n\t 12 it's ▁x\xff", true)
		for _, id := range ids {
			if id < 0 || id >= tok.Size() {
				t.Fatalf("id %d outside vocabulary of %d", id, tok.Size())
			}
		}
		_ = tok.Decode(ids)
	})
}
