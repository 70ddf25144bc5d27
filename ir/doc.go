// Package ir is squeeze's in-memory picture of a model: its configuration,
// its named weight tensors (shape, encoding, bytes), the weight encodings
// table (f32, f16, bf16, q8_0, lut1..lut8), and the ops in execution order
// with their FLOPs and bytes for a prefill of N tokens and one decode step
// at context L.
//
// Conventions (DESIGN.md): weights are row-major [out, in]; tensor names are
// GGUF's (token_embd, blk.N.attn_q, blk.N.ffn_down, output_norm, output);
// other naming schemes are mapped at the format boundary and nowhere else.
package ir
