package runtime

import (
	"os"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The helper pool behind parallel. A decode step runs ~100 parallel
// sections a fraction of a millisecond apart (the 1.1B shape: 22 layers x
// q/k/v, o, gate/up, down and attention); starting a goroutine for each
// costs 10-50 us before it runs, a large share of a 120 us section. The
// helpers instead watch for the next section for poolSpin and then park.
// They spin with PAUSE (cpuPause), which hands the core's issue slots to
// the sibling hyperthread doing the serial work between sections: a
// plain Go busy loop took them and measured much slower on the 2-vCPU (one
// core) build machine (decode 19.7-20.9 against 25.9-28.5 tok/s with
// goroutines per call); with PAUSE it measured 32.3-35.6 against 27.1-30.5
// (BenchmarkDecodeInt8/t2, three interleaved pairs; docs/PERF.md, session
// 7). One call at a time holds the helpers; a concurrent call (another
// model on another goroutine) starts goroutines as before.

var pool struct {
	mu      sync.Mutex // held by the call that uses the helpers
	helpers []*helper
	job     atomic.Pointer[poolJob] // the latest call's; helpers wait for a new one
}

// poolJob is one call of poolParallel: chunks claimed from next, and how
// many have finished. The caller waits for the chunks, not for the
// helpers: one that has not started by the time every chunk is claimed
// (its thread descheduled on a loaded machine) is not waited for, and
// finds nothing left when it does start.
type poolJob struct {
	f     func(chunk int)
	n, nt int
	next  atomic.Int64
	done  atomic.Int64
}

type helper struct {
	idx    int // helper idx takes part in calls with nt > idx+1
	parked atomic.Bool
	wake   chan struct{} // buffered (1): a wake-up sent just before parking is kept
}

// poolSpin is how long an idle helper watches for the next call before
// parking: the serial work between a token's sections takes ~10-30 us;
// between tokens a sampler or a caller may take longer, and then the
// helpers sleep. 50 us measured as fast as 200 on a quiet machine and
// lost less on an oversubscribed one (stories110M, 4-bit, 2 threads, two
// busy processes beside it: 100 / 87 tok/s against 81 / 81; goroutines
// per call 77-119, noisy).
const poolSpin = 50 * time.Microsecond

// usePool selects the helper pool in parallel (false: a goroutine per
// call). SQUEEZE_POOL=off turns it off: on a machine whose cores are all
// busy with other work, spinning helpers lose their time slices and decode
// measured 15-25% slower than with goroutines per call (docs/PERF.md,
// session 7).
var usePool = havePause && os.Getenv("SQUEEZE_POOL") != "off"

// poolParallel is parallel on the helpers; ok is false (and nothing ran)
// when another call holds them.
func poolParallel(nt, n int, f func(chunk int)) (ok bool) {
	// With fewer Ps than threads the helpers could not run beside the
	// caller (GOMAXPROCS=1 made 2-thread decode 3.4x slower than 1 thread
	// on this path): goroutines that park at once serve better.
	if goruntime.GOMAXPROCS(0) < nt || !pool.mu.TryLock() {
		return false
	}
	defer pool.mu.Unlock()
	for len(pool.helpers) < nt-1 {
		h := &helper{idx: len(pool.helpers), wake: make(chan struct{}, 1)}
		pool.helpers = append(pool.helpers, h)
		go h.loop(pool.job.Load())
	}
	j := &poolJob{f: f, n: n, nt: nt}
	pool.job.Store(j)
	for _, h := range pool.helpers[:nt-1] {
		if h.parked.Load() {
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
	}
	j.claim()
	// The helpers finish the chunks they hold: spin a few microseconds,
	// then yield, then sleep.
	for spins := 0; j.done.Load() != int64(n); spins++ {
		switch {
		case spins < 200:
			cpuPause(4)
		case spins < 1000:
			goruntime.Gosched()
		default:
			time.Sleep(time.Microsecond)
		}
	}
	return true
}

func (j *poolJob) claim() {
	for {
		c := int(j.next.Add(1) - 1)
		if c >= j.n {
			return
		}
		j.f(c)
		j.done.Add(1)
	}
}

// loop runs one helper for the life of the process: wait for a job newer
// than last (spinning for poolSpin, then parked until woken), take chunks
// of it if the call has that many threads, repeat. last stays referenced,
// so a new job can never reuse its address.
func (h *helper) loop(last *poolJob) {
	for {
		start := time.Now()
		j := pool.job.Load()
		for spins := 0; j == last; spins++ {
			cpuPause(4)
			if spins&255 == 255 && time.Since(start) > poolSpin {
				h.parked.Store(true)
				// A call that stored its job before this Store may have
				// seen parked false and not woken us: look again.
				if pool.job.Load() == last {
					<-h.wake
				}
				h.parked.Store(false)
				start = time.Now()
			}
			j = pool.job.Load()
		}
		last = j
		if h.idx < j.nt-1 {
			j.claim()
		}
	}
}
