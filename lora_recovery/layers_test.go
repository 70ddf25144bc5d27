package lorarecovery

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Finite-difference gradient checks: every layer's input gradient and
// every trainable parameter's gradient against central differences of the
// float32 forward, with the scalar loss L = sum(w * y) accumulated in
// float64 (w random), so dL/dy = w is the dout the backward pass gets.

func randVec(rng *rand.Rand, n int, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * sd)
	}
	return v
}

func wsum(w, y []float32) float64 {
	var s float64
	for i := range w {
		s += float64(w[i]) * float64(y[i])
	}
	return s
}

// checkGrad perturbs every element of x by +-eps and compares the central
// difference of loss() with ana.
func checkGrad(t *testing.T, name string, x, ana []float32, loss func() float64, eps float32) {
	t.Helper()
	if len(x) != len(ana) {
		t.Fatalf("%s: %d values, %d gradients", name, len(x), len(ana))
	}
	var worst float64
	for i := range x {
		old := x[i]
		x[i] = old + eps
		lp := loss()
		x[i] = old - eps
		lm := loss()
		x[i] = old
		num := (lp - lm) / (2 * float64(eps))
		a := float64(ana[i])
		err := math.Abs(num - a)
		tol := 1e-2*math.Max(math.Abs(num), math.Abs(a)) + 2e-3
		if err > tol {
			t.Errorf("%s[%d]: analytic %.6g, numeric %.6g", name, i, a, num)
			if t.Failed() && i > 20 {
				return
			}
		}
		worst = math.Max(worst, err)
	}
	t.Logf("%s: %d entries, max |analytic - numeric| = %.2g", name, len(x), worst)
}

func TestEmbeddingGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	V, D, T := 7, 5, 6
	E := randVec(rng, V*D, 1)
	tokens := []int{3, 0, 3, 6, 1, 3}
	w := randVec(rng, T*D, 1)
	out := make([]float32, T*D)
	loss := func() float64 { embeddingForward(out, tokens, E, T, D); return wsum(w, out) }
	dE := make([]float32, V*D)
	embeddingBackward(dE, w, tokens, T, D)
	checkGrad(t, "dE", E, dE, loss, 1e-2)
}

func TestRMSNormGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	T, D := 4, 9
	x := randVec(rng, T*D, 1)
	wt := randVec(rng, D, 1)
	w := randVec(rng, T*D, 1)
	out, rstd := make([]float32, T*D), make([]float32, T)
	loss := func() float64 { rmsnormForward(out, rstd, x, wt, T, D, 1e-5); return wsum(w, out) }
	loss()
	// forward against the formula in float64
	for tt := 0; tt < T; tt++ {
		var ss float64
		for i := 0; i < D; i++ {
			ss += float64(x[tt*D+i]) * float64(x[tt*D+i])
		}
		r := 1 / math.Sqrt(ss/float64(D)+1e-5)
		for i := 0; i < D; i++ {
			want := float64(x[tt*D+i]) * r * float64(wt[i])
			if math.Abs(want-float64(out[tt*D+i])) > 1e-5 {
				t.Fatalf("rmsnorm[%d,%d] = %v, want %v", tt, i, out[tt*D+i], want)
			}
		}
	}
	dx := make([]float32, T*D)
	rmsnormBackward(dx, w, x, rstd, wt, T, D)
	checkGrad(t, "dx", x, dx, loss, 1e-2)
}

func newTestLin(rng *rand.Rand, in, out, rank int, adapter bool) *lin {
	l := &lin{W: randVec(rng, out*in, 0.5), in: in, out: out}
	l.WT = transpose(l.W, out, in)
	if adapter {
		l.A, l.B, l.rank, l.scale = randVec(rng, rank*in, 0.5), randVec(rng, out*rank, 0.5), rank, 0.7
	}
	return l
}

func TestLinearLoRAGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 4))
	// T = 6 exercises both the 4-token block and the remainder of matmul.
	// 8 x 20 -> 24, rank 4 runs the vector tiles of gemm (4 rows, 16 + 8
	// columns) beside the loops.
	for _, c := range []struct {
		adapter          bool
		T, in, out, rank int
	}{{true, 6, 7, 5, 3}, {false, 6, 7, 5, 3}, {true, 8, 20, 24, 4}} {
		adapter, T, in, out, rank := c.adapter, c.T, c.in, c.out, c.rank
		l := newTestLin(rng, in, out, rank, adapter)
		x := randVec(rng, T*in, 1)
		w := randVec(rng, T*out, 1)
		y, u := make([]float32, T*out), make([]float32, T*rank)
		loss := func() float64 { linearForward(y, u, x, l, T); return wsum(w, y) }
		loss()
		// forward against a float64 reference
		for tt := 0; tt < T; tt++ {
			for o := 0; o < out; o++ {
				var s float64
				for i := 0; i < in; i++ {
					s += float64(l.W[o*in+i]) * float64(x[tt*in+i])
				}
				if adapter {
					for k := 0; k < rank; k++ {
						var ax float64
						for i := 0; i < in; i++ {
							ax += float64(l.A[k*in+i]) * float64(x[tt*in+i])
						}
						s += float64(l.scale) * float64(l.B[o*rank+k]) * ax
					}
				}
				if math.Abs(s-float64(y[tt*out+o])) > 1e-4 {
					t.Fatalf("linear[%d,%d] = %v, want %v", tt, o, y[tt*out+o], s)
				}
			}
		}
		dx, du := make([]float32, T*in), make([]float32, T*rank)
		var dA, dB []float32
		if adapter {
			dA, dB = make([]float32, rank*in), make([]float32, out*rank)
		}
		linearBackward(dx, dA, dB, du, w, x, u, l, T)
		checkGrad(t, "dx", x, dx, loss, 1e-2)
		if adapter {
			checkGrad(t, "dA", l.A, dA, loss, 1e-2)
			checkGrad(t, "dB", l.B, dB, loss, 1e-2)
		}
	}
}

func TestRoPE(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 5))
	T, H, hd := 5, 3, 8
	theta := 10000.0
	rt := newRopeTable(T, hd, theta)
	for _, neox := range []bool{false, true} {
		x := randVec(rng, T*H*hd, 1)
		orig := append([]float32(nil), x...)
		y := append([]float32(nil), x...)
		ropeForward(y, rt, T, H, hd, neox)
		// explicit formula: pair i of head h at position p turns by p*theta^(-2i/hd)
		for p := 0; p < T; p++ {
			for h := 0; h < H; h++ {
				for i := 0; i < hd/2; i++ {
					i0, i1 := 2*i, 2*i+1
					if neox {
						i0, i1 = i, i+hd/2
					}
					ang := float64(p) * math.Pow(theta, -2*float64(i)/float64(hd))
					a, b := float64(x[p*H*hd+h*hd+i0]), float64(x[p*H*hd+h*hd+i1])
					w0 := a*math.Cos(ang) - b*math.Sin(ang)
					w1 := a*math.Sin(ang) + b*math.Cos(ang)
					if math.Abs(w0-float64(y[p*H*hd+h*hd+i0])) > 1e-5 || math.Abs(w1-float64(y[p*H*hd+h*hd+i1])) > 1e-5 {
						t.Fatalf("neox=%v rope p=%d h=%d i=%d: got (%v,%v) want (%v,%v)", neox, p, h, i,
							y[p*H*hd+h*hd+i0], y[p*H*hd+h*hd+i1], w0, w1)
					}
				}
			}
		}
		w := randVec(rng, T*H*hd, 1)
		buf := make([]float32, len(x))
		loss := func() float64 { copy(buf, x); ropeForward(buf, rt, T, H, hd, neox); return wsum(w, buf) }
		dx := append([]float32(nil), w...)
		ropeBackward(dx, rt, T, H, hd, neox)
		checkGrad(t, "rope dx", x, dx, loss, 1e-2)
		for i := range x {
			if x[i] != orig[i] {
				t.Fatal("checkGrad did not restore x")
			}
		}
	}
}

func TestAttentionGQA(t *testing.T) {
	testAttentionGQA(t, 5, attnDims{nHeads: 4, nKV: 2, headDim: 3})
}

// TestAttentionGQALong: rows past 8 positions and a head dimension of 8 run
// the vector kernels (and their tails) of the attention inner loops.
func TestAttentionGQALong(t *testing.T) {
	testAttentionGQA(t, 19, attnDims{nHeads: 4, nKV: 2, headDim: 8})
}

func testAttentionGQA(t *testing.T, T int, d attnDims) {
	rng := rand.New(rand.NewPCG(1, 6))
	QC, KC := d.nHeads*d.headDim, d.nKV*d.headDim
	q, k, v := randVec(rng, T*QC, 1), randVec(rng, T*KC, 1), randVec(rng, T*KC, 1)
	out, att := make([]float32, T*QC), make([]float32, d.nHeads*T*T)
	w := randVec(rng, T*QC, 1)
	loss := func() float64 { attentionForward(out, att, q, k, v, T, d); return wsum(w, out) }
	loss()
	// brute-force reference in float64: query head h uses kv head h/2
	for h := 0; h < d.nHeads; h++ {
		kh := h / (d.nHeads / d.nKV)
		for tt := 0; tt < T; tt++ {
			sc := make([]float64, tt+1)
			var mx float64 = math.Inf(-1)
			for s := 0; s <= tt; s++ {
				for i := 0; i < d.headDim; i++ {
					sc[s] += float64(q[tt*QC+h*d.headDim+i]) * float64(k[s*KC+kh*d.headDim+i])
				}
				sc[s] /= math.Sqrt(float64(d.headDim))
				mx = math.Max(mx, sc[s])
			}
			var z float64
			for s := range sc {
				sc[s] = math.Exp(sc[s] - mx)
				z += sc[s]
			}
			for i := 0; i < d.headDim; i++ {
				var o float64
				for s := range sc {
					o += sc[s] / z * float64(v[s*KC+kh*d.headDim+i])
				}
				if got := out[tt*QC+h*d.headDim+i]; math.Abs(o-float64(got)) > 2e-5 {
					t.Fatalf("attention h=%d t=%d i=%d: got %v want %v", h, tt, i, got, o)
				}
			}
		}
	}
	dq, dk, dv := make([]float32, T*QC), make([]float32, T*KC), make([]float32, T*KC)
	attentionBackward(dq, dk, dv, w, att, q, k, v, T, d)
	checkGrad(t, "dq", q, dq, loss, 1e-2)
	checkGrad(t, "dk", k, dk, loss, 1e-2)
	checkGrad(t, "dv", v, dv, loss, 1e-2)
}

func TestSwiGLUGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 7))
	n := 20
	g, u, w := randVec(rng, n, 2), randVec(rng, n, 1), randVec(rng, n, 1)
	out := make([]float32, n)
	loss := func() float64 { swigluForward(out, g, u, n); return wsum(w, out) }
	dg, du := make([]float32, n), make([]float32, n)
	swigluBackward(dg, du, w, g, u, n)
	checkGrad(t, "dgate", g, dg, loss, 1e-2)
	checkGrad(t, "dup", u, du, loss, 1e-2)
}

func TestResidualGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 8))
	n := 10
	a, b, w := randVec(rng, n, 1), randVec(rng, n, 1), randVec(rng, n, 1)
	out := make([]float32, n)
	loss := func() float64 { residualForward(out, a, b, n); return wsum(w, out) }
	da, db := make([]float32, n), make([]float32, n)
	residualBackward(da, db, w, n)
	checkGrad(t, "da", a, da, loss, 1e-2)
	checkGrad(t, "db", b, db, loss, 1e-2)
}

func TestClassifierGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 9))
	T, D, V := 5, 6, 11
	x, Wc, w := randVec(rng, T*D, 1), randVec(rng, V*D, 1), randVec(rng, T*V, 1)
	out := make([]float32, T*V)
	for _, WcT := range [][]float32{nil, transpose(Wc, V, D)} {
		loss := func() float64 { classifierForward(out, x, Wc, WcT, T, D, V); return wsum(w, out) }
		dx := make([]float32, T*D)
		classifierBackward(dx, w, x, Wc, T, D, V)
		checkGrad(t, "dx", x, dx, loss, 1e-2)
	}
}

func TestDistillLossGrad(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 10))
	T, V := 4, 9
	z := randVec(rng, T*V, 2)
	tl := randVec(rng, T*V, 2)
	for tt := 0; tt < T; tt++ {
		logSoftmax(tl[tt*V : (tt+1)*V])
	}
	targets := []int{3, -1, 0, 8}
	const klS, ceS = 0.7, 0.3
	buf := make([]float32, T*V)
	loss := func() float64 {
		copy(buf, z)
		kl, ce := distillForward(buf, tl, targets, T, V)
		return klS*kl + ceS*ce
	}
	// KL of identical distributions is zero, and positive otherwise.
	same := append([]float32(nil), tl...)
	if kl, _ := distillForward(same, tl, nil, T, V); math.Abs(kl) > 1e-5 {
		t.Fatalf("KL(p||p) = %v", kl)
	}
	loss()
	d := append([]float32(nil), buf...)
	distillBackward(d, tl, targets, T, V, klS, ceS)
	checkGrad(t, "dlogits", z, d, loss, 1e-2)
}

func TestMatmulBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 11))
	// odd sizes, more rows than one block, T with a remainder
	T, I, O := 7, 300, 70
	x, W := randVec(rng, T*I, 1), randVec(rng, O*I, 1)
	out := randVec(rng, T*O, 1)
	prev := append([]float32(nil), out...)
	matmulForwardAcc(out, x, W, T, I, O)
	for tt := 0; tt < T; tt++ {
		for o := 0; o < O; o++ {
			s := float64(prev[tt*O+o])
			for i := 0; i < I; i++ {
				s += float64(x[tt*I+i]) * float64(W[o*I+i])
			}
			if math.Abs(s-float64(out[tt*O+o])) > 1e-3 {
				t.Fatalf("matmul[%d,%d] = %v, want %v", tt, o, out[tt*O+o], s)
			}
		}
	}
	WT := transpose(W, O, I)
	if WT[5*O+3] != W[3*I+5] {
		t.Fatal("transpose")
	}
}

func TestExpf(t *testing.T) {
	var worst float64
	for x := -87.0; x <= 88; x += 0.001 {
		got := float64(expf(float32(x)))
		want := math.Exp(float64(float32(x)))
		rel := math.Abs(got-want) / want
		worst = math.Max(worst, rel)
	}
	if worst > 5e-7 {
		t.Fatalf("expf max relative error %g", worst)
	}
	t.Logf("expf max relative error %.2g", worst)
	if expf(-100) != 0 || !math.IsInf(float64(expf(100)), 1) {
		t.Fatal("expf limits")
	}
}

// TestExpRowMatchesRuntime: expRow is runtime.Expf's arithmetic in a loop,
// bit for bit, over the whole range (limits included), with the sign and
// offset applied first.
func TestExpRowMatchesRuntime(t *testing.T) {
	var src []float32
	for x := -100.0; x <= 100; x += 0.0137 {
		src = append(src, float32(x))
	}
	src = append(src, 0, float32(math.Copysign(0, -1)), -87, 88, 87.99, -86.99)
	dst := make([]float32, len(src))
	for _, c := range []struct{ sign, sub float32 }{{1, 0}, {-1, 0}, {1, 3.25}} {
		sum := expRow(dst, src, c.sign, c.sub)
		var want float32
		for i, v := range src {
			e := expf(c.sign*v - c.sub)
			want += e
			if math.Float32bits(dst[i]) != math.Float32bits(e) {
				t.Fatalf("expRow(%v, sign %v, sub %v) = %v, runtime.Expf %v", v, c.sign, c.sub, dst[i], e)
			}
		}
		if math.Float32bits(sum) != math.Float32bits(want) {
			t.Fatalf("expRow sum %v, want %v", sum, want)
		}
	}
}

// TestGemm: the tiled kernel and its edges (rows past a multiple of 4,
// columns past a multiple of 16), overwriting and accumulating, in the
// three layouts the trainer uses, against a float64 reference.
func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 12))
	for _, sh := range [][3]int{{9, 37, 13}, {128, 64, 172}, {3, 5, 7}, {16, 32, 8}, {12, 8, 29}} {
		T, I, O := sh[0], sh[1], sh[2]
		x, WT := randVec(rng, T*I, 1), randVec(rng, I*O, 1)
		for _, acc := range []bool{false, true} {
			out := randVec(rng, T*O, 1)
			prev := append([]float32(nil), out...)
			matmulT(out, x, WT, T, I, O, acc)
			for tt := 0; tt < T; tt++ {
				for o := 0; o < O; o++ {
					var s float64
					if acc {
						s = float64(prev[tt*O+o])
					}
					for i := 0; i < I; i++ {
						s += float64(x[tt*I+i]) * float64(WT[i*O+o])
					}
					if math.Abs(s-float64(out[tt*O+o])) > 1e-4*math.Sqrt(float64(I)) {
						t.Fatalf("%v acc %v: out[%d,%d] = %v, want %v", sh, acc, tt, o, out[tt*O+o], s)
					}
				}
			}
		}
		// C (I x O) = x^T y with y (T x O): the weight-gradient layout.
		y := randVec(rng, T*O, 1)
		C := make([]float32, I*O)
		gemmTN(C, x, y, T, I, O)
		for i := 0; i < I; i++ {
			for o := 0; o < O; o++ {
				var s float64
				for tt := 0; tt < T; tt++ {
					s += float64(x[tt*I+i]) * float64(y[tt*O+o])
				}
				if math.Abs(s-float64(C[i*O+o])) > 1e-4*math.Sqrt(float64(T)) {
					t.Fatalf("%v: gemmTN[%d,%d] = %v, want %v", sh, i, o, C[i*O+o], s)
				}
			}
		}
	}
}
