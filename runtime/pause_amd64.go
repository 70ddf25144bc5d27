//go:build amd64 && !purego

package runtime

// cpuPause executes the PAUSE instruction n (>= 1) times: a spin-wait
// hint that gives the core's issue slots to its sibling hyperthread.
//
//go:noescape
func cpuPause(n int)

// havePause: the helper pool may spin (pool.go).
const havePause = true
