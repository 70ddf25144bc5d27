//go:build amd64 && !purego

package kernels

//go:noescape
func gather8AVX2(idx *byte, tab *float32, dst *float32, n int)

// gather8 sets dst[i] = tab[idx[i]] (len(dst) <= len(idx)) with AVX2
// gathers; false without the assembly.
func gather8(idx []byte, tab *[256]float32, dst []float32) bool {
	n := len(dst)
	if !useAVX2 || n < 8 {
		return false
	}
	idx = idx[:n]
	m := n &^ 7
	gather8AVX2(&idx[0], &tab[0], &dst[0], m)
	for i := m; i < n; i++ {
		dst[i] = tab[idx[i]]
	}
	return true
}
