package tokenizer

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// tinyBPE is a hand-built byte-level vocabulary: the 256 byte tokens with
// id = byte value, then the results of merges in rank order.
func tinyBPE(t *testing.T, merges ...string) *Tokenizer {
	t.Helper()
	tok := &Tokenizer{Kind: ByteBPE, BOS: -1, EOS: -1, UNK: -1}
	for b := 0; b < 256; b++ {
		tok.Tokens = append(tok.Tokens, string(ByteToRune(byte(b))))
	}
	seen := map[string]bool{}
	for _, m := range merges {
		tok.Merges = append(tok.Merges, m)
		a, b, _ := strings.Cut(m, " ")
		if a == "x" && b == "y" {
			continue // deliberately a merge whose result is not a token
		}
		if !seen[a+b] {
			seen[a+b] = true
			tok.Tokens = append(tok.Tokens, a+b)
		}
	}
	if err := tok.Init(); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSplitGPT2Golden(t *testing.T) {
	// Expected pieces from Python's regex module with GPT-2's pattern.
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world!  It's   a\n\n test's 123 4.5", []string{"Hello", " world", "!", " ", " It", "'s", "  ", " a", "\n\n", " test", "'s", " 123", " 4", ".", "5"}},
		{"日本語 テスト  éàü ½\u00a0x", []string{"日本語", " テスト", " ", " éàü", " ½", "\u00a0", "x"}},
		{"don't\r\n\r\nstop   !!!  ??", []string{"don", "'t", "\r\n\r", "\n", "stop", "  ", " !!!", " ", " ??"}},
		{"x\n \ny", []string{"x", "\n ", "\n", "y"}},
		{"a  ", []string{"a", "  "}},
		{"", nil},
	}
	for _, c := range cases {
		if got := splitGPT2(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitGPT2(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Invalid UTF-8 survives the split.
	bad := "a\xff\xfe b\xc3"
	if got := strings.Join(splitGPT2(bad), ""); got != bad {
		t.Errorf("pieces of invalid UTF-8 join to %q, want %q", got, bad)
	}
}

func TestEncodeBPEHandBuilt(t *testing.T) {
	tok := tinyBPE(t, "Ġ t", "h e", "Ġt he", "l l", "he ll", "hell o", "Ġ Ġ", "x y")
	id := func(s string) int {
		i, ok := tok.ID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return i
	}
	cases := []struct {
		in   string
		want []int
	}{
		{"hello the", []int{id("hello"), id("Ġthe")}},
		{"the  hello", []int{'t', id("he"), ' ', ' ', id("hello")}}, // pieces "the", " ", " hello"
		{"lll", []int{id("ll"), 'l'}},                               // equal ranks: leftmost first
		{"é", []int{0xC3, 0xA9}},
		{"xy", []int{'x', 'y'}}, // merged symbol missing from the vocabulary: bytes
		{"   t", []int{id("ĠĠ"), id("Ġt")}},
	}
	for _, c := range cases {
		got := tok.Encode(c.in, false)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
		if d := tok.Decode(got); d != c.in {
			t.Errorf("Decode(Encode(%q)) = %q", c.in, d)
		}
	}
	tok.AddSpacePrefix = true
	if got, want := tok.Encode("the", false), []int{id("Ġthe")}; !reflect.DeepEqual(got, want) {
		t.Errorf("with add_prefix_space: Encode(\"the\") = %v, want %v", got, want)
	}
}

// trainBPE learns n merges on text (most frequent pair first, ties by the
// smaller pair), the way byte-level BPE vocabularies are built.
func trainBPE(t *testing.T, text string, n int) *Tokenizer {
	words := map[string]int{}
	for _, p := range splitGPT2(text) {
		words[BytesToBPEText([]byte(p))]++
	}
	type word struct {
		syms []string
		n    int
	}
	var ws []word
	keys := make([]string, 0, len(words))
	for w := range words {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	for _, w := range keys {
		var s []string
		for _, r := range w {
			s = append(s, string(r))
		}
		ws = append(ws, word{s, words[w]})
	}
	var merges []string
	for k := 0; k < n; k++ {
		counts := map[[2]string]int{}
		for _, w := range ws {
			for i := 1; i < len(w.syms); i++ {
				counts[[2]string{w.syms[i-1], w.syms[i]}] += w.n
			}
		}
		var best [2]string
		bc := 0
		for p, c := range counts {
			if c > bc || (c == bc && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bc = p, c
			}
		}
		if bc < 2 {
			break
		}
		merges = append(merges, best[0]+" "+best[1])
		for wi := range ws {
			ws[wi].syms = mergeAll(ws[wi].syms, best[0], best[1])
		}
	}
	return tinyBPE(t, merges...)
}

func mergeAll(syms []string, a, b string) []string {
	var out []string
	for i := 0; i < len(syms); i++ {
		if i+1 < len(syms) && syms[i] == a && syms[i+1] == b {
			out = append(out, a+b)
			i++
		} else {
			out = append(out, syms[i])
		}
	}
	return out
}

// refBPE is GPT-2's encoder.py bpe(): repeatedly merge every occurrence of
// the lowest-ranked pair.
func refBPE(tok *Tokenizer, text string) []int {
	var ids []int
	for _, p := range splitGPT2(text) {
		var syms []string
		for _, r := range BytesToBPEText([]byte(p)) {
			syms = append(syms, string(r))
		}
		for {
			best, br := -1, 1<<62
			for i := 1; i < len(syms); i++ {
				if r, ok := tok.mergeRank[syms[i-1]+" "+syms[i]]; ok && r < br {
					best, br = i, r
				}
			}
			if best < 0 {
				break
			}
			syms = mergeAll(syms, syms[best-1], syms[best])
		}
		for _, s := range syms {
			if id, ok := tok.index[s]; ok {
				ids = append(ids, id)
			} else {
				for _, r := range s {
					ids = append(ids, tok.byteTok[runeToByte[r]])
				}
			}
		}
	}
	return ids
}

func devText(t *testing.T, n int) string {
	b, err := os.ReadFile("../../testdata/tinystories/dev.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func TestEncodeBPEMatchesReferenceAndRoundTrips(t *testing.T) {
	text := devText(t, 20000)
	tok := trainBPE(t, text, 300)
	if len(tok.Merges) < 250 {
		t.Fatalf("trained only %d merges", len(tok.Merges))
	}
	extra := "naïve café — “quotes” 日本語テキスト 🙂🙂\t\t\n\n\n   \r\n  x  \u00a0\u2003end's 'LL 1234567 \xff\xfe"
	for _, s := range []string{text, extra, strings.Repeat(" ", 5000) + "a", strings.Repeat("ab", 3000)} {
		ids := tok.Encode(s, false)
		if want := refBPE(tok, s); !reflect.DeepEqual(ids, want) {
			t.Fatalf("encodeBPE differs from the reference on %.40q", s)
		}
		if d := tok.Decode(ids); d != s {
			t.Fatalf("round trip of %.40q gives %.40q", s, d)
		}
		if s == text && len(ids) > len(s)/2 {
			t.Errorf("%d bytes gave %d tokens: merges not applied?", len(s), len(ids))
		}
	}
	if !utf8.ValidString(text) {
		t.Fatal("dev text is not UTF-8")
	}
}
