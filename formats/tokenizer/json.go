package tokenizer

// Hugging Face tokenizer.json (the "tokenizers" library's file) for BPE
// models, read and written.
//
// Reading understands two families:
//   - SentencePiece-style BPE (Llama 1/2, Mistral): a normalizer that
//     replaces " " by "▁" (and prepends "▁"), or a Metaspace pre-tokenizer,
//     usually with byte_fallback. tokenizer.json stores merges, not
//     SentencePiece scores, so scores are derived from them: a token's score
//     is minus the rank of the first merge that produces it, which keeps the
//     merge priority (llama.cpp's converter ranks the same way). Tokens no
//     merge produces get scoreNoMerge, below every merge.
//   - Byte-level BPE (GPT-2, Qwen2, Llama 3): a ByteLevel pre-tokenizer
//     (alone or inside a Sequence with a Split regex) and merges by rank.
//
// Merges are accepted both as "a b" strings and as ["a", "b"] arrays.
// Added tokens with special=true become Control tokens, the others
// UserDefined; "<0xXX>" tokens of a SentencePiece vocabulary become Byte.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// scoreNoMerge is the score of a SentencePiece token that no merge produces.
const scoreNoMerge = -1e9

// maxJSONVocab bounds token ids read from tokenizer.json (as ir.Config does).
const maxJSONVocab = 1 << 22

type jsonAdded struct {
	ID      *int   `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
}

type jsonComponent struct {
	Type string `json:"type"`
	// Sequence
	Normalizers   []jsonComponent `json:"normalizers"`
	Pretokenizers []jsonComponent `json:"pretokenizers"`
	// Replace
	Pattern *struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	} `json:"pattern"`
	Content *string `json:"content"`
	// Prepend
	Prepend *string `json:"prepend"`
	// Metaspace / ByteLevel
	Replacement    *string `json:"replacement"`
	AddPrefixSpace *bool   `json:"add_prefix_space"`
	PrependScheme  *string `json:"prepend_scheme"`
	UseRegex       *bool   `json:"use_regex"`
}

type jsonModel struct {
	Type         string          `json:"type"`
	UnkToken     *string         `json:"unk_token"`
	ByteFallback bool            `json:"byte_fallback"`
	IgnoreMerges bool            `json:"ignore_merges"`
	Vocab        map[string]int  `json:"vocab"`
	Merges       json.RawMessage `json:"merges"`
	// continuing_subword_prefix / end_of_word_suffix change the algorithm
	ContinuingSubwordPrefix *string `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string `json:"end_of_word_suffix"`
}

type jsonFile struct {
	AddedTokens  []jsonAdded    `json:"added_tokens"`
	Normalizer   *jsonComponent `json:"normalizer"`
	PreTokenizer *jsonComponent `json:"pre_tokenizer"`
	Decoder      *jsonComponent `json:"decoder"`
	Model        *jsonModel     `json:"model"`
}

// flatten lists a component and, for a Sequence, its members (recursively).
func flatten(c *jsonComponent) []jsonComponent {
	if c == nil {
		return nil
	}
	if c.Type != "Sequence" {
		return []jsonComponent{*c}
	}
	var out []jsonComponent
	for i := range c.Normalizers {
		out = append(out, flatten(&c.Normalizers[i])...)
	}
	for i := range c.Pretokenizers {
		out = append(out, flatten(&c.Pretokenizers[i])...)
	}
	return out
}

// ParseJSON reads a tokenizer.json. BOS and EOS are left at -1 (they live in
// config.json or tokenizer_config.json; the caller sets them and calls Init
// again if it changes them). UNK is model.unk_token when set. The returned
// notes describe approximations worth showing the user.
func ParseJSON(data []byte) (*Tokenizer, []string, error) {
	var f jsonFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if f.Model == nil {
		return nil, nil, fmt.Errorf("tokenizer.json: no \"model\" object")
	}
	if f.Model.Type != "BPE" {
		return nil, nil, fmt.Errorf("tokenizer.json: model.type is %q, only \"BPE\" is supported", f.Model.Type)
	}
	if p := f.Model.ContinuingSubwordPrefix; p != nil && *p != "" {
		return nil, nil, fmt.Errorf("tokenizer.json: model.continuing_subword_prefix %q is not supported", *p)
	}
	if p := f.Model.EndOfWordSuffix; p != nil && *p != "" {
		return nil, nil, fmt.Errorf("tokenizer.json: model.end_of_word_suffix %q is not supported", *p)
	}
	var notes []string
	if f.Model.IgnoreMerges {
		notes = append(notes, "tokenizer.json: ignore_merges (whole pre-tokens found in the vocabulary skip merging) is not implemented; merges are always applied")
	}

	// Decide the family.
	norms, pres := flatten(f.Normalizer), flatten(f.PreTokenizer)
	byteLevel, spm, prefix := false, false, false
	for _, c := range pres {
		switch c.Type {
		case "ByteLevel":
			byteLevel = true
			if c.AddPrefixSpace != nil && *c.AddPrefixSpace {
				prefix = true
			}
		case "Metaspace":
			spm = true
			if c.Replacement != nil && *c.Replacement != "▁" {
				return nil, nil, fmt.Errorf("tokenizer.json: Metaspace replacement %q is not supported (only \"▁\")", *c.Replacement)
			}
			switch {
			case c.PrependScheme != nil:
				prefix = *c.PrependScheme != "never"
			case c.AddPrefixSpace != nil:
				prefix = *c.AddPrefixSpace
			default:
				prefix = true
			}
		case "Split":
			if c.Pattern != nil && c.Pattern.Regex != nil && *c.Pattern.Regex != gpt2Pattern {
				notes = append(notes, "tokenizer.json: the Split pre-tokenizer regex differs from GPT-2's; squeeze pre-tokenizes with GPT-2's pattern, so some text may tokenize differently")
			}
		case "Digits", "Punctuation", "Whitespace", "WhitespaceSplit":
			notes = append(notes, fmt.Sprintf("tokenizer.json: pre-tokenizer %s is not implemented and is ignored", c.Type))
		}
	}
	for _, c := range norms {
		switch c.Type {
		case "Replace":
			if c.Pattern != nil && c.Pattern.String != nil && *c.Pattern.String == " " && c.Content != nil && *c.Content == "▁" {
				spm = true
			}
		case "Prepend":
			if c.Prepend != nil && *c.Prepend == "▁" {
				spm = true
				prefix = true
			}
		case "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents":
			notes = append(notes, fmt.Sprintf("tokenizer.json: normalizer %s is not implemented and is ignored", c.Type))
		}
	}
	if !byteLevel && f.Decoder != nil {
		for _, c := range flatten(f.Decoder) {
			if c.Type == "ByteLevel" {
				byteLevel = true
			}
		}
	}
	if !spm && !byteLevel && f.Model.ByteFallback {
		spm = true
	}
	if spm && byteLevel {
		return nil, nil, fmt.Errorf("tokenizer.json: has both SentencePiece (Metaspace/▁) and ByteLevel components; cannot tell the family")
	}
	if !spm && !byteLevel {
		return nil, nil, fmt.Errorf("tokenizer.json: BPE model with neither a ByteLevel pre-tokenizer nor SentencePiece-style ▁ handling is not supported")
	}

	// Vocabulary: model.vocab plus added_tokens, by id.
	n := 0
	for s, id := range f.Model.Vocab {
		if id < 0 || id >= maxJSONVocab {
			return nil, nil, fmt.Errorf("tokenizer.json: model.vocab[%q] = %d, expected 0..%d", s, id, maxJSONVocab-1)
		}
		n = max(n, id+1)
	}
	for i, a := range f.AddedTokens {
		if a.ID == nil {
			return nil, nil, fmt.Errorf("tokenizer.json: added_tokens[%d] (%q) has no id", i, a.Content)
		}
		if *a.ID < 0 || *a.ID >= maxJSONVocab {
			return nil, nil, fmt.Errorf("tokenizer.json: added_tokens[%d] (%q) id %d, expected 0..%d", i, a.Content, *a.ID, maxJSONVocab-1)
		}
		n = max(n, *a.ID+1)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("tokenizer.json: empty vocabulary")
	}
	t := &Tokenizer{Tokens: make([]string, n), Types: make([]TokenType, n), BOS: -1, EOS: -1, UNK: -1, AddSpacePrefix: prefix}
	set := make([]bool, n)
	for s, id := range f.Model.Vocab {
		if set[id] {
			return nil, nil, fmt.Errorf("tokenizer.json: model.vocab has id %d twice (%q and %q)", id, t.Tokens[id], s)
		}
		t.Tokens[id], t.Types[id], set[id] = s, Normal, true
	}
	for _, a := range f.AddedTokens {
		id := *a.ID
		if set[id] && t.Tokens[id] != a.Content {
			return nil, nil, fmt.Errorf("tokenizer.json: added token %q has id %d, which model.vocab gives to %q", a.Content, id, t.Tokens[id])
		}
		t.Tokens[id], set[id] = a.Content, true
		if a.Special {
			t.Types[id] = Control
		} else {
			t.Types[id] = UserDefined
		}
	}
	holes := 0
	for id := range set {
		if !set[id] {
			t.Tokens[id], t.Types[id] = fmt.Sprintf("[PAD%d]", id), Unused
			holes++
		}
	}
	if holes > 0 {
		notes = append(notes, fmt.Sprintf("tokenizer.json: %d unused ids filled with [PADn] placeholders", holes))
	}
	index := make(map[string]int, n)
	for id, s := range t.Tokens {
		if _, dup := index[s]; !dup {
			index[s] = id
		}
	}
	if u := f.Model.UnkToken; u != nil && *u != "" {
		id, ok := index[*u]
		if !ok {
			return nil, nil, fmt.Errorf("tokenizer.json: model.unk_token %q is not in the vocabulary", *u)
		}
		t.UNK = id
		t.Types[id] = Unknown
	}

	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		return nil, nil, err
	}
	if byteLevel {
		t.Kind = ByteBPE
		t.Merges = make([]string, len(merges))
		for i, m := range merges {
			t.Merges[i] = m[0] + " " + m[1]
		}
	} else {
		t.Kind = SentencePiece
		for id, s := range t.Tokens {
			if t.Types[id] == Normal {
				if _, ok := parseByteToken(s); ok {
					t.Types[id] = Byte
				}
			}
		}
		t.Scores = make([]float32, n)
		for i := range t.Scores {
			t.Scores[i] = scoreNoMerge
		}
		done := make([]bool, n)
		for rank, m := range merges {
			id, ok := index[m[0]+m[1]]
			if !ok || done[id] {
				continue
			}
			done[id] = true
			t.Scores[id] = -float32(rank)
		}
	}
	if err := t.Init(); err != nil {
		return nil, nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	return t, notes, nil
}

// parseMerges accepts ["a b", ...] and [["a","b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model.merges: expected an array: %w", err)
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" {
				return nil, fmt.Errorf("tokenizer.json: model.merges[%d] = %q, expected two tokens separated by one space", i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("tokenizer.json: model.merges[%d] = %.40s, expected \"a b\" or [\"a\", \"b\"]", i, it)
		}
		out[i] = [2]string{pair[0], pair[1]}
	}
	return out, nil
}

const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// MarshalJSON writes t as a Hugging Face tokenizer.json.
//
// A SentencePiece vocabulary becomes a BPE model with byte_fallback, a
// normalizer that prepends "▁" (when AddSpacePrefix) and replaces " " by
// "▁", and the Llama decoder. Merges are reconstructed from the scores, as
// transformers' SentencePieceExtractor does: for every Normal token, every
// split into two vocabulary tokens is a merge; merges are ordered by the
// token's score (highest first), then by the ids of the two halves.
// A byte-level vocabulary becomes a BPE model with a ByteLevel
// pre-tokenizer and decoder, and its merges in rank order.
//
// Token strings must be unique (tokenizer.json's vocab is a map).
func MarshalJSON(t *Tokenizer) ([]byte, error) {
	n := len(t.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: empty vocabulary")
	}
	if len(t.Types) != n {
		return nil, fmt.Errorf("tokenizer: %d token types for %d tokens", len(t.Types), n)
	}
	index := make(map[string]int, n)
	for id, s := range t.Tokens {
		if prev, dup := index[s]; dup {
			return nil, fmt.Errorf("tokenizer: token %d %q duplicates token %d; tokenizer.json needs unique tokens", id, s, prev)
		}
		index[s] = id
	}
	var merges [][2]string
	if t.Kind == SentencePiece {
		if len(t.Scores) != n {
			return nil, fmt.Errorf("tokenizer: %d scores for %d tokens", len(t.Scores), n)
		}
		type m struct {
			l, r  int
			score float32
			id    int
		}
		var ms []m
		for id, s := range t.Tokens {
			if t.Types[id] != Normal {
				continue
			}
			for k := 1; k < len(s); k++ {
				l, okl := index[s[:k]]
				r, okr := index[s[k:]]
				if okl && okr {
					ms = append(ms, m{l, r, t.Scores[id], id})
				}
			}
		}
		sort.SliceStable(ms, func(i, j int) bool {
			if ms[i].score != ms[j].score {
				return ms[i].score > ms[j].score
			}
			if ms[i].id != ms[j].id {
				return ms[i].id < ms[j].id
			}
			if ms[i].l != ms[j].l {
				return ms[i].l < ms[j].l
			}
			return ms[i].r < ms[j].r
		})
		for _, x := range ms {
			merges = append(merges, [2]string{t.Tokens[x.l], t.Tokens[x.r]})
		}
	} else {
		for i, s := range t.Merges {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("tokenizer: merge %d %q has no space", i, s)
			}
			merges = append(merges, [2]string{a, b})
		}
	}

	var buf bytes.Buffer
	w := func(s string) { buf.WriteString(s) }
	q := func(s string) string {
		b, _ := json.Marshal(s) // strings always marshal
		return string(b)
	}
	w("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	first := true
	for id, s := range t.Tokens {
		special := t.Types[id] == Control || t.Types[id] == Unknown
		if !special && t.Types[id] != UserDefined {
			continue
		}
		if !first {
			w(",")
		}
		first = false
		fmt.Fprintf(&buf, "\n    {\"id\": %d, \"content\": %s, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": %v, \"special\": %v}",
			id, q(s), !special, special)
	}
	w("\n  ],\n")
	unk := "null"
	if t.UNK >= 0 && t.UNK < n {
		unk = q(t.Tokens[t.UNK])
	}
	if t.Kind == SentencePiece {
		w("  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [")
		if t.AddSpacePrefix {
			w("{\"type\": \"Prepend\", \"prepend\": \"▁\"}, ")
		}
		w("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"▁\"}]},\n")
		w("  \"pre_tokenizer\": null,\n")
		if t.BOS >= 0 && t.BOS < n {
			b := q(t.Tokens[t.BOS])
			fmt.Fprintf(&buf, "  \"post_processor\": {\"type\": \"TemplateProcessing\", "+
				"\"single\": [{\"SpecialToken\": {\"id\": %s, \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "+
				"\"pair\": [{\"SpecialToken\": {\"id\": %s, \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": %s, \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "+
				"\"special_tokens\": {%s: {\"id\": %s, \"ids\": [%d], \"tokens\": [%s]}}},\n", b, b, b, b, b, t.BOS, b)
		} else {
			w("  \"post_processor\": null,\n")
		}
		w("  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"▁\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}")
		if t.AddSpacePrefix {
			w(", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}")
		}
		w("]},\n")
		fmt.Fprintf(&buf, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": %s, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false,\n", unk)
	} else {
		w("  \"normalizer\": null,\n")
		fmt.Fprintf(&buf, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": %v, \"trim_offsets\": true, \"use_regex\": true},\n", t.AddSpacePrefix)
		w("  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true},\n")
		w("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n")
		fmt.Fprintf(&buf, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": %s, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n", unk)
	}
	w("    \"vocab\": {")
	for id, s := range t.Tokens {
		if id > 0 {
			w(",")
		}
		w("\n      " + q(s) + ": " + strconv.Itoa(id))
	}
	w("\n    },\n    \"merges\": [")
	for i, m := range merges {
		if i > 0 {
			w(",")
		}
		w("\n      [" + q(m[0]) + ", " + q(m[1]) + "]")
	}
	w("\n    ]\n  }\n}\n")
	return buf.Bytes(), nil
}
