// Package runtime is the inference engine a bundle ships: the forward pass
// of a Llama-family decoder over weights in any ir encoding (f32, f16, bf16,
// q8_0, palettized lut1..lut8), with a float32 KV cache, grouped-query
// attention, RoPE (interleaved pairs as llama2.c/GGUF, or NeoX halves as
// Hugging Face), a tied or separate classifier, unmerged LoRA adapters,
// batched prefill, and greedy or temperature/top-p sampling (llama2.c's
// sampler and random generator, so a seed reproduces llama2.c's output).
//
// Matrix products go through runtime/kernels; work is split across threads
// by output rows.
package runtime
