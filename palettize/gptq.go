package palettize

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// This file holds error-feedback rounding (GPTQ, Frantar et al. 2022) onto
// a fixed LUT. For one row w of a linear whose input has second moment H =
// E[x x^T], the output error is E[((w - q) x)^2] = (w - q) H (w - q)^T.
// Rounding the columns one at a time, and after each moving the rounding
// error onto the columns not yet rounded along the inverse-Hessian
// direction, minimises that error greedily; with U the upper Cholesky
// factor of H^-1 (H^-1 = U^T U), after rounding column j:
//
//	w[k] -= (w[j] - q[j]) / U[j][j] * U[j][k]   for k > j.
//
// Columns are processed in order of decreasing H[j][j] ("act order"), and H
// is dampened by 1% of its mean diagonal, as GPTQ does.

// Hessian is a linear's input second moment prepared for error feedback.
type Hessian struct {
	N    int       // columns
	H    []float64 // N x N, row-major, undampened (for the damage)
	Perm []int     // processing order: Perm[k] is the k-th column rounded
	U    []float64 // N x N upper Cholesky factor of the dampened H^-1, in Perm order
}

// DefaultDamp is GPTQ's dampening, as a fraction of the mean diagonal.
const DefaultDamp = 0.01

// NewHessian prepares h (n x n, symmetric positive semi-definite, e.g.
// Calibration.Gram) for error-feedback rounding. Columns with a zero
// diagonal (inputs that were always 0) get diagonal 1, as in GPTQ; their
// rounding error costs nothing.
func NewHessian(h []float64, n int, damp float64) (*Hessian, error) {
	if len(h) != n*n || n <= 0 {
		return nil, fmt.Errorf("hessian: %d values, expected %d x %d", len(h), n, n)
	}
	var mean float64
	for i := 0; i < n; i++ {
		d := h[i*n+i]
		if !(d >= 0) || math.IsInf(d, 0) {
			return nil, fmt.Errorf("hessian: diagonal [%d] = %v, expected a finite value >= 0", i, d)
		}
		mean += d
	}
	mean /= float64(n)
	if !(mean > 0) {
		mean = 1
	}
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(a, b int) int {
		da, db := h[a*n+a], h[b*n+b]
		switch {
		case da > db:
			return -1
		case da < db:
			return 1
		}
		return 0
	})
	sym := mat.NewSymDense(n, nil)
	for a := 0; a < n; a++ {
		for b := a; b < n; b++ {
			v := 0.5 * (h[perm[a]*n+perm[b]] + h[perm[b]*n+perm[a]])
			if a == b {
				if v == 0 {
					v = 1
				}
				v += damp * mean
			}
			sym.SetSym(a, b, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(sym) {
		return nil, fmt.Errorf("hessian: not positive definite after dampening %g", damp)
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, fmt.Errorf("hessian: inverse: %w", err)
	}
	var ch2 mat.Cholesky
	if !ch2.Factorize(&inv) {
		return nil, fmt.Errorf("hessian: inverse is not positive definite")
	}
	var u mat.TriDense
	ch2.UTo(&u)
	out := &Hessian{N: n, H: h, Perm: perm, U: make([]float64, n*n)}
	for a := 0; a < n; a++ {
		for b := a; b < n; b++ {
			out.U[a*n+b] = u.At(a, b)
		}
	}
	return out, nil
}

// bilinear returns a H b^T.
func (h *Hessian) bilinear(a, b []float64) float64 {
	n := h.N
	var s float64
	for i, ai := range a {
		if ai == 0 {
			continue
		}
		row := h.H[i*n : (i+1)*n]
		var t float64
		for k, bk := range b {
			t += row[k] * bk
		}
		s += ai * t
	}
	return s
}

// refitScale returns the row scale s minimising (w - s q) H (w - s q)^T for
// the row w and its decoded unscaled LUT values q, or 0 when there is no
// positive minimiser.
func (h *Hessian) refitScale(w, q []float64) float64 {
	den := h.bilinear(q, q)
	if !(den > 0) {
		return 0
	}
	s := h.bilinear(q, w) / den
	if !(s > 0) || math.IsInf(s, 0) {
		return 0
	}
	return s
}

// quadForm returns e H e^T.
func (h *Hessian) quadForm(e []float64) float64 { return h.bilinear(e, e) }

// roundRow rounds one row w (original column order) onto the sorted
// decoded LUT dec with error feedback, writing the LUT index of each
// column to idx. buf is scratch of n values.
func (h *Hessian) roundRow(w []float32, dec []float64, idx []uint8, buf []float64) {
	n := h.N
	for k, c := range h.Perm {
		buf[k] = float64(w[c])
	}
	for k := 0; k < n; k++ {
		v := buf[k]
		a := nearest(dec, v)
		idx[h.Perm[k]] = uint8(a)
		e := (v - dec[a]) / h.U[k*n+k]
		if e == 0 {
			continue
		}
		u := h.U[k*n : (k+1)*n]
		for j := k + 1; j < n; j++ {
			buf[j] -= e * u[j]
		}
	}
}

// refitLUT returns the LUT (in the clustering space, values y = w / s)
// that minimises sum_r rowW[r] (w_r - s_r A_r c) H (w_r - s_r A_r c)^T for
// the given assignments (weighted least squares, K unknowns). Entries no
// weight uses keep their old value. rowW nil means 1.
func (h *Hessian) refitLUT(src []float32, nr int, scale []float32, rowW []float64, idx []uint8, old []float64) []float64 {
	n, k := h.N, len(old)
	M := make([]float64, k*k)
	b := make([]float64, k)
	hw := make([]float64, n)
	t := make([]float64, k)
	for r := 0; r < nr; r++ {
		f := 1.0
		if rowW != nil {
			f = rowW[r]
		}
		if f == 0 {
			continue
		}
		s := float64(scale[r])
		row := src[r*n : (r+1)*n]
		ix := idx[r*n : (r+1)*n]
		for j := 0; j < n; j++ {
			hr := h.H[j*n : (j+1)*n]
			clear(t)
			var dot float64
			for jj, v := range hr {
				t[ix[jj]] += v
				dot += v * float64(row[jj])
			}
			hw[j] = dot
			a := int(ix[j])
			for c := 0; c < k; c++ {
				M[a*k+c] += f * s * s * t[c]
			}
			b[a] += f * s * dot
		}
	}
	// Ridge toward the old values, relative to the diagonal scale, keeps
	// unused entries and makes the system well posed.
	var tr float64
	for i := 0; i < k; i++ {
		tr += M[i*k+i]
	}
	ridge := 1e-9 * tr / float64(k)
	if !(ridge > 0) {
		return old
	}
	A := mat.NewDense(k, k, nil)
	rhs := mat.NewVecDense(k, nil)
	for i := 0; i < k; i++ {
		for c := 0; c < k; c++ {
			A.Set(i, c, M[i*k+c])
		}
		A.Set(i, i, M[i*k+i]+ridge)
		rhs.SetVec(i, b[i]+ridge*old[i])
	}
	var x mat.VecDense
	if err := x.SolveVec(A, rhs); err != nil {
		return old
	}
	out := make([]float64, k)
	for i := range out {
		out[i] = x.AtVec(i)
		if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
			return old
		}
	}
	return out
}
