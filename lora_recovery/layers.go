package lorarecovery

import (
	"math"

	"github.com/squeeze-ml/squeeze/runtime/kernels"
)

// Layers of the trainer, one sequence of T tokens at a time. Each layer is
// a _forward/_backward pair with the same argument order (llm.c style):
// forward(out, ..., inp, params, dims); backward(dinp, dparams, dout, inp,
// saved activations, params, dims). Backward functions ACCUMULATE (+=) into
// the input and parameter gradients, so a tensor read by several layers
// (the residual stream, the normed input of q/k/v) sums its gradients.
// Activations are row-major [T, C].

// embeddingForward: out (T,D) = E[tokens[t], :] with E (V,D).
func embeddingForward(out []float32, tokens []int, E []float32, T, D int) {
	for t := 0; t < T; t++ {
		copy(out[t*D:(t+1)*D], E[tokens[t]*D:(tokens[t]+1)*D])
	}
}

// embeddingBackward: dE[tokens[t], :] += dout[t, :]. The trainer keeps the
// embedding frozen and never calls it; it completes the pair and is tested.
func embeddingBackward(dE []float32, dout []float32, tokens []int, T, D int) {
	for t := 0; t < T; t++ {
		axpy(dE[tokens[t]*D:(tokens[t]+1)*D], 1, dout[t*D:(t+1)*D])
	}
}

// rmsnormForward: out (T,D) = x / sqrt(mean(x^2) + eps) * w; rstd (T,) saves
// 1/sqrt(mean(x^2) + eps) for the backward pass. The weight w is frozen.
func rmsnormForward(out, rstd, inp, w []float32, T, D int, eps float32) {
	for t := 0; t < T; t++ {
		x := inp[t*D : (t+1)*D]
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(D)+float64(eps)))
		rstd[t] = r
		o := out[t*D : (t+1)*D]
		for i, v := range x {
			o[i] = v * r * w[i]
		}
	}
}

// rmsnormBackward: dinp += d/dx of rmsnorm given dout (no weight gradient:
// the norm weights are frozen). With g = dout * w and r = rstd:
// dx_j = r g_j - r^3 x_j / D * sum_i g_i x_i.
func rmsnormBackward(dinp, dout, inp, rstd, w []float32, T, D int) {
	for t := 0; t < T; t++ {
		x := inp[t*D : (t+1)*D]
		dy := dout[t*D : (t+1)*D]
		dx := dinp[t*D : (t+1)*D]
		r := rstd[t]
		var gx float64
		for i, v := range x {
			gx += float64(dy[i]*w[i]) * float64(v)
		}
		c := float32(gx) * r * r * r / float32(D)
		for i, v := range x {
			dx[i] += r*dy[i]*w[i] - c*v
		}
	}
}

// lin is one linear weight with its optional LoRA adapter:
// out = W x + scale * B (A x). W (out,in) is frozen; WT (in,out) is its
// transpose, from which the forward product runs (nil: from W); the input
// gradient runs from W.
// A (rank,in) and B (out,rank) are trainable; A == nil means no adapter.
type lin struct {
	W, WT   []float32
	A, B    []float32
	in, out int
	rank    int
	scale   float32
	// tuned marks a base weight whose gradient is wanted (LUT tuning): the
	// backward pass hands its dout and inp to the weight sink.
	tuned bool
}

// needsGrad reports whether backward must reach this linear: it has an
// adapter or a tuned weight.
func (l *lin) needsGrad() bool { return l.A != nil || l.tuned }

// linearForward: out (T,out) = inp (T,in) W^T + scale * (inp A^T) B^T, and
// u (T,rank) = inp A^T saved for the backward pass.
func linearForward(out, u, inp []float32, l *lin, T int) {
	if l.WT != nil {
		matmulT(out, inp, l.WT, T, l.in, l.out, false)
	} else {
		matmulForward(out, inp, l.W, T, l.in, l.out)
	}
	if l.A == nil {
		return
	}
	matmulForward(u, inp, l.A, T, l.in, l.rank)
	// out += u (scale B)^T, with (scale B)^T (rank, out) in scratch
	r := l.rank
	bt := getScratch(r * l.out)
	BT := (*bt)[:r*l.out]
	for j := 0; j < l.out; j++ {
		for k, b := range l.B[j*r : (j+1)*r] {
			BT[k*l.out+j] = l.scale * b
		}
	}
	gemm(out, l.out, u, r, 1, BT, l.out, T, l.out, r, true)
	putScratch(bt)
}

// linearBackward, given dout (T,out):
//
//	dB (out,rank) += scale * dout^T u
//	du (T,rank)    = scale * dout B          (scratch, overwritten)
//	dA (rank,in)  += du^T inp
//	dinp (T,in)   += dout W + du A           (skipped when dinp is nil)
func linearBackward(dinp, dA, dB, du, dout, inp, u []float32, l *lin, T int) {
	r := l.rank
	if l.A != nil {
		du = du[:T*r]
		gemm(du, r, dout, l.out, 1, l.B, r, T, r, l.out, false)
		for i := range du {
			du[i] *= l.scale
		}
		// dB^T (rank, out) = u^T dout in scratch, added scaled and transposed
		bt := getScratch(r * l.out)
		dBT := (*bt)[:r*l.out]
		gemm(dBT, l.out, u, 1, r, dout, l.out, r, l.out, T, false)
		for j := 0; j < l.out; j++ {
			db := dB[j*r : (j+1)*r]
			for k := range db {
				db[k] += l.scale * dBT[k*l.out+j]
			}
		}
		putScratch(bt)
		gemm(dA, l.in, du, 1, r, inp, l.in, r, l.in, T, true)
	}
	if dinp == nil {
		return
	}
	matmulT(dinp, dout, l.W, T, l.out, l.in, true)
	if l.A != nil {
		gemm(dinp, l.in, du, r, 1, l.A, l.in, T, l.in, r, true)
	}
}

// ropeTable holds cos/sin of pos * theta^(-2i/headDim) for pos < T and
// i < headDim/2.
type ropeTable struct {
	cos, sin []float32
	half     int
}

func newRopeTable(T, headDim int, theta float64) *ropeTable {
	half := headDim / 2
	rt := &ropeTable{cos: make([]float32, T*half), sin: make([]float32, T*half), half: half}
	for p := 0; p < T; p++ {
		for i := 0; i < half; i++ {
			freq := math.Pow(theta, -float64(2*i)/float64(headDim))
			a := float64(p) * freq
			rt.cos[p*half+i] = float32(math.Cos(a))
			rt.sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return rt
}

// ropeForward rotates x (T, nHeads*headDim) in place. Llama style
// (neox false): pairs (2i, 2i+1) within each head; NeoX style: pairs
// (i, i+headDim/2). Pair i turns by pos * theta^(-2i/headDim).
func ropeForward(x []float32, rt *ropeTable, T, nHeads, headDim int, neox bool) {
	rope(x, rt, T, nHeads, headDim, neox, 1)
}

// ropeBackward turns the gradient dx back (in place): the rotation is
// orthogonal, so its transpose is the rotation by the opposite angle.
func ropeBackward(dx []float32, rt *ropeTable, T, nHeads, headDim int, neox bool) {
	rope(dx, rt, T, nHeads, headDim, neox, -1)
}

func rope(x []float32, rt *ropeTable, T, nHeads, headDim int, neox bool, sign float32) {
	half := rt.half
	C := nHeads * headDim
	for t := 0; t < T; t++ {
		cs := rt.cos[t*half : (t+1)*half]
		sn := rt.sin[t*half : (t+1)*half]
		for h := 0; h < nHeads; h++ {
			v := x[t*C+h*headDim : t*C+(h+1)*headDim]
			for i := 0; i < half; i++ {
				i0, i1 := 2*i, 2*i+1
				if neox {
					i0, i1 = i, i+half
				}
				c, s := cs[i], sign*sn[i]
				a, b := v[i0], v[i1]
				v[i0] = a*c - b*s
				v[i1] = a*s + b*c
			}
		}
	}
}

// attnDims describes causal grouped-query attention: nHeads query heads,
// nKV key/value heads, query head h reads KV head h / (nHeads/nKV).
type attnDims struct{ nHeads, nKV, headDim int }

// Attention runs per query head as products of small matrices on gemm
// (matmul.go), one block of 4 query rows at a time so the causal mask
// skips the key blocks past the rows' last position: scores S = Q_h K_h^T
// (keys transposed to (nKV*headDim, T) so they are gemm's row-major B),
// out = P V_h with V read in place; backward dP = dO V_h^T, dV += P^T dO,
// dQ += dS K_h, dK += dS^T Q_h.

// causalCols is the number of key columns computed for the query rows
// [i0, i0+4): through the last row's position, rounded up to the 16-wide
// tiles (at most T). Scores past a row's own position are overwritten.
func causalCols(i0, T int) int { return min(T, (i0+4+15)&^15) }

// attentionForward: out (T, nHeads*headDim) from q (T, nHeads*headDim) and
// k, v (T, nKV*headDim); att (nHeads, T, T) saves the softmax
// probabilities (row t holds positions 0..t; the rest is zero).
func attentionForward(out, att, q, k, v []float32, T int, d attnDims) {
	hd := d.headDim
	QC, KC := d.nHeads*hd, d.nKV*hd
	group := d.nHeads / d.nKV
	scale := float32(1 / math.Sqrt(float64(hd)))
	bk := getScratch(KC * T)
	kT := (*bk)[:KC*T]
	transposeInto(kT, k[:T*KC], T, KC)
	for i := range kT {
		kT[i] *= scale // scores = q . (scale k)
	}
	for h := 0; h < d.nHeads; h++ {
		kh := h / group
		kTh := kT[kh*hd*T : (kh+1)*hd*T]
		P := att[h*T*T : (h+1)*T*T]
		for i0 := 0; i0 < T; i0 += 4 {
			m := min(4, T-i0)
			// scores of rows i0..i0+m-1
			gemm(P[i0*T:], T, q[i0*QC+h*hd:], QC, 1, kTh, T, m, causalCols(i0, T), hd, false)
			for t := i0; t < i0+m; t++ {
				full := P[t*T : (t+1)*T]
				row := full[:t+1]
				maxv := row[0]
				for _, x := range row[1:] {
					if x > maxv { // (the builtin max's NaN handling costs a branch chain)
						maxv = x
					}
				}
				inv := 1 / expRow(row, row, 1, maxv)
				for s := range row {
					row[s] *= inv
				}
				clear(full[t+1:])
			}
			// out rows = P rows (zero past each position) @ V_h
			gemm(out[i0*QC+h*hd:], QC, P[i0*T:], T, 1, v[kh*hd:], KC, m, hd, i0+m, false)
		}
	}
	putScratch(bk)
}

// attentionBackward: dq, dk, dv += gradients given dout.
func attentionBackward(dq, dk, dv, dout, att, q, k, v []float32, T int, d attnDims) {
	hd := d.headDim
	QC, KC := d.nHeads*hd, d.nKV*hd
	group := d.nHeads / d.nKV
	scale := float32(1 / math.Sqrt(float64(hd)))
	bv, bd := getScratch(KC*T), getScratch(T*T)
	vT, dS := (*bv)[:KC*T], (*bd)[:T*T]
	transposeInto(vT, v[:T*KC], T, KC)
	for h := 0; h < d.nHeads; h++ {
		kh := h / group
		vTh := vT[kh*hd*T : (kh+1)*hd*T]
		P := att[h*T*T : (h+1)*T*T]
		for i0 := 0; i0 < T; i0 += 4 {
			m := min(4, T-i0)
			// dP rows = dO rows @ V_h^T
			gemm(dS[i0*T:], T, dout[i0*QC+h*hd:], QC, 1, vTh, T, m, causalCols(i0, T), hd, false)
			// dS = P (dP - sum P dP) scale, zero past each position
			for t := i0; t < i0+m; t++ {
				full := dS[t*T : (t+1)*T]
				ds := full[:t+1]
				row := P[t*T : t*T+t+1]
				pdp := kernels.Dot(row, ds)
				for s, p := range row {
					ds[s] = p * (ds[s] - pdp) * scale
				}
				clear(full[t+1:])
			}
			// dQ rows += dS rows @ K_h
			gemm(dq[i0*QC+h*hd:], QC, dS[i0*T:], T, 1, k[kh*hd:], KC, m, hd, i0+m, true)
		}
		// Key rows s0..s0+3 are reached from query rows t >= s0.
		for s0 := 0; s0 < T; s0 += 4 {
			m := min(4, T-s0)
			// dK rows += dS^T rows @ Q_h; dV rows += P^T rows @ dO_h
			gemm(dk[s0*KC+kh*hd:], KC, dS[s0*T+s0:], 1, T, q[s0*QC+h*hd:], QC, m, hd, T-s0, true)
			gemm(dv[s0*KC+kh*hd:], KC, P[s0*T+s0:], 1, T, dout[s0*QC+h*hd:], QC, m, hd, T-s0, true)
		}
	}
	putScratch(bv)
	putScratch(bd)
}

// swigluForward: out (T,F) = silu(gate) * up.
func swigluForward(out, gate, up []float32, n int) {
	b := getScratch(n)
	e := (*b)[:n]
	expRow(e, gate[:n], -1, 0)
	for i, g := range gate[:n] {
		out[i] = g / (1 + e[i]) * up[i]
	}
	putScratch(b)
}

// swigluBackward: dgate, dup += gradients given dout.
func swigluBackward(dgate, dup, dout, gate, up []float32, n int) {
	b := getScratch(n)
	e := (*b)[:n]
	expRow(e, gate[:n], -1, 0)
	for i, g := range gate[:n] {
		sg := 1 / (1 + e[i])
		silu := g * sg
		dgate[i] += dout[i] * up[i] * sg * (1 + g*(1-sg))
		dup[i] += dout[i] * silu
	}
	putScratch(b)
}

// residualForward: out = a + b.
func residualForward(out, a, b []float32, n int) {
	for i := 0; i < n; i++ {
		out[i] = a[i] + b[i]
	}
}

// residualBackward: da += dout, db += dout.
func residualBackward(da, db, dout []float32, n int) {
	axpy(da[:n], 1, dout[:n])
	axpy(db[:n], 1, dout[:n])
}

// classifierForward: logits (T,V) = inp (T,D) Wc^T with Wc (V,D) frozen
// (the token embedding when tied); WcT (D,V) is its transpose (nil: the
// product runs from Wc).
func classifierForward(logits, inp, Wc, WcT []float32, T, D, V int) {
	if WcT != nil {
		matmulT(logits, inp, WcT, T, D, V, false)
		return
	}
	matmulForward(logits, inp, Wc, T, D, V)
}

// classifierBackward: dinp (T,D) += dlogits (T,V) Wc.
func classifierBackward(dinp, dlogits, inp, Wc []float32, T, D, V int) {
	matmulT(dinp, dlogits, Wc, T, V, D, true)
}

// distillForward computes the loss of one sequence from student logits
// (T,V): for each position, KL(p || q) between the teacher distribution p
// (given as log-probabilities tlogp, T x V) and the student q =
// softmax(logits), plus ceWeight * -log q[target] where targets[t] >= 0.
// It overwrites logits with the student log-probabilities and returns the
// summed KL and the summed cross-entropy (in float64).
func distillForward(logits, tlogp []float32, targets []int, T, V int) (kl, ce float64) {
	pb := getScratch(V)
	p := (*pb)[:V]
	for t := 0; t < T; t++ {
		z := logits[t*V : (t+1)*V]
		logSoftmax(z)
		if tlogp != nil {
			lp := tlogp[t*V : (t+1)*V]
			expRow(p, lp, 1, 0)
			var s float64
			for i, a := range lp {
				if a > -80 {
					s += float64(p[i]) * float64(a-z[i])
				}
			}
			kl += s
		}
		if targets != nil && targets[t] >= 0 {
			ce -= float64(z[targets[t]])
		}
	}
	putScratch(pb)
	return kl, ce
}

// distillBackward turns the student log-probabilities (as left by
// distillForward) into dlogits in place:
// dlogits = klScale (q - p) + ceScale (q - onehot(target)).
func distillBackward(dlogits, tlogp []float32, targets []int, T, V int, klScale, ceScale float32) {
	pb := getScratch(V)
	p := (*pb)[:V]
	for t := 0; t < T; t++ {
		z := dlogits[t*V : (t+1)*V]
		qs := klScale
		if targets != nil && targets[t] >= 0 {
			qs += ceScale
		}
		expRow(z, z, 1, 0)
		for i := range z {
			z[i] *= qs
		}
		if tlogp != nil && klScale != 0 {
			expRow(p, tlogp[t*V:(t+1)*V], 1, 0)
			for i, a := range p {
				z[i] -= klScale * a
			}
		}
		if targets != nil && targets[t] >= 0 && ceScale != 0 {
			z[targets[t]] -= ceScale
		}
	}
	putScratch(pb)
}

// logSoftmax replaces z with log(softmax(z)).
func logSoftmax(z []float32) {
	maxv := z[0]
	for _, v := range z {
		if v > maxv {
			maxv = v
		}
	}
	pb := getScratch(len(z))
	s := expRow((*pb)[:len(z)], z, 1, maxv)
	putScratch(pb)
	lse := maxv + float32(math.Log(float64(s)))
	for i := range z {
		z[i] -= lse
	}
}

// axpy: y += a x.
func axpy(y []float32, a float32, x []float32) { kernels.Axpy(a, x[:len(y)], y) }
