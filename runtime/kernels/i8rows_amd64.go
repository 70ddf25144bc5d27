//go:build amd64 && !purego

package kernels

// The lut2 and lut3 int8 row kernels (i8rows_amd64.s).

//go:noescape
func i8Lut2Rows(idx *byte, rowBytes, nrows, n128 int, xq *int8, isc *int32, sd *float32, tab *byte, gs, first int, out *float32)

//go:noescape
func i8Lut3Rows(p0 *byte, rowBytes0 int, p1 *byte, rowBytes1, nrows, n128 int, xq *int8, sc *float32, tab *byte, gs, first int, out *float32)

//go:noescape
func i8Lut4Rows2(idxA, idxB *byte, rowBytes, npairs, n64 int, xq *int8, sc *float32, tabA, tabB *byte, outA, outB *float32)

//go:noescape
func i8Lut2Rows2(idxA, idxB *byte, rowBytes, npairs, n128 int, xq *int8, isc *int32, sd *float32, tabA, tabB *byte, outA, outB *float32)
