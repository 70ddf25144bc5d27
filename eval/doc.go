// Package eval measures a model against text and against a reference model
// with llama.cpp's llama-perplexity protocol: the whole file is tokenized as
// one stream with BOS first, cut into windows of ctx tokens, each window's
// first token replaced by BOS, and the second half of each window scored
// (positions ctx/2 .. ctx-2 predicting the next token, ctx/2 - 1 per window,
// exactly as perplexity.cpp's process_logits). With a reference model it
// reports mean KL divergence KL(reference || model), its 99th percentile and
// the rate at which both put the same token on top, over the same positions.
// Gate thresholds for CI live here too.
package eval
