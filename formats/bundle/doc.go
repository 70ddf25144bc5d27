// Package bundle reads and writes the squeeze bundle (.sqz): everything a
// device needs to run a compiled model, in one file that the runtime maps
// without copying.
//
// Layout (all integers little-endian; docs/FORMAT.md is the full reference):
//
//	offset 0   [64]byte header: "SQZB", uint32 format version (1),
//	           uint64 manifest offset, uint64 manifest length,
//	           [32]byte SHA-256 of the manifest, zero padding
//	offset 64  sections, each starting on a 64-byte boundary, zero padding
//	           between them: tensor data (f32/f16 values or packed palette
//	           indices), palette LUTs (float16), per-row scales (float16),
//	           adapter A and B matrices (float16)
//	at the end the manifest: JSON (model config, tokenizer, tensors with
//	           their section numbers, every section's offset, size and
//	           SHA-256, the plan, the calibration summary, adapter sets, the
//	           squeeze version)
//
// The manifest is last so a writer can stream sections without knowing
// their sizes in advance; the header points at it. Writes are atomic and
// deterministic: the same model, plan and seed give the same bytes.
package bundle
