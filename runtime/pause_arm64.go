//go:build arm64 && !purego

package runtime

// cpuPause executes the YIELD hint n (>= 1) times.
//
//go:noescape
func cpuPause(n int)

// havePause: the helper pool may spin (pool.go).
const havePause = true
