// Package palettize owns squeeze's compression core: weighted 1-D k-means
// (KMeansExact, KMeansBinned, KMeansLloyd), palettizing one tensor into
// float16 LUTs plus packed indices (PalettizeTensor, in ir's LUT1..LUT8
// encodings), per-tensor damage estimates for every candidate encoding
// (Candidates, DamageTable), the bit allocation that meets a bits-per-weight
// target with least damage (Allocate, the Plan type and its JSON form),
// per-group allocation (groups.go: GroupCandidates prices every block of
// LUT-group rows per option, AllocateGroups lets each block choose, Apply
// stores the runs as parts of an ir.LUTMIX tensor), and applying a plan to
// a model (Apply). Calibration (calibrate.go) collects the
// per-input-channel importance the damage is weighted by.
//
// Damage is the importance-weighted squared error sum_i imp(col_i) (w_i -
// q_i)^2, with imp the mean square of the input channel's activation on
// calibration text (uniform when none is given): a diagonal approximation
// of the layer's output error E||(W - Q) x||^2.
//
// With a sensitivity calibration (CalibrateWith, Sensitivity: a forward and
// backward pass in sensitivity.go) the damage is instead sum_ij F_i H_jj
// e_ij^2, F_i the Fisher of output channel i: twice the predicted KL
// divergence per position, comparable across tensors (TensorWeights). With
// Gram matrices, rounding uses GPTQ-style error feedback onto the k-means
// LUT, then a least-squares LUT refit (gptq.go), and the damage uses the
// full input second moment: sum_i F_i e_i H e_i^T.
//
// Layout: a tensor of rows x cols with group size G has ceil(rows/G) LUTs of
// 1<<bits float16 entries (row r uses LUT r/G; the last group may be
// smaller), optional per-row scales stored as one-byte codes (ir.ScaleCode:
// the row's max |w| relative to its group's largest on a 2.2% log grid;
// the LUT carries the magnitude), and indices packed in
// ir.PackIndices' layout in row-major order (packIndices: the same bytes,
// sixteen lanes at a time, split over the workers). Bits per weight always count the LUTs
// and scales (PalettizedBytes equals ir.Tensor.Bytes of the result).
//
// Exact k-means is dynamic programming over sorted values with prefix sums
// and divide-and-conquer on the monotone split, O(k m log m) for m distinct
// values. A group with more than DefaultMaxBins values is first reduced to
// a histogram of about that many bins (the DP is exact among clusterings
// that keep bins whole; TestBinnedGap measures ~1e-4 relative extra cost at
// 4 bits), then refined by one Lloyd step (on the points; with FastBins on the fine
// histogram's cells), so
// the work per group does not grow with its size beyond O(n) passes; the
// nearest LUT entry of each weight is found through a table over the LUT's
// range (nearTable, exact). For big models compile uses FastBins (fewer
// bins), CandidateOptions.SampleRows (damage estimated on sampled rows),
// MinGroupSavingBPW (no group sizes that save next to nothing) and
// ApplyOptions.NoStats (no damage pass when encoding the chosen plan). The
// calibration backward pass transposes small tiles of each weight on the
// fly, so it never holds a second copy of the model; a window split over
// several threads splits its matrix products, attention heads (by KV-head
// group) and element-wise loops, with bit-identical results.
//
// Everything is deterministic for a given input and seed: parallel work is
// split by LUT group or by (tensor, option) and written to fixed slots.
package palettize
