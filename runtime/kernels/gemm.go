package kernels

import "github.com/squeeze-ml/squeeze/ir"

// Float-mode prefill (MatMul for every encoding outside the int8 path):
// weight rows are decoded (f32: used in place) a panel of gemmPanelRows at
// a time and multiplied with the inputs by the 3-row x 4-token micro-kernel
// dot3x4, in column blocks of gemmKC so that a token quad's slice stays in
// L1 while every row triple of the panel passes over it, and the panel's
// slice stays in L2 while every token quad passes over it.
//
// Every (row, token) output is computed by the same arithmetic whatever the
// row range [r0, r1), the number of tokens and the panel position: a row or
// token without a full triple/quad is run through the same kernel with a
// stride of 0 (the row or token repeated), column blocks are cut at the same
// absolute columns, and the cols%8 tail is added last in order. So results do
// not depend on how callers split rows across threads or tokens into
// batches.
const (
	gemmPanelRows = 24  // rows decoded per panel (a multiple of 3)
	gemmKC        = 512 // columns per block (a multiple of 8)
)

// matMulPanel computes rows [r0, r1) of W x for n inputs into out[i*rows+r].
// wf is the f32 view when w is F32 (nil otherwise); L the layout when w is
// palettized (isLUT).
func matMulPanel(w *ir.Tensor, wf []float32, L *lutLayout, isLUT bool, x, out []float32, n, r0, r1 int) {
	rows, cols := w.Rows(), w.Cols()
	main := cols &^ 7
	var panel []float32
	var pb *[]float32
	if wf == nil {
		pb = getBuf(gemmPanelRows * cols)
		defer putBuf(pb)
		panel = (*pb)[:gemmPanelRows*cols]
	}
	var tab *lutTable
	if isLUT {
		tab = getTable()
		defer putTable(tab)
	}
	var scale [gemmPanelRows]float32
	var o [12]float32
	for p0 := r0; p0 < r1; p0 += gemmPanelRows {
		m := min(gemmPanelRows, r1-p0)
		var pw []float32 // the panel's rows, row j at pw[j*cols:]
		if wf != nil {
			pw = wf[p0*cols : (p0+m)*cols]
			for j := range m {
				scale[j] = 1
			}
		} else {
			pw = panel[:m*cols]
			for j := range m {
				scale[j] = decodeRowF32(w, L, isLUT, p0+j, pw[j*cols:(j+1)*cols], tab)
			}
		}
		for k0 := 0; k0 < main; k0 += gemmKC {
			kn := min(gemmKC, main-k0)
			first := k0 == 0
			t := 0
			for ; t < n; t += 4 {
				xs, ldx, nt := x[t*cols+k0:], cols, 4
				if t+4 > n {
					nt = n - t
				}
				for j := 0; j < m; j += 3 {
					nr := min(3, m-j)
					ws, ldw := pw[j*cols+k0:], cols
					if nr == 3 && nt == 4 {
						dot3x4(ws, ldw, xs, ldx, kn, &o)
						storeTile(out, &o, t, nt, rows, p0+j, nr, first)
						continue
					}
					// Partial tile: the missing rows or tokens are the present
					// ones repeated (stride 0), so every (row, token) sees the
					// same lane arithmetic as in a full tile.
					switch {
					case nr == 3:
						for tt := range nt {
							dot3x4(ws, ldw, xs[tt*cols:], 0, kn, &o)
							storeTile(out, &o, t+tt, 1, rows, p0+j, 3, first)
						}
					case nt == 4:
						for rr := range nr {
							dot3x4(ws[rr*cols:], 0, xs, ldx, kn, &o)
							for tt := range 4 {
								addOut(out, (t+tt)*rows+p0+j+rr, o[tt*3], first)
							}
						}
					default:
						for tt := range nt {
							for rr := range nr {
								dot3x4(ws[rr*cols:], 0, xs[tt*cols:], 0, kn, &o)
								addOut(out, (t+tt)*rows+p0+j+rr, o[0], first)
							}
						}
					}
				}
			}
		}
		for j := range m {
			r := p0 + j
			wr := pw[j*cols : (j+1)*cols]
			for t := 0; t < n; t++ {
				i := t*rows + r
				var acc float32
				if main > 0 {
					acc = out[i]
				}
				xt := x[t*cols : (t+1)*cols]
				for c := main; c < cols; c++ {
					acc += wr[c] * xt[c]
				}
				out[i] = acc * scale[j]
			}
		}
	}
}

// storeTile writes (first) or adds a 3x4 kernel result to out.
func storeTile(out []float32, o *[12]float32, t, nt, rows, r, nr int, first bool) {
	for tt := range nt {
		dst := out[(t+tt)*rows+r : (t+tt)*rows+r+nr]
		src := o[tt*3 : tt*3+nr]
		if first {
			copy(dst, src)
		} else {
			for k, v := range src {
				dst[k] += v
			}
		}
	}
}

func addOut(out []float32, i int, v float32, first bool) {
	if first {
		out[i] = v
	} else {
		out[i] += v
	}
}

// decodeRowF32 decodes row r of w into dst (float32) and returns the factor
// the row's products must be multiplied by (the per-row scale of a
// palettized tensor; 1 otherwise).
func decodeRowF32(w *ir.Tensor, L *lutLayout, isLUT bool, r int, dst []float32, tab *lutTable) float32 {
	cols := len(dst)
	switch {
	case isLUT:
		return decodeLUTRow(w, L, r, dst, tab)
	case w.Type == ir.F16:
		if wh, ok := f16View(w); ok {
			f16ToF32(wh[r*cols:(r+1)*cols], dst)
			return 1
		}
	}
	w.DecodeRow(r, dst)
	return 1
}

// dot3x4Go is the portable micro-kernel with the assembly's lane order:
// lane l sums k = l mod 8 in order, lanes combined as
// ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)).
func dot3x4Go(w []float32, ldw int, x []float32, ldx, n int, out *[12]float32) {
	for t := range 4 {
		xt := x[t*ldx : t*ldx+n]
		for r := range 3 {
			wr := w[r*ldw : r*ldw+n]
			var l [8]float32
			for k := 0; k < n; k += 8 {
				for j := range 8 {
					l[j] += wr[k+j] * xt[k+j]
				}
			}
			out[t*3+r] = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
		}
	}
}

// MatMulF32 is MatMul for a float32 matrix held in a slice (rows x cols,
// row-major): out[i*rows+r] = sum_c w[r*cols+c] * x[i*cols+c] for i < n.
// Calibration forms its Gram matrices X^T X with it.
func MatMulF32(w []float32, rows, cols int, x, out []float32, n int) {
	if n <= 0 || rows <= 0 {
		return
	}
	_ = w[rows*cols-1]
	_ = x[n*cols-1]
	_ = out[n*rows-1]
	shape := &ir.Tensor{Shape: []int{rows, cols}, Type: ir.F32}
	matMulPanel(shape, w, nil, false, x, out, n, 0, rows)
}
