// Package llama2c reads Karpathy's llama2.c checkpoints (the legacy header,
// and the version 1 (fp32) and version 2 (int8, group-quantised) exports
// with the "ak42" magic) and llama2.c tokenizer.bin vocabularies.
//
// Legacy layout: seven int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len; a positive vocab_size means the
// classifier shares the token embedding), then float32 tensors in order
// token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final,
// freq_cis_real, freq_cis_imag, and wcls when not shared.
//
// Version 1/2: uint32 magic 0x616b3432, int32 version, the seven int32,
// uint8 shared_classifier (v2: int32 group_size), zero padding to 256 bytes.
// v1 then holds float32 rms_att, rms_ffn, rms_final, token_embedding, wq, wk,
// wv, wo, w1, w2, w3 (, wcls). v2 holds the three norms in float32, then for
// each of token_embedding, wq, wk, wv, wo, w1, w2, w3 (, wcls) the int8
// values followed by one float32 scale per group_size values.
//
// w1 is ffn_gate, w3 ffn_up, w2 ffn_down. Float32 tensors point into the
// memory-mapped file; version 2 is dequantised to float32 at load.
package llama2c
