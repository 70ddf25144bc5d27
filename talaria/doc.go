// Package talaria is squeeze's device model (after Apple's Talaria tool):
// device profiles and a per-op cost model that predicts, from a model's
// config and a bit plan, the latency, energy and memory of every op of the
// forward pass on a device, for a prefill of N tokens and a decode step at
// context L.
//
// It owns:
//   - Device profiles (Device): a documented JSON schema, built-ins with a
//     source for every number (iphone15pro-ane, iphone15pro-cpu, m2,
//     snapdragon8gen3, rpi5), the measured "host" profile (CalibrateHost,
//     cached in os.UserCacheDir()/squeeze/host-profile.json), and user
//     files (LoadDevice), validated with errors naming file and field.
//   - The cost model (Profile): roofline latency per op = max(DRAM bytes /
//     achieved bandwidth, FLOPs / achieved peak, LUT-decode time) + per-op
//     overhead; energy = DRAM bytes x pJ/byte + on-chip bytes x pJ/byte +
//     FLOPs x pJ/FLOP; totals (TTFT, ms per prompt token, decode tokens/s,
//     energy per token, peak memory). Plans are a map of TensorEncoding or a
//     uniform fractional bits-per-weight (Plan), so talaria does not depend
//     on package palettize.
//   - Views: RenderTable (tablewriter) and WriteJSON (schema in
//     docs/TALARIA.md); what-if overrides (ParseWhatIf, WhatIf); and
//     budgeted bit allocation (SolveBudgets).
//   - Measured mode (Measure, RenderMeasure; `squeeze profile --measure`):
//     runs the squeeze runtime on a model with every op timed
//     (runtime.Options.OpTimer) and pairs each op's measured time (median
//     over decode steps) with the host profile's prediction;
//     EncodeForPlan builds a synthetic model stored as a plan says.
package talaria
