//go:build amd64 && !purego

package kernels

func attnAsm() bool { return useAVX2 }

//go:noescape
func attnScores64AVX2(q, k *float32, strideBytes, n int, scale float32, out *float32) (mx float32)

//go:noescape
func attnValues64AVX2(e, v *float32, strideBytes, n int, sum float32, out *float32)

//go:noescape
func attnScoresAVX2(q, k *float32, strideBytes, n, nblk int, scale float32, out *float32) (mx float32)
