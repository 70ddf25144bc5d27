// Package lorarecovery trains LoRA adapters that win back the accuracy a
// palettized (compressed) model lost, by distillation from the original.
//
// It owns:
//
//   - a self-contained float32 trainer for Llama-family decoders: each layer
//     is a _forward/_backward pair with the same argument order (as llm.c's
//     train_gpt2.c): embedding, RMSNorm (weight frozen), linear with LoRA
//     (base frozen; gradients for A, B and the input), RoPE (llama
//     adjacent-pairs or NeoX halves), causal attention with grouped KV heads,
//     SwiGLU, residual add, final RMSNorm + classifier, and the
//     KL(teacher || student) loss with optional cross-entropy on the text;
//   - initialisation of the adapters from the compression residual W - W_q,
//     weighted by per-input-channel calibration importance (InitFromResidual);
//   - Train: Adam with global-norm clipping, cosine schedule with warmup,
//     a held-out split scored by KL, best-by-held-out selection,
//     deterministic for a seed (bit-identical for any thread count:
//     sequences of a batch are processed in parallel, and their gradients
//     are reduced in sequence order);
//   - RankForBudget: the largest rank whose float16 adapters fit a byte
//     budget;
//   - TuneLUTs (lut_tune.go): zero-byte recovery -- the same distillation
//     trains the palettes of a palettized model (float16 LUT entries and
//     per-row scales; indices frozen) and optionally its float32 RMSNorm
//     weights; the backward pass hands each tuned weight's dout and input
//     to a weight sink that reduces dL/dW to the palette gradient;
//   - palette QAT (qat.go, TuneOptions.QAT): the same tuning also
//     re-assigns the indices -- latent float32 weights trained through the
//     straight-through estimator, each index following the nearest LUT
//     entry -- at zero extra bytes (bits, groups and scale presence kept);
//     for models whose float32 weights and optimizer state fit in memory.
//
// Speed: the products of the forward and backward passes (linears,
// classifier, the weight gradients of tuned tensors, and attention as
// per-head products in blocks of 4 query rows that skip masked key
// blocks) run on gemm (matmul.go), an outer-product kernel with AVX2/FMA
// 4x16 and 4x8 tiles on amd64 (gemm_amd64.s); softmax rows and SiLU take
// their exponentials 8 at a time (exp_amd64.s), bit for bit runtime.Expf.
// Every output is summed in a fixed order by the same code whatever the
// thread split, so training stays deterministic for any thread count.
//
// Adapters are ir.Adapter values: y = W x + Scale * B (A x), with A
// (rank x in) and B (out x rank) row-major float32 in memory. Storing them
// (float16 in bundles) and applying them at inference belong to formats and
// runtime; this package does not depend on runtime.
//
// Not done: for a big vocabulary the teacher distributions are recomputed
// per batch (or cached in full when they fit Options.TeacherCacheBytes); a
// top-k teacher cache is a TODO. QKV biases (Qwen2) are not supported by the
// trainer yet: Train returns an error for a model with QKVBias.
package lorarecovery
