package lorarecovery

import "math"

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
// transpose, kept so the input gradient runs as contiguous dot products.
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
	matmulForward(out, inp, l.W, T, l.in, l.out)
	if l.A == nil {
		return
	}
	matmulForward(u, inp, l.A, T, l.in, l.rank)
	r := l.rank
	for t := 0; t < T; t++ {
		ut := u[t*r : (t+1)*r]
		o := out[t*l.out : (t+1)*l.out]
		for j := range o {
			b := l.B[j*r : (j+1)*r]
			var s float32
			for k, v := range ut {
				s += b[k] * v
			}
			o[j] += l.scale * s
		}
	}
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
		for t := 0; t < T; t++ {
			ut := u[t*r : (t+1)*r]
			dut := du[t*r : (t+1)*r]
			for k := range dut {
				dut[k] = 0
			}
			do := dout[t*l.out : (t+1)*l.out]
			for j, g := range do {
				if g == 0 {
					continue
				}
				gs := g * l.scale
				axpy(dB[j*r:(j+1)*r], gs, ut)
				axpy(dut, gs, l.B[j*r:(j+1)*r])
			}
			x := inp[t*l.in : (t+1)*l.in]
			for k, g := range dut {
				axpy(dA[k*l.in:(k+1)*l.in], g, x)
			}
		}
	}
	if dinp == nil {
		return
	}
	matmulForwardAcc(dinp, dout, l.WT, T, l.out, l.in)
	if l.A != nil {
		for t := 0; t < T; t++ {
			dx := dinp[t*l.in : (t+1)*l.in]
			for k, g := range du[t*r : (t+1)*r] {
				axpy(dx, g, l.A[k*l.in:(k+1)*l.in])
			}
		}
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

// attentionForward: out (T, nHeads*headDim) from q (T, nHeads*headDim) and
// k, v (T, nKV*headDim); att (nHeads, T, T) saves the softmax
// probabilities (row t holds positions 0..t; the rest is zero).
func attentionForward(out, att, q, k, v []float32, T int, d attnDims) {
	hd := d.headDim
	QC, KC := d.nHeads*hd, d.nKV*hd
	group := d.nHeads / d.nKV
	scale := float32(1 / math.Sqrt(float64(hd)))
	for h := 0; h < d.nHeads; h++ {
		kh := h / group
		for t := 0; t < T; t++ {
			qt := q[t*QC+h*hd : t*QC+(h+1)*hd]
			row := att[(h*T+t)*T : (h*T+t+1)*T]
			maxv := float32(math.Inf(-1))
			for s := 0; s <= t; s++ {
				ks := k[s*KC+kh*hd : s*KC+kh*hd+len(qt)]
				var dot float32
				for i, a := range qt {
					dot += a * ks[i]
				}
				dot *= scale
				row[s] = dot
				if dot > maxv {
					maxv = dot
				}
			}
			var sum float32
			for s := 0; s <= t; s++ {
				e := expf(row[s] - maxv)
				row[s] = e
				sum += e
			}
			inv := 1 / sum
			for s := 0; s <= t; s++ {
				row[s] *= inv
			}
			for s := t + 1; s < T; s++ {
				row[s] = 0
			}
			o := out[t*QC+h*hd : t*QC+(h+1)*hd]
			for i := range o {
				o[i] = 0
			}
			for s := 0; s <= t; s++ {
				axpy(o, row[s], v[s*KC+kh*hd:s*KC+(kh+1)*hd])
			}
		}
	}
}

// attentionBackward: dq, dk, dv += gradients given dout. scratch has room
// for T floats.
func attentionBackward(dq, dk, dv, dout, att, q, k, v []float32, T int, d attnDims, scratch []float32) {
	hd := d.headDim
	QC, KC := d.nHeads*hd, d.nKV*hd
	group := d.nHeads / d.nKV
	scale := float32(1 / math.Sqrt(float64(hd)))
	dp := scratch[:T]
	for h := 0; h < d.nHeads; h++ {
		kh := h / group
		for t := 0; t < T; t++ {
			row := att[(h*T+t)*T : (h*T+t+1)*T]
			dot := dout[t*QC+h*hd : t*QC+(h+1)*hd]
			// dP[s] = dout . v[s];  dv[s] += P[s] dout
			var pdp float32
			for s := 0; s <= t; s++ {
				vs := v[s*KC+kh*hd : s*KC+kh*hd+len(dot)]
				var x float32
				for i, a := range dot {
					x += a * vs[i]
				}
				dp[s] = x
				pdp += row[s] * x
				axpy(dv[s*KC+kh*hd:s*KC+(kh+1)*hd], row[s], dot)
			}
			// dS[s] = P[s] (dP[s] - sum P dP), scores = scale * q.k
			qt := q[t*QC+h*hd : t*QC+(h+1)*hd]
			dqt := dq[t*QC+h*hd : t*QC+(h+1)*hd]
			for s := 0; s <= t; s++ {
				ds := row[s] * (dp[s] - pdp) * scale
				if ds == 0 {
					continue
				}
				axpy(dqt, ds, k[s*KC+kh*hd:s*KC+(kh+1)*hd])
				axpy(dk[s*KC+kh*hd:s*KC+(kh+1)*hd], ds, qt)
			}
		}
	}
}

// swigluForward: out (T,F) = silu(gate) * up.
func swigluForward(out, gate, up []float32, n int) {
	for i := 0; i < n; i++ {
		g := gate[i]
		out[i] = g / (1 + expf(-g)) * up[i]
	}
}

// swigluBackward: dgate, dup += gradients given dout.
func swigluBackward(dgate, dup, dout, gate, up []float32, n int) {
	for i := 0; i < n; i++ {
		g := gate[i]
		sg := 1 / (1 + expf(-g))
		silu := g * sg
		dgate[i] += dout[i] * up[i] * sg * (1 + g*(1-sg))
		dup[i] += dout[i] * silu
	}
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
// (the token embedding when tied).
func classifierForward(logits, inp, Wc []float32, T, D, V int) {
	matmulForward(logits, inp, Wc, T, D, V)
}

// classifierBackward: dinp (T,D) += dlogits (T,V) Wc, via WcT (D,V).
func classifierBackward(dinp, dlogits, inp, WcT []float32, T, D, V int) {
	matmulForwardAcc(dinp, dlogits, WcT, T, V, D)
}

// distillForward computes the loss of one sequence from student logits
// (T,V): for each position, KL(p || q) between the teacher distribution p
// (given as log-probabilities tlogp, T x V) and the student q =
// softmax(logits), plus ceWeight * -log q[target] where targets[t] >= 0.
// It overwrites logits with the student log-probabilities and returns the
// summed KL and the summed cross-entropy (in float64).
func distillForward(logits, tlogp []float32, targets []int, T, V int) (kl, ce float64) {
	for t := 0; t < T; t++ {
		z := logits[t*V : (t+1)*V]
		logSoftmax(z)
		if tlogp != nil {
			lp := tlogp[t*V : (t+1)*V]
			var s float64
			for i, a := range lp {
				if a > -80 {
					s += math.Exp(float64(a)) * float64(a-z[i])
				}
			}
			kl += s
		}
		if targets != nil && targets[t] >= 0 {
			ce -= float64(z[targets[t]])
		}
	}
	return kl, ce
}

// distillBackward turns the student log-probabilities (as left by
// distillForward) into dlogits in place:
// dlogits = klScale (q - p) + ceScale (q - onehot(target)).
func distillBackward(dlogits, tlogp []float32, targets []int, T, V int, klScale, ceScale float32) {
	for t := 0; t < T; t++ {
		z := dlogits[t*V : (t+1)*V]
		qs := klScale
		if targets != nil && targets[t] >= 0 {
			qs += ceScale
		}
		for i, a := range z {
			z[i] = float32(math.Exp(float64(a))) * qs
		}
		if tlogp != nil && klScale != 0 {
			lp := tlogp[t*V : (t+1)*V]
			for i, a := range lp {
				z[i] -= klScale * float32(math.Exp(float64(a)))
			}
		}
		if targets != nil && targets[t] >= 0 && ceScale != 0 {
			z[targets[t]] -= ceScale
		}
	}
}

// logSoftmax replaces z with log(softmax(z)).
func logSoftmax(z []float32) {
	maxv := z[0]
	for _, v := range z {
		if v > maxv {
			maxv = v
		}
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v - maxv))
	}
	lse := maxv + float32(math.Log(s))
	for i := range z {
		z[i] -= lse
	}
}

// axpy: y += a x.
func axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}
