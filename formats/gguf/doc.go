// Package gguf reads and writes GGUF files (ggml's model format, versions 2
// and 3, little-endian) for Llama-family models: llama, mistral and qwen2.
//
// File layout (all integers little-endian; a string is a uint64 byte length
// followed by that many UTF-8 bytes, no terminator):
//
//	uint32  magic "GGUF" (bytes 47 47 55 46)
//	uint32  version (3; 2 is identical for little-endian files)
//	uint64  n_tensors
//	uint64  n_kv
//	n_kv x  key/value:   string key, uint32 value type, value
//	        value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32,
//	        7 bool (one byte, 0 or 1), 8 string, 9 array, 10 u64, 11 i64,
//	        12 f64; an array is uint32 element type, uint64 count, elements
//	        (nested arrays are rejected)
//	n_tensors x tensor info: string name, uint32 n_dims (1..4),
//	        uint64 ne[n_dims] innermost first (ne[0] is the row length, so
//	        the ir shape [out, in] is ne reversed), uint32 ggml type,
//	        uint64 offset from the start of the data section
//	padding with zeros to a multiple of general.alignment (default 32)
//	data section: each tensor at its offset (a multiple of the alignment),
//	        padded to the alignment
//
// Tensor types read: f32 (0), f16 (1), q8_0 (8: blocks of 32 values, an f16
// scale then 32 int8) and bf16 (30); others are an error naming the tensor.
// Tensors are views of the (memory-mapped) file, not copies. Names map to
// ir's by dropping ".weight" ("blk.0.attn_q.weight" -> "blk.0.attn_q");
// biases keep ".bias". The config comes from <arch>.embedding_length,
// block_count, feed_forward_length, context_length, attention.head_count,
// head_count_kv, key_length (else rope.dimension_count, else dim/heads),
// layer_norm_rms_epsilon and rope.freq_base (default 10000). A missing
// "output" tensor means tied embeddings. The vocabulary comes from
// tokenizer.ggml.* ("llama": SentencePiece; "gpt2": byte-level BPE).
//
// Every count, length and offset is checked against the file size before
// anything is allocated or sliced; errors name the file, the key or tensor,
// what was expected and what was found.
//
// Write produces what llama.cpp loads as "llama": general.* and llama.*
// keys, the tokenizer, matrices in f32 or f16, vectors in f32, q/k rows
// permuted to adjacent-pair RoPE when the model uses NeoX halves.
package gguf
