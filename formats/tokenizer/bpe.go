package tokenizer

// Byte-level BPE (GPT-2 style). NOT YET IMPLEMENTED beyond the byte maps:
// encodeBPE and decodeBPEToken are filled in with the GGUF "gpt2" and
// tokenizer.json loaders.

import "sync"

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

func (t *Tokenizer) encodeBPE(text string, ids []int) []int {
	panic("tokenizer: byte-level BPE encode not implemented yet")
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
