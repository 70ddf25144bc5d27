package runtime

import "sync"

// parallel runs f(0), ..., f(n-1) (n chunks of work) on up to nt threads
// and returns when all have finished: the calling goroutine and nt-1
// helpers (pool.go) claim chunks from a shared counter. It is the row split
// of the linears and the head split of attention.
//
// Claiming (rather than one fixed share per thread) means the caller
// starts on the first chunk at once and takes over the share of a helper
// that is slow to start or whose OS thread is descheduled on a loaded
// machine.
func parallel(nt, n int, f func(chunk int)) {
	nt = min(nt, n)
	if nt <= 1 {
		for c := 0; c < n; c++ {
			f(c)
		}
		return
	}
	if usePool && poolParallel(nt, n, f) {
		return
	}
	// A goroutine per helper, claiming chunks as the pool's helpers do.
	j := &poolJob{f: f, n: n, nt: nt}
	var wg sync.WaitGroup
	for i := 1; i < nt; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.claim()
		}()
	}
	j.claim()
	wg.Wait()
}

// SplitRows runs f over the rows [0, rows) of a product of work
// multiply-adds as the runtime's linears split one: on one thread when
// work < 65536, else in pieces of whole 16-row groups claimed dynamically
// by up to threads threads (parallel: the caller and the pool's helpers):
// guided pieces (guidedCut) for matrix-vector products, equal chunks for
// larger batches.
// Talaria's host probes call it, so that they split work exactly as a
// decode step does.
func SplitRows(threads, rows, work int, f func(r0, r1 int)) {
	if threads <= 1 || work < 1<<16 {
		f(0, rows)
		return
	}
	if guidedPieces && work/rows <= guidedMaxPerRow {
		// matrix-vector products: guided cut (see guided), decreasing
		// pieces claimed in order; piece c is found by walking the cut
		// (a few dozen steps at most) rather than kept in a list that
		// would escape with the closure
		perRow := work / rows
		n := 0
		guidedRows(rows, perRow, threads, func(int, int) { n++ })
		parallel(threads, n, func(c int) {
			k := 0
			guidedRows(rows, perRow, threads, func(r0, r1 int) {
				if k == c {
					f(r0, r1)
				}
				k++
			})
		})
		return
	}
	nc := chunks(threads, work, (rows+15)/16)
	chunk := ((rows+nc-1)/nc + 15) &^ 15
	nc = (rows + chunk - 1) / chunk
	parallel(threads, nc, func(c int) {
		r0 := c * chunk
		f(r0, min(r0+chunk, rows))
	})
}

// guidedMaxPerRow: SplitRows cuts products of at most this many
// multiply-adds per row (decode: n = 1 with up to 65536 columns) into
// guided pieces; larger ones (prefill) into equal chunks, which measured
// as fast there (BenchmarkGuidedAB, docs/PERF.md, session 9).
const guidedMaxPerRow = 1 << 16

// minChunkWork is the least work (multiply-adds) chunks and guided cut a
// product into.
const minChunkWork = 1 << 18

// chunks returns how many chunks to cut work (multiply-adds) into for nt
// threads: a few per thread so a slow thread's share is taken over, but
// none below minChunkWork, and at most maxChunks.
func chunks(nt, work, maxChunks int) int {
	c := min(4*nt, work/minChunkWork, maxChunks)
	return max(c, min(nt, maxChunks), 1)
}
