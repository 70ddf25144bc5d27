package palettize

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// bruteCost enumerates every partition of the sorted distinct values into
// min(k, m) contiguous clusters and returns the least weighted SSE, computed
// directly (two passes, no prefix sums).
func bruteCost(x, w []float64, k int) float64 {
	ew := prep(x, w)
	vals, wts, _ := distinct(x, ew)
	m := len(vals)
	if k >= m {
		return 0
	}
	best := math.Inf(1)
	// choose k-1 cut positions among 1..m-1 via bitmask
	for mask := 0; mask < 1<<(m-1); mask++ {
		if popcount(mask) != k-1 {
			continue
		}
		var total float64
		s := 0
		for e := 1; e <= m; e++ {
			if e == m || mask&(1<<(e-1)) != 0 {
				var sw, sx float64
				for i := s; i < e; i++ {
					sw += wts[i]
					sx += wts[i] * vals[i]
				}
				c := sx / sw
				for i := s; i < e; i++ {
					total += wts[i] * (vals[i] - c) * (vals[i] - c)
				}
				s = e
			}
		}
		best = min(best, total)
	}
	return best
}

func popcount(v int) int {
	n := 0
	for ; v != 0; v &= v - 1 {
		n++
	}
	return n
}

// directCost recomputes sum w (x - c[assign])^2 from scratch.
func directCost(x, w, c []float64, assign []int) float64 {
	ew := prep(x, w)
	var s float64
	for i := range x {
		d := x[i] - c[assign[i]]
		s += ew[i] * d * d
	}
	return s
}

func TestKMeansExactMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 2000; trial++ {
		n := rng.IntN(11)
		k := 1 + rng.IntN(4)
		x := make([]float64, n)
		w := make([]float64, n)
		for i := range x {
			// few distinct values sometimes, to exercise duplicate merging
			if trial%3 == 0 {
				x[i] = float64(rng.IntN(4))
			} else {
				x[i] = rng.NormFloat64()
			}
			w[i] = rng.Float64()
			if trial%5 == 0 && rng.IntN(3) == 0 {
				w[i] = 0
			}
		}
		c, a, cost := KMeansExact(x, w, k)
		if n == 0 {
			if c != nil || len(a) != 0 || cost != 0 {
				t.Fatalf("n=0: got %v %v %v", c, a, cost)
			}
			continue
		}
		want := bruteCost(x, w, k)
		if math.Abs(cost-want) > 1e-9 {
			t.Fatalf("trial %d n=%d k=%d: exact cost %.12g, brute force %.12g (x=%v w=%v)", trial, n, k, cost, want, x, w)
		}
		if d := directCost(x, w, c, a); math.Abs(d-cost) > 1e-9 {
			t.Fatalf("trial %d: reported cost %.12g, recomputed %.12g", trial, cost, d)
		}
		if len(c) > k || !sort.Float64sAreSorted(c) {
			t.Fatalf("trial %d: centers %v not sorted or more than k=%d", trial, c, k)
		}
		for i := 1; i < len(c); i++ {
			if c[i] == c[i-1] {
				t.Fatalf("trial %d: duplicate centers %v", trial, c)
			}
		}
	}
}

func TestKMeansExactKnown(t *testing.T) {
	// Two tight pairs: the optimum is their means.
	c, a, cost := KMeansExact([]float64{0, 1, 10, 11}, nil, 2)
	if len(c) != 2 || c[0] != 0.5 || c[1] != 10.5 || math.Abs(cost-1) > 1e-12 {
		t.Fatalf("got centers %v cost %v", c, cost)
	}
	if a[0] != 0 || a[1] != 0 || a[2] != 1 || a[3] != 1 {
		t.Fatalf("assign %v", a)
	}
	// Weights pull the center: 0 (w=3), 4 (w=1) -> 1, cost 3*1+1*9=12.
	c, _, cost = KMeansExact([]float64{0, 4}, []float64{3, 1}, 1)
	if c[0] != 1 || math.Abs(cost-12) > 1e-12 {
		t.Fatalf("weighted: centers %v cost %v", c, cost)
	}
	// The weighted optimum differs from the unweighted one: with a heavy
	// point at 3, the split {0,1}{3,4} loses to {0}{1,3,4}? Check against
	// brute force on this hand case.
	x := []float64{0, 1, 3, 4}
	w := []float64{1, 1, 100, 1}
	_, _, cost = KMeansExact(x, w, 2)
	if want := bruteCost(x, w, 2); math.Abs(cost-want) > 1e-12 {
		t.Fatalf("hand case: %v want %v", cost, want)
	}
	// k >= distinct values: exact zero cost, duplicates merged.
	c, a, cost = KMeansExact([]float64{2, 1, 2, 1, 3}, nil, 8)
	if len(c) != 3 || cost != 0 || c[a[0]] != 2 || c[a[4]] != 3 {
		t.Fatalf("k>=m: centers %v assign %v cost %v", c, a, cost)
	}
	// n = 1.
	c, a, cost = KMeansExact([]float64{7}, []float64{0}, 4)
	if len(c) != 1 || c[0] != 7 || a[0] != 0 || cost != 0 {
		t.Fatalf("n=1: %v %v %v", c, a, cost)
	}
	// All-zero weights fall back to uniform weights.
	c, _, cost = KMeansExact([]float64{0, 1, 10, 11}, []float64{0, 0, 0, 0}, 2)
	if len(c) != 2 || c[0] != 0.5 || c[1] != 10.5 || math.Abs(cost-1) > 1e-12 {
		t.Fatalf("zero weights: %v %v", c, cost)
	}
	// Zero-weight points do not move centers but get the nearest one.
	c, a, _ = KMeansExact([]float64{0, 2, 100}, []float64{1, 1, 0}, 1)
	if len(c) != 1 || c[0] != 1 || a[2] != 0 {
		t.Fatalf("zero-weight point: %v %v", c, a)
	}
	// k <= 0.
	if c, a, cost := KMeansExact([]float64{1, 2}, nil, 0); c != nil || len(a) != 0 || cost != 0 {
		t.Fatalf("k=0: %v %v %v", c, a, cost)
	}
}

func TestExactNeverWorseThanLloyd(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 200; trial++ {
		n := 20 + rng.IntN(300)
		k := 2 + rng.IntN(15)
		x := make([]float64, n)
		w := make([]float64, n)
		for i := range x {
			x[i] = rng.NormFloat64() * math.Exp(rng.NormFloat64())
			w[i] = rng.ExpFloat64()
		}
		_, _, ce := KMeansExact(x, w, k)
		_, _, cl := KMeansLloyd(x, w, k, uint64(trial), 0)
		if ce > cl*(1+1e-12)+1e-15 {
			t.Fatalf("trial %d n=%d k=%d: exact %.12g worse than Lloyd %.12g", trial, n, k, ce, cl)
		}
	}
}

func TestLloydDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float64, 1000)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	c1, a1, k1 := KMeansLloyd(x, nil, 16, 42, 0)
	c2, a2, k2 := KMeansLloyd(x, nil, 16, 42, 0)
	if k1 != k2 || len(c1) != len(c2) {
		t.Fatal("Lloyd not deterministic")
	}
	for i := range c1 {
		if c1[i] != c2[i] {
			t.Fatal("Lloyd centers differ")
		}
	}
	for i := range a1 {
		if a1[i] != a2[i] {
			t.Fatal("Lloyd assignment differs")
		}
	}
	// Lloyd output is a fixed point: every point at its nearest center.
	for i, v := range x {
		if nearest(c1, v) != a1[i] {
			t.Fatalf("point %d not at nearest center", i)
		}
	}
}

// TestBinnedGap measures the cost of the histogram approximation against
// the unbinned exact optimum on a 16x2048 group of Gaussian and of
// heavy-tailed weights.
func TestBinnedGap(t *testing.T) {
	if testing.Short() {
		t.Skip("slow-ish")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	n := 16 * 2048
	gauss := make([]float64, n)
	heavy := make([]float64, n)
	w := make([]float64, n)
	for i := range gauss {
		gauss[i] = rng.NormFloat64() * 0.02
		heavy[i] = rng.NormFloat64() * 0.02 * math.Exp(0.7*rng.NormFloat64())
		w[i] = 0.5 + rng.Float64()
	}
	for _, tc := range []struct {
		name string
		x    []float64
		k    int
		tol  float64
	}{
		{"gauss k=4", gauss, 4, 1e-4},
		{"gauss k=16", gauss, 16, 1e-3},
		{"heavy k=4", heavy, 4, 1e-4},
		{"heavy k=16", heavy, 16, 1e-3},
		{"heavy k=64", heavy, 64, 3e-3},
	} {
		_, _, exact := KMeansExact(tc.x, w, tc.k)
		// 1024 bins: the default; FastBins(k): what compile uses on big
		// models, allowed up to 4x the gap.
		for _, bins := range []int{1024, FastBins(tc.k)} {
			_, _, binned := KMeansBinned(tc.x, w, tc.k, bins)
			gap := (binned - exact) / exact
			t.Logf("%s: exact %.6g binned(%d) %.6g relative gap %.2e", tc.name, exact, bins, binned, gap)
			if gap < -1e-9 {
				t.Fatalf("%s: binned %.9g below the exact optimum %.9g", tc.name, binned, exact)
			}
			tol := tc.tol * float64(min(4, 1024/bins))
			if gap > tol {
				t.Fatalf("%s: binned(%d) gap %.3g exceeds %.g", tc.name, bins, gap, tol)
			}
		}
	}
}

func benchGroup() ([]float64, []float64) {
	rng := rand.New(rand.NewPCG(9, 10))
	n := 16 * 2048
	x := make([]float64, n)
	w := make([]float64, n)
	for i := range x {
		x[i] = float64(float32(rng.NormFloat64() * 0.02))
		w[i] = 0.5 + rng.Float64()
	}
	return x, w
}

// BenchmarkKMeansExact clusters one 16-row x 2048 group (32768 values).
func BenchmarkKMeansExact(b *testing.B) {
	x, w := benchGroup()
	for _, k := range []int{4, 16} {
		b.Run("exact/k="+itoa(k), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				KMeansExact(x, w, k)
			}
		})
		b.Run("binned1024/k="+itoa(k), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				KMeansBinned(x, w, k, 1024)
			}
		})
		b.Run("binned4096/k="+itoa(k), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				KMeansBinned(x, w, k, 4096)
			}
		})
		b.Run("lloyd/k="+itoa(k), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				KMeansLloyd(x, w, k, 1, 0)
			}
		})
	}
}

func itoa(v int) string {
	if v < 10 {
		return string(rune('0' + v))
	}
	return itoa(v/10) + string(rune('0'+v%10))
}

// The nearest-center table gives exactly nearest's answer: on the centers
// it was built on (find and findPure), on the same centers scaled as a
// row's decoded LUT is (find), with duplicate centers (a padded LUT), and
// for values outside the centers' range and on cell and center boundaries.
func TestNearTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for trial := 0; trial < 200; trial++ {
		k := []int{2, 3, 4, 8, 16, 64, 256}[trial%7]
		c := make([]float64, k)
		for i := range c {
			c[i] = rng.NormFloat64() * 0.02 * math.Exp(rng.NormFloat64())
		}
		if trial%5 == 0 {
			c[k-1] = c[k-2] // a padded LUT repeats its last entry
		}
		slices.Sort(c)
		var nt nearTable
		nt.build(c)
		s := float64(float32(0.5 + rng.Float64()))
		cs := make([]float64, k)
		for i, v := range c {
			cs[i] = float64(float32(v) * float32(s))
		}
		lo, hi := c[0], c[k-1]
		for i := 0; i < 2000; i++ {
			var v float64
			switch i % 4 {
			case 0:
				v = lo + (hi-lo)*(1.4*rng.Float64()-0.2)
			case 1: // a midpoint between two centers
				j := rng.IntN(k - 1)
				v = 0.5 * (c[j] + c[j+1])
			case 2: // a cell boundary
				v = nt.lo + float64(rng.IntN(nearCells+1))/nt.scale
			default:
				v = c[rng.IntN(k)]
			}
			if got, want := nt.find(c, v), nearest(c, v); got != want {
				t.Fatalf("k=%d v=%g: find %d, nearest %d", k, v, got, want)
			}
			if got, want := nt.findPure(c, v), nearest(c, v); got != want {
				t.Fatalf("k=%d v=%g: findPure %d, nearest %d", k, v, got, want)
			}
			vs := v * s
			if got, want := nearWalk(cs, vs, nt.find(c, vs/s)), nearest(cs, vs); got != want {
				t.Fatalf("k=%d scaled v=%g: %d, nearest %d", k, vs, got, want)
			}
		}
	}
}

// The row-at-a-time assignment (assignPure, assignScaled) and the table
// built by walking must agree with nearest and with a table built by
// binary search per probe, on padded LUTs (repeated last entry) and
// values beyond the LUT's range.
func TestNearTableAssign(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for trial := 0; trial < 100; trial++ {
		k := []int{2, 3, 4, 8, 16, 64, 256}[trial%7]
		c := make([]float64, k)
		for i := range c {
			c[i] = float64(float32(rng.NormFloat64() * 0.02 * math.Exp(rng.NormFloat64())))
		}
		if trial%5 == 0 {
			c[k-1] = c[k-2]
		}
		slices.Sort(c)
		var nt nearTable
		nt.build(c)
		for i := 0; i < len(nt.tab); i++ { // no table when every center is equal
			a := nearest(c, nt.lo+(float64(i)-0.01)/nt.scale)
			b := nearest(c, nt.lo+(float64(i)+1.01)/nt.scale)
			if int(nt.tab[i]) != a || nt.pure[i] != (a == b) {
				t.Fatalf("k=%d cell %d: table %d pure %v, want %d %v", k, i, nt.tab[i], nt.pure[i], a, a == b)
			}
		}
		s := float32(0.5 + rng.Float64())
		dec := make([]float64, k)
		for i, v := range c {
			dec[i] = float64(float32(v) * s)
		}
		row := make([]float32, 500)
		lo, hi := c[0], c[k-1]
		for i := range row {
			switch i % 3 {
			case 0:
				row[i] = float32(lo + (hi-lo)*(1.4*rng.Float64()-0.2))
			case 1:
				row[i] = float32(c[rng.IntN(k)])
			default:
				if nt.scale != 0 {
					row[i] = float32(nt.lo + float64(rng.IntN(nearCells+1))/nt.scale)
				}
			}
		}
		got := make([]uint8, len(row))
		nt.assignPure(c, row, got)
		for i, v := range row {
			if want := nearest(c, float64(v)); int(got[i]) != want {
				t.Fatalf("k=%d: assignPure(%g) = %d, nearest %d", k, v, got[i], want)
			}
		}
		inv := 1 / float64(s)
		for i := range row {
			row[i] *= s
		}
		nt.assignScaled(dec, inv, row, got)
		for i, v := range row {
			if want := nearest(dec, float64(v)); int(got[i]) != want {
				t.Fatalf("k=%d: assignScaled(%g) = %d, nearest %d", k, v, got[i], want)
			}
		}
	}
}
