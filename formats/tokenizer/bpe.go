package tokenizer

// Byte-level BPE (GPT-2 style), as used by GPT-2, Qwen2 and Llama 3
// vocabularies (GGUF "gpt2", tokenizer.json with a ByteLevel pre-tokenizer).
//
// Encoding: the text is cut into pieces by the GPT-2 pre-tokenizer pattern
// (splitGPT2), each piece's bytes are mapped to printable runes with GPT-2's
// bytes_to_unicode table, and adjacent symbols are merged by rank (lowest
// rank first, leftmost first on equal ranks, as Hugging Face tokenizers does)
// until no listed merge applies. Each final symbol becomes its id, or, if it
// is not in the vocabulary, the ids of its single bytes.
//
// Limitations (documented, not hidden):
//   - Every vocabulary is pre-tokenized with the GPT-2 pattern. Qwen2 and
//     Llama 3 ship a different Split regex (single digits, case-insensitive
//     contractions, newline handling); text where the patterns disagree may
//     tokenize differently from Hugging Face.
//   - Special added tokens ("<|endoftext|>", "<|im_start|>") written
//     literally in the text are not recognised as one token; they are
//     encoded as ordinary text. Callers that need them append their ids.

import (
	"container/heap"
	"sync"
	"unicode"
	"unicode/utf8"
)

var (
	byteMapsOnce sync.Once
	byteToRune   [256]rune
	runeToByte   map[rune]byte
)

// initByteMaps builds GPT-2's bytes_to_unicode table.
func initByteMaps() {
	byteMapsOnce.Do(func() {
		runeToByte = make(map[rune]byte, 256)
		n := 0
		for b := 0; b < 256; b++ {
			if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
				byteToRune[b] = rune(b)
			} else {
				byteToRune[b] = rune(256 + n)
				n++
			}
			runeToByte[byteToRune[b]] = byte(b)
		}
	})
}

// ByteToRune returns the printable rune GPT-2's bytes_to_unicode maps b to.
func ByteToRune(b byte) rune {
	initByteMaps()
	return byteToRune[b]
}

// BytesToBPEText maps raw bytes to GPT-2 byte-level token text.
func BytesToBPEText(b []byte) string {
	initByteMaps()
	out := make([]rune, len(b))
	for i, c := range b {
		out[i] = byteToRune[c]
	}
	return string(out)
}

func (t *Tokenizer) encodeBPE(text string, ids []int) []int {
	if text == "" {
		return ids
	}
	initByteMaps()
	if t.AddSpacePrefix && text[0] != ' ' {
		// Hugging Face ByteLevel(add_prefix_space=true).
		text = " " + text
	}
	for _, piece := range splitGPT2(text) {
		ids = t.bpePiece(piece, ids)
	}
	return ids
}

// bpePiece merges one pre-tokenized piece and appends its ids.
func (t *Tokenizer) bpePiece(piece string, ids []int) []int {
	// mapped is the piece in byte-level text; every byte of piece becomes
	// one rune (1 or 2 UTF-8 bytes) of mapped.
	mapped := make([]byte, 0, 2*len(piece))
	type sym struct {
		start, n   int // byte range in mapped
		prev, next int
	}
	syms := make([]sym, 0, len(piece))
	for i := 0; i < len(piece); i++ {
		start := len(mapped)
		mapped = utf8.AppendRune(mapped, byteToRune[piece[i]])
		syms = append(syms, sym{start: start, n: len(mapped) - start, prev: i - 1, next: i + 1})
	}
	syms[len(syms)-1].next = -1
	if len(syms) > 1 && len(t.mergeRank) > 0 {
		h := &mergeHeap{}
		key := make([]byte, 0, 64)
		try := func(l, r int) {
			if l < 0 || r < 0 {
				return
			}
			a, b := syms[l], syms[r]
			key = append(key[:0], mapped[a.start:a.start+a.n]...)
			key = append(key, ' ')
			key = append(key, mapped[b.start:b.start+b.n]...)
			rank, ok := t.mergeRank[string(key)]
			if !ok {
				return
			}
			heap.Push(h, mergeCand{rank: rank, left: l, right: r, ln: a.n, rn: b.n})
		}
		for i := 1; i < len(syms); i++ {
			try(i-1, i)
		}
		for h.Len() > 0 {
			c := heap.Pop(h).(mergeCand)
			l, r := &syms[c.left], &syms[c.right]
			if l.n != c.ln || r.n != c.rn || l.next != c.right {
				continue // stale: one side has merged since
			}
			l.n += r.n
			r.n = 0
			l.next = r.next
			if r.next >= 0 {
				syms[r.next].prev = c.left
			}
			try(l.prev, c.left)
			try(c.left, l.next)
		}
	}
	for i := 0; i >= 0; i = syms[i].next {
		s := mapped[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.index[string(s)]; ok {
			ids = append(ids, id)
			continue
		}
		// Not in the vocabulary: fall back to single bytes.
		for _, r := range string(s) {
			b := runeToByte[r]
			if id := t.byteTok[b]; id >= 0 {
				ids = append(ids, id)
			} else if t.UNK >= 0 {
				ids = append(ids, t.UNK)
			}
		}
	}
	return ids
}

type mergeCand struct {
	rank        int
	left, right int
	ln, rn      int // symbol lengths when pushed, to detect stale entries
}

type mergeHeap []mergeCand

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].left < h[j].left
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(mergeCand)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// splitGPT2 cuts text with GPT-2's pre-tokenizer pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// implemented by hand because Go's regexp has no lookahead. Alternatives are
// tried in order at each position, as a backtracking regex engine does.
// Invalid UTF-8 bytes count as "other" characters and are kept as they are,
// so the pieces always concatenate back to text.
func splitGPT2(text string) []string {
	var out []string
	// rune at byte offset i (RuneError for invalid bytes, with size 1)
	at := func(i int) (rune, int) {
		if i >= len(text) {
			return -1, 0
		}
		return utf8.DecodeRuneInString(text[i:])
	}
	isL := func(r rune) bool { return r >= 0 && r != utf8.RuneError && unicode.IsLetter(r) }
	isN := func(r rune) bool { return r >= 0 && r != utf8.RuneError && unicode.IsNumber(r) }
	isS := func(r rune) bool { return r >= 0 && r != utf8.RuneError && unicode.IsSpace(r) }
	isO := func(r rune) bool { return r >= 0 && !isL(r) && !isN(r) && !isS(r) }
	// run returns the end of the longest run of class f starting at i.
	run := func(i int, f func(rune) bool) int {
		for i < len(text) {
			r, sz := at(i)
			if !f(r) {
				break
			}
			i += sz
		}
		return i
	}
	i := 0
	for i < len(text) {
		r, sz := at(i)
		end := -1
		// contractions
		if r == '\'' {
			for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
				if len(text)-i-1 >= len(c) && text[i+1:i+1+len(c)] == c {
					end = i + 1 + len(c)
					break
				}
			}
		}
		if end < 0 {
			// ` ?X+` for X in letters, numbers, others
			j, rj := i, r
			if r == ' ' {
				j = i + 1
				rj, _ = at(j)
			}
			for _, f := range [...]func(rune) bool{isL, isN, isO} {
				if f(rj) {
					end = run(j, f)
					break
				}
			}
		}
		if end < 0 && isS(r) {
			// \s+(?!\S) | \s+
			e := run(i, isS)
			if e < len(text) {
				// followed by a non-space: give back the last whitespace
				// character if that leaves at least one.
				_, lastSz := utf8.DecodeLastRuneInString(text[i:e])
				if e-lastSz > i {
					e -= lastSz
				}
			}
			end = e
		}
		if end < 0 {
			end = i + sz // unreachable for valid classes; guards progress
		}
		out = append(out, text[i:end])
		i = end
	}
	return out
}

func (t *Tokenizer) decodeBPEToken(id int) string {
	initByteMaps()
	var out []byte
	for _, r := range t.Tokens[id] {
		if b, ok := runeToByte[r]; ok {
			out = append(out, b)
		} else {
			out = append(out, string(r)...)
		}
	}
	return string(out)
}
