// Package tokenizer turns text into token ids and back, for the two families
// of vocabularies Llama-style models ship: SentencePiece BPE merged by piece
// scores (llama2.c tokenizer.bin, GGUF "llama", tokenizer.json with a
// Metaspace pre-tokenizer and byte fallback) and byte-level BPE merged by
// rank (GGUF "gpt2", tokenizer.json with a ByteLevel pre-tokenizer).
//
// The file formats that carry vocabularies are read in package formats; this
// package owns only the algorithms and the in-memory vocabulary.
package tokenizer
