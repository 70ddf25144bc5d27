package runtime

import (
	"sync"
	"sync/atomic"
)

// parallel runs f(0), ..., f(n-1) (n chunks of work) on up to nt threads
// and returns when all have finished: the calling goroutine and nt-1 new
// goroutines claim chunks from a shared counter. It is the row split of
// the linears and the head split of attention.
//
// Claiming (rather than one fixed share per goroutine, as before) means
// the caller starts on the first chunk at once and takes over the share of
// a goroutine that is slow to start (a scheduler wake-up costs ~10-50 us,
// a decode linear 0.1-1 ms) or whose OS thread is descheduled on a loaded
// machine. Persistent helper goroutines that spin between calls were
// tried and measured slower on the shared 2-vCPU build machine (load 4-15:
// BenchmarkDecodeSplit-style A/B, 12-14 vs 16-17.5 tokens/s), because a
// spinning thread uses up its time slice and is then descheduled in the
// middle of a chunk; helpers that park at once measured the same as
// goroutines per call, so the simpler scheme stays.
func parallel(nt, n int, f func(chunk int)) {
	nt = min(nt, n)
	if nt <= 1 {
		for c := 0; c < n; c++ {
			f(c)
		}
		return
	}
	var next atomic.Int64
	run := func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= n {
				return
			}
			f(c)
		}
	}
	var wg sync.WaitGroup
	for i := 1; i < nt; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	run()
	wg.Wait()
}

// chunks returns how many chunks to cut work (multiply-adds) into for nt
// threads: a few per thread so a slow thread's share is taken over, but
// none below minChunkWork, and at most maxChunks.
func chunks(nt, work, maxChunks int) int {
	const minChunkWork = 1 << 18
	c := min(4*nt, work/minChunkWork, maxChunks)
	return max(c, min(nt, maxChunks), 1)
}
