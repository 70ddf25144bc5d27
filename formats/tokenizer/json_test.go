package tokenizer

import (
	"encoding/binary"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// readLlama2cTokenizer reads a llama2.c tokenizer.bin (int32 max length,
// then per token: float32 score, int32 length, bytes) into a SentencePiece
// vocabulary, turning llama2.c's spaces back into "▁".
func readLlama2cTokenizer(t *testing.T, path string) *Tokenizer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := &Tokenizer{Kind: SentencePiece, BOS: 1, EOS: 2, UNK: 0, AddSpacePrefix: true}
	for off := 4; off < len(b); {
		score := math.Float32frombits(binary.LittleEndian.Uint32(b[off:]))
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		s := string(b[off+8 : off+8+n])
		off += 8 + n
		if len(tok.Tokens) > 2 {
			s = strings.ReplaceAll(s, " ", "▁")
		}
		tok.Tokens = append(tok.Tokens, s)
		tok.Scores = append(tok.Scores, score)
	}
	if err := tok.Init(); err != nil {
		t.Fatal(err)
	}
	return tok
}

func lines(text string, n int) []string {
	ls := strings.Split(text, "\n")
	if len(ls) > n {
		ls = ls[:n]
	}
	return ls
}

func TestSentencePieceJSONRoundTrip(t *testing.T) {
	text := devText(t, 20000)
	for _, path := range []string{"../../testdata/stories260K/tok512.bin", "../../testdata/llama2-tokenizer/tokenizer.bin"} {
		orig := readLlama2cTokenizer(t, path)
		js, err := MarshalJSON(orig)
		if err != nil {
			t.Fatal(err)
		}
		got, notes, err := ParseJSON(js)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(notes) != 0 {
			t.Errorf("%s: notes %q", path, notes)
		}
		if got.Kind != SentencePiece || !got.AddSpacePrefix || got.UNK != 0 || !reflect.DeepEqual(got.Tokens, orig.Tokens) {
			t.Fatalf("%s: kind %v prefix %v unk %d, tokens equal %v", path, got.Kind, got.AddSpacePrefix, got.UNK, reflect.DeepEqual(got.Tokens, orig.Tokens))
		}
		for id := range orig.Types {
			if got.Types[id] != orig.Types[id] {
				t.Fatalf("%s: token %d %q: type %d, want %d", path, id, orig.Tokens[id], got.Types[id], orig.Types[id])
			}
		}
		got.BOS, got.EOS = orig.BOS, orig.EOS
		inputs := append(lines(text, 200), text, "naïve café 日本語 🙂\t\t  x", "  two  spaces ")
		for _, s := range inputs {
			want := orig.Encode(s, true)
			if ids := got.Encode(s, true); !reflect.DeepEqual(ids, want) {
				t.Fatalf("%s: encoding of %.50q differs after tokenizer.json round trip:\n got %v\nwant %v", path, s, ids, want)
			}
		}
	}
}

func TestByteBPEJSONRoundTrip(t *testing.T) {
	text := devText(t, 20000)
	orig := trainBPE(t, text, 200)
	orig.Tokens = append(orig.Tokens, "<|endoftext|>")
	orig.Types = nil
	orig.EOS = len(orig.Tokens) - 1
	if err := orig.Init(); err != nil {
		t.Fatal(err)
	}
	orig.Types[orig.EOS] = Control
	js, err := MarshalJSON(orig)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := ParseJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != ByteBPE || !reflect.DeepEqual(got.Tokens, orig.Tokens) || !reflect.DeepEqual(got.Merges, orig.Merges) {
		t.Fatalf("byte-level round trip changed kind/tokens/merges")
	}
	if got.Types[orig.EOS] != Control {
		t.Errorf("special added token type %d, want Control", got.Types[orig.EOS])
	}
	if !reflect.DeepEqual(got.Encode(text, false), orig.Encode(text, false)) {
		t.Error("encodings differ after round trip")
	}
	// Old-style "a b" merges parse the same as [a, b] arrays.
	old := strings.Replace(string(js), `"merges": [`, `"merges": ["`+strings.Replace(orig.Merges[0], `"`, `\"`, -1)+`", `, 1)
	got2, _, err := ParseJSON([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if got2.Merges[0] != orig.Merges[0] || got2.Merges[1] != orig.Merges[0] {
		t.Errorf("string merge parsed as %q, want %q", got2.Merges[0], orig.Merges[0])
	}
}

func TestParseJSONErrors(t *testing.T) {
	cases := map[string]string{
		"not json":        `{"model":`,
		"no model":        `{"added_tokens": []}`,
		"unigram":         `{"model": {"type": "Unigram", "vocab": []}}`,
		"no family":       `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
		"negative id":     `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}`,
		"huge id":         `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 99999999999}, "merges": []}}`,
		"dup id":          `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}`,
		"bad merge":       `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["abc"]}}`,
		"bad merge array": `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}`,
		"merges object":   `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}}`,
		"unk missing":     `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}}`,
		"added no id":     `{"added_tokens": [{"content": "x"}], "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		"added clash":     `{"added_tokens": [{"id": 0, "content": "x"}], "pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0}}}`,
		"empty":           `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {}}}`,
		"suffix":          `{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "end_of_word_suffix": "</w>", "vocab": {"a": 0}}}`,
	}
	for name, js := range cases {
		if _, _, err := ParseJSON([]byte(js)); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.Contains(err.Error(), "tokenizer") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}

// Layouts as Llama 3 / Qwen2 (Split regex + ByteLevel) and Mistral
// (Metaspace, legacy=false) ship them.
func TestParseJSONRealLayouts(t *testing.T) {
	llama3 := `{"added_tokens": [{"id": 4, "content": "<|begin_of_text|>", "special": true}],
 "normalizer": null,
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
   {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
   {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
 "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "ignore_merges": true, "vocab": {"Ġ": 0, "h": 1, "i": 2, "hi": 3}, "merges": ["h i"]}}`
	tok, notes, err := ParseJSON([]byte(llama3))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind != ByteBPE || tok.Types[4] != Control || len(notes) != 2 || !strings.Contains(notes[1], "Split") {
		t.Errorf("llama3 layout: kind %v, type %d, notes %q", tok.Kind, tok.Types[4], notes)
	}
	if ids := tok.Encode("hi", false); !reflect.DeepEqual(ids, []int{3}) {
		t.Errorf("Encode(hi) = %v", ids)
	}
	mistral := `{"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}],
 "normalizer": null,
 "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
   "vocab": {"<unk>": 0, "<s>": 1, "<0x68>": 2, "▁": 3, "h": 4, "i": 5, "▁h": 6, "▁hi": 7}, "merges": ["▁ h", "▁h i"]}}`
	tok, _, err = ParseJSON([]byte(mistral))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Kind != SentencePiece || !tok.AddSpacePrefix || tok.UNK != 0 || tok.Types[2] != Byte || tok.Types[1] != Control {
		t.Fatalf("mistral layout: kind %v prefix %v unk %d types %v", tok.Kind, tok.AddSpacePrefix, tok.UNK, tok.Types)
	}
	if tok.Scores[6] != 0 || tok.Scores[7] != -1 || tok.Scores[4] != scoreNoMerge {
		t.Errorf("derived scores %v", tok.Scores)
	}
	if ids := tok.Encode("hi h", false); !reflect.DeepEqual(ids, []int{7, 6}) {
		t.Errorf("Encode(\"hi h\") = %v, want [7 6]", ids)
	}
}
