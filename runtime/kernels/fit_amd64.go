//go:build amd64 && !purego

package kernels

//go:noescape
func fitSumsAVX2(gs *int32, k int, lp, php *int32, nc int, lv int, su, suu, sug *int32)

// fitSums is fitSumsGo in AVX2, 8 candidates per vector (fit_amd64.s), the
// same integers; false without the assembly.
func fitSums(gq []int32, cs *fitCands, lv int32, su, suu, sug *[fitNC]int32) bool {
	if !useAVX2 || len(gq) == 0 {
		return false
	}
	fitSumsAVX2(&gq[0], len(gq), &cs.L[0], &cs.ph[0], fitNC, int(lv), &su[0], &suu[0], &sug[0])
	return true
}
