// Package hf reads and writes Hugging Face model directories for the Llama
// family: config.json (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM), model.safetensors or a sharded
// model.safetensors.index.json, and tokenizer.json (+ tokenizer_config.json).
//
// Load memory-maps the safetensors shards; F32 tensors point into the
// mappings (zero copy unless misaligned), F16/BF16 keep their encoded bytes.
// HF names are mapped to the canonical GGUF names here (model.embed_tokens
// -> token_embd, model.layers.N.self_attn.q_proj -> blk.N.attn_q, ...).
// HF checkpoints store q/k in the rotate-half RoPE layout, so a loaded model
// has Config.RopeNeoX = true and unpermuted weights. Features the runtime
// lacks (rope_scaling, attention/MLP biases other than Qwen2's q/k/v,
// activations other than SiLU) are refused with an error; a sliding window
// shorter than max_position_embeddings caps the context at the window, which
// is exact. Tied embeddings share token_embd (no "output" tensor), even when
// the file also carries lm_head.weight. Extra tensors (rotary_emb.inv_freq)
// are ignored.
//
// Write produces a real HF checkpoint (F32 or F16): a model in the
// interleaved RoPE layout (llama2.c, GGUF) has its attn_q/attn_k rows
// permuted exactly as transformers' convert_llama_weights_to_hf.py permute
// does (attn_k with the KV head count). The directory is built under a
// temporary name beside the target and renamed into place.
//
// Safetensors headers are validated before use: the 8-byte length against
// the file size and a 100 MB cap, the JSON, and every tensor's dtype, shape
// and data_offsets; errors name the file and the tensor.
package hf
