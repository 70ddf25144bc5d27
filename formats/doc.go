// Package formats reads and writes every file format squeeze meets: llama2.c
// checkpoints and tokenizer.bin, GGUF (read and write), Hugging Face
// directories (config.json, safetensors, tokenizer.json; read and write), and
// the squeeze bundle. Foreign tensor names are mapped to the canonical GGUF
// names here and nowhere else. Weights are memory-mapped wherever the
// encoding allows; every header field that sizes an allocation is checked
// against the file first; every write goes to a temporary file that is
// renamed into place.
package formats
