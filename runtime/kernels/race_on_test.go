//go:build race

package kernels

// raceEnabled: built with -race. The race detector makes sync.Pool drop a
// share of what is put back (to expose code that relies on getting it
// again), so the pooled paths allocate now and then and the allocation
// tests do not hold there.
const raceEnabled = true
