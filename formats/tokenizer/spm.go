package tokenizer

import (
	"container/heap"
	"strings"
	"unicode/utf8"
)

// encodeSPM is SentencePiece BPE by scores, as llama.cpp's llm_tokenizer_spm
// and llama2.c's encode: split into UTF-8 characters, repeatedly merge the
// adjacent pair whose concatenation is a token with the highest score
// (leftmost on ties), then map each symbol to its id or, if it is not in the
// vocabulary, to its bytes' <0xXX> tokens. O(n log n) with a heap.
func (t *Tokenizer) encodeSPM(text string, ids []int) []int {
	if text == "" {
		return ids
	}
	if t.AddSpacePrefix {
		text = " " + text
	}
	text = strings.ReplaceAll(text, " ", "▁")
	type sym struct {
		start, n   int // byte range in text
		prev, next int
	}
	syms := make([]sym, 0, len(text))
	for i := 0; i < len(text); {
		_, sz := utf8.DecodeRuneInString(text[i:])
		syms = append(syms, sym{start: i, n: sz, prev: len(syms) - 1, next: len(syms) + 1})
		i += sz
	}
	syms[len(syms)-1].next = -1
	h := &bigramHeap{}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		s := text[syms[l].start : syms[r].start+syms[r].n]
		id, ok := t.index[s]
		if !ok {
			return
		}
		heap.Push(h, bigram{left: l, right: r, score: t.Scores[id], size: len(s)})
	}
	for i := 1; i < len(syms); i++ {
		try(i-1, i)
	}
	for h.Len() > 0 {
		b := heap.Pop(h).(bigram)
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue // stale
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = b.left
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		s := text[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.index[s]; ok {
			ids = append(ids, id)
			continue
		}
		for j := 0; j < len(s); j++ {
			if id := t.byteTok[s[j]]; id >= 0 {
				ids = append(ids, id)
			} else if t.UNK >= 0 {
				ids = append(ids, t.UNK)
			}
		}
	}
	return ids
}

type bigram struct {
	left, right int
	score       float32
	size        int
}

type bigramHeap []bigram

func (h bigramHeap) Len() int { return len(h) }
func (h bigramHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score > h[j].score
	}
	return h[i].left < h[j].left
}
func (h bigramHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *bigramHeap) Push(x any)   { *h = append(*h, x.(bigram)) }
func (h *bigramHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
