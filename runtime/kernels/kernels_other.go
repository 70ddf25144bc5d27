//go:build (!amd64 && !arm64) || purego

package kernels

// Architectures without assembly kernels (and the purego tag) use the
// pure-Go paths: block-wise LUT decoding into a stack buffer and unrolled Go
// dot products (hooks_go.go). They are held to the same parity tests.

func archImpl() string { return "go" }

func dotF32(a, b []float32) float32 { return dotF32Go(a, b) }

func dotF16(w []uint16, x []float32) float32 { return dotF16Go(w[:len(x)], x) }

// rowsF32 and rowsF16 (one call for many rows) are amd64 assembly only:
// here MatVec calls dotF32 / dotF16 per row.
func rowsF32(w []float32, x []float32, cols int, out []float32) bool { return false }

func rowsF16(w []uint16, x []float32, cols int, out []float32) bool { return false }

func f16ToF32(src []uint16, dst []float32) { f16ToF32Go(src, dst) }

// sum2 is sum here: the two-stream probe pattern is amd64 assembly only.
func sum2(a []float32) float32 { return sum(a) }

func sum(a []float32) float32 { return sumGo(a) }

func axpy(a float32, x, y []float32) { axpyGo(a, x, y) }

func lutRowDot(bits int, p0, p1 []byte, x, xp []float32, lut []uint16, tab *lutTable) (float32, bool) {
	return 0, false
}

func lutRowDecode(bits int, p0 []byte, dst []float32, lut []uint16) bool { return false }

func setAsm(on bool) bool { return false }

// asmBuilt reports whether this build contains assembly kernels.
const asmBuilt = false
