//go:build (!amd64 && !arm64) || purego

package runtime

func cpuPause(n int) {}

// havePause is false: without a spin-wait hint a spinning helper takes
// the issue slots of its sibling hyperthread, so parallel starts a
// goroutine per call instead (pool.go).
const havePause = false
