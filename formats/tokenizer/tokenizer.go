package tokenizer

import (
	"fmt"
	"strings"
)

// Kind is the tokenization algorithm.
type Kind int

const (
	SentencePiece Kind = iota // merges by piece score, "▁" for space, byte fallback
	ByteBPE                   // GPT-2 byte-level BPE, merges by rank
)

func (k Kind) String() string {
	if k == ByteBPE {
		return "bpe"
	}
	return "spm"
}

// TokenType follows GGUF's tokenizer.ggml.token_type values.
type TokenType int32

const (
	Normal      TokenType = 1
	Unknown     TokenType = 2
	Control     TokenType = 3
	UserDefined TokenType = 4
	Unused      TokenType = 5
	Byte        TokenType = 6
)

// Tokenizer is a vocabulary and its algorithm.
type Tokenizer struct {
	Kind   Kind
	Tokens []string    // SentencePiece: spaces as "▁"; ByteBPE: GPT-2 byte-to-unicode text
	Scores []float32   // SentencePiece merge priorities (higher merges first)
	Types  []TokenType //
	Merges []string    // ByteBPE merges "a b", in rank order
	BOS    int         // -1 if none
	EOS    int         // -1 if none
	UNK    int         // -1 if none
	// AddSpacePrefix prepends a space to the text before encoding
	// (SentencePiece's add_dummy_prefix; llama.cpp and llama2.c do it).
	AddSpacePrefix bool

	index     map[string]int
	byteTok   [256]int
	mergeRank map[string]int // "a b" -> rank (ByteBPE)
}

// Size is the number of tokens.
func (t *Tokenizer) Size() int { return len(t.Tokens) }

// Init builds the lookup tables; loaders call it after filling the fields.
// It checks that the vocabulary is usable.
func (t *Tokenizer) Init() error {
	n := len(t.Tokens)
	if n == 0 {
		return fmt.Errorf("tokenizer: empty vocabulary")
	}
	if t.Types == nil {
		t.Types = make([]TokenType, n)
		for i, s := range t.Tokens {
			t.Types[i] = guessType(s)
		}
	}
	if len(t.Types) != n {
		return fmt.Errorf("tokenizer: %d token types for %d tokens", len(t.Types), n)
	}
	if t.Kind == SentencePiece && len(t.Scores) != n {
		return fmt.Errorf("tokenizer: %d scores for %d tokens", len(t.Scores), n)
	}
	for _, id := range []int{t.BOS, t.EOS, t.UNK} {
		if id < -1 || id >= n {
			return fmt.Errorf("tokenizer: special token id %d outside vocabulary of %d", id, n)
		}
	}
	t.index = make(map[string]int, n)
	for i := range t.byteTok {
		t.byteTok[i] = -1
	}
	for i, s := range t.Tokens {
		if _, dup := t.index[s]; !dup {
			t.index[s] = i
		}
		if t.Kind == SentencePiece && t.Types[i] == Byte {
			if b, ok := parseByteToken(s); ok {
				t.byteTok[b] = i
			}
		}
	}
	if t.Kind == ByteBPE {
		t.mergeRank = make(map[string]int, len(t.Merges))
		for r, m := range t.Merges {
			if _, dup := t.mergeRank[m]; !dup {
				t.mergeRank[m] = r
			}
		}
		initByteMaps()
		for b := 0; b < 256; b++ {
			if id, ok := t.index[string(byteToRune[b])]; ok {
				t.byteTok[b] = id
			}
		}
	}
	return nil
}

// ID returns the id of a token's text.
func (t *Tokenizer) ID(s string) (int, bool) {
	id, ok := t.index[s]
	return id, ok
}

func guessType(s string) TokenType {
	if _, ok := parseByteToken(s); ok {
		return Byte
	}
	switch s {
	case "<unk>":
		return Unknown
	case "<s>", "</s>", "\n<s>\n", "\n</s>\n", "":
		return Control
	}
	return Normal
}

// parseByteToken recognises "<0xAB>".
func parseByteToken(s string) (byte, bool) {
	if len(s) != 6 || !strings.HasPrefix(s, "<0x") || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range s[3:5] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= byte(c - '0')
		case c >= 'A' && c <= 'F':
			v |= byte(c-'A') + 10
		case c >= 'a' && c <= 'f':
			v |= byte(c-'a') + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// Encode tokenizes text; bos puts the BOS id first (when there is one).
func (t *Tokenizer) Encode(text string, bos bool) []int {
	var ids []int
	if bos && t.BOS >= 0 {
		ids = append(ids, t.BOS)
	}
	if t.Kind == ByteBPE {
		return t.encodeBPE(text, ids)
	}
	return t.encodeSPM(text, ids)
}

// Piece returns the text of token id as it should be printed after token
// prev: byte tokens become their byte, control tokens nothing, and the
// leading space of the first piece after BOS is dropped (as llama2.c does).
func (t *Tokenizer) Piece(prev, id int) string {
	if id < 0 || id >= len(t.Tokens) {
		return ""
	}
	switch t.Types[id] {
	case Control, Unknown, Unused:
		return ""
	}
	if t.Kind == ByteBPE {
		return t.decodeBPEToken(id)
	}
	if t.Types[id] == Byte {
		b, _ := parseByteToken(t.Tokens[id])
		return string([]byte{b})
	}
	s := strings.ReplaceAll(t.Tokens[id], "▁", " ")
	if prev == t.BOS && t.AddSpacePrefix && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return s
}

// Decode turns ids back into text (the inverse of Encode without BOS).
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	prev := t.BOS
	for _, id := range ids {
		sb.WriteString(t.Piece(prev, id))
		prev = id
	}
	return sb.String()
}
