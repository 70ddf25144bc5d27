package kernels

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/squeeze-ml/squeeze/ir"
)

// Mode selects the arithmetic of the palettized kernels.
type Mode int32

const (
	// ModeFloat decodes LUT entries to float32 and multiplies with float32
	// activations (matches the reference to rounding).
	ModeFloat Mode = iota
	// ModeInt8 uses the llama.cpp IQ4_NL-style integer path for lut2, lut3
	// and lut4 tensors whose rows are block aligned (cols a multiple of 64
	// for lut4, 128 for lut2/lut3): each group's float16 LUT is quantized
	// to 7-bit unsigned entries with an offset (w ~ s*u + m, u in 0..127),
	// the activation vector to int8 in sub-blocks of 8 with one float
	// scale each (Q8_0 uses blocks of 32; see qx), and rows are integer
	// dot products (VPSHUFB table lookup, VPMADDUBSW, VPMADDWD) scaled per
	// int32 lane. Other tensors, and
	// builds without the AVX2 assembly, use the float path.
	ModeInt8
)

func (m Mode) String() string {
	if m == ModeInt8 {
		return "int8"
	}
	return "float"
}

var mode atomic.Int32

func init() {
	switch os.Getenv("SQUEEZE_KERNELS") {
	case "int8":
		mode.Store(int32(ModeInt8))
	case "float":
		mode.Store(int32(ModeFloat))
	default:
		mode.Store(int32(defaultMode))
	}
}

// defaultMode is the library's default: ModeFloat, the arithmetic that
// matches the reference to rounding, which compile, recover and the tests
// compare against. The squeeze commands that run a model (run, bench,
// eval, sweep) select ModeInt8 themselves unless told otherwise
// (cmd/squeeze/kernels.go): it decodes 2.5x faster on the 1.1B shape at
// 3.67 bpw, and with fitted tables (fitI8) raised the mean KLD of
// stories260K bundles by 0.7-1.5% relative (docs/QUALITY.md, session 7).
const defaultMode = ModeFloat

// SetMode selects the palettized arithmetic for all later calls and
// returns the previous mode. The environment variable SQUEEZE_KERNELS
// (int8 or float) sets the initial mode.
func SetMode(m Mode) Mode { return Mode(mode.Swap(int32(m))) }

// CurrentMode returns the selected palettized arithmetic.
func CurrentMode() Mode { return Mode(mode.Load()) }

// EffectiveMode is the arithmetic palettized weights run with: the
// selected mode, except ModeFloat where the build has no int8 kernels
// (they are amd64 AVX2 assembly). Even in ModeInt8, tensors whose rows the
// int8 kernels do not take (cols not a multiple of 64 for lut4, of 128 for
// lut2/lut3; other widths) run the float path.
func EffectiveMode() Mode {
	if CurrentMode() == ModeInt8 && i8Asm() {
		return ModeInt8
	}
	return ModeFloat
}

// ---- int8 LUTs: built lazily per palette, never stored in bundles ----

// i8Tab holds one palette's int8 tables: 16 bytes per group (entries
// beyond 1<<bits are zero) and the affine map back to float.
type i8Tab struct {
	u    []byte    // NumGroups x 16
	s, m []float32 // per group: w ~ s*u + m
	// u2 (2-bit palettes only): per group two 16-byte tables indexed by a
	// nibble (two 2-bit indices): [i] = u[i&3] and [16+i] = u[i>>2], so
	// the lut2 row kernel decodes 4 fields per byte with one shift, two
	// masks and four lookups.
	u2 []byte
	// u3 (3-bit palettes only): per group two 16-byte tables indexed by
	// the nibbles the lut3 row kernel builds (a 2-bit field and two
	// plane-1 bits): [i] = u[i&7] and [16+i] = u[i&3 | (i>>3)<<2] (bit 2
	// of the nibble is ignored there).
	u3 []byte
}

type i8Entry struct {
	once sync.Once
	lut  []uint16
	bits int
	tab  *i8Tab
}

func (e *i8Entry) get() *i8Tab {
	e.once.Do(func() { e.tab = buildI8Tab(e.lut, e.bits) })
	return e.tab
}

// i8Cache maps a palette (weakly) to its int8 tables; entries are removed
// when the palette is garbage collected.
var i8Cache sync.Map // weak.Pointer[ir.Palette] -> *i8Entry

// i8TableOf returns the int8 tables of w's palette, building them on first
// use (once, however many goroutines ask). A caller that rewrites
// Pal.LUT in place after the first call must call Forget(w); a new LUT
// slice is noticed.
func i8TableOf(w *ir.Tensor, bits int) *i8Tab {
	pal := w.Pal
	addr := uintptr(unsafe.Pointer(pal))
	if v, ok := i8Fast.Load(addr); ok {
		if e := v.(*i8Entry); e.matches(pal, bits) {
			return e.get()
		}
	}
	key := weak.Make(pal)
	for {
		v, ok := i8Cache.Load(key)
		if !ok {
			e := &i8Entry{lut: pal.LUT, bits: bits}
			v, ok = i8Cache.LoadOrStore(key, e)
			if !ok {
				runtime.AddCleanup(pal, func(c i8Clean) {
					i8Cache.Delete(c.key)
					i8Fast.CompareAndDelete(c.addr, c.e)
				}, i8Clean{key, addr, e})
			}
		}
		e := v.(*i8Entry)
		t := e.get()
		if e.matches(pal, bits) {
			i8Fast.Store(addr, e)
			return t
		}
		i8Cache.CompareAndDelete(key, e) // the LUT slice was replaced: rebuild
	}
}

// i8Fast maps a palette's address to its entry in front of i8Cache:
// weak.Make walks the span's list of specials (one cleanup per palette,
// so slow with many palettes in a span: ~4 us per linear call on the 1.1B
// shape, 1.2% of decode). An address can be reused once its palette is
// collected, so a hit counts only if the entry's LUT slice is the
// palette's (the entry keeps its LUT array alive, so a new palette at the
// same address has another LUT); the palette's cleanup removes the entry.
var i8Fast sync.Map // uintptr -> *i8Entry

type i8Clean struct {
	key  weak.Pointer[ir.Palette]
	addr uintptr
	e    *i8Entry
}

func (e *i8Entry) matches(pal *ir.Palette, bits int) bool {
	return e.bits == bits && len(e.lut) == len(pal.LUT) && len(e.lut) > 0 && &e.lut[0] == &pal.LUT[0]
}

// Forget drops the cached int8 tables of w (after its LUT was modified in
// place).
func Forget(w *ir.Tensor) {
	if w != nil && w.Pal != nil {
		i8Cache.Delete(weak.Make(w.Pal))
		i8Fast.Delete(uintptr(unsafe.Pointer(w.Pal)))
	}
}

// i8Levels is the largest int8 table entry of a width: 63 (6 bits) for
// lut2, whose row kernel adds two VPMADDUBSW pair sums in int16
// (2 * 2*63*127 <= 32767) before widening, 127 (7 bits) for lut3 and
// lut4.
func i8Levels(bits int) int {
	if bits == 2 {
		return 63
	}
	return 127
}

// fitI8 quantizes the k LUT entries f (range [lo, hi], lo < hi) to
// integers u in [0, lv] under an affine map f ~ s*u + m. Each candidate
// grid (top level L in [lv - lv/span, lv], span fitSpan7 for lv = 127 and
// fitSpan6 for 63; offset o in {0, 1/4, 1/2, 3/4} for fitPhases = 4)
// rounds the normalized entries: u = round((f-lo)/(hi-lo)*L + o), capped
// at lv; s and m are then refitted by least squares to those integers,
// and the candidate with the smallest squared error wins (ties: the
// earlier one; the first, L = lv and o = 0, is the plain map, whose
// refit can only lower its error, so the fit is never worse than it). With 4 to 16 entries some grid puts the inner entries
// near integers: a fitted 6-bit 4-entry table errs less than a plain
// 7-bit one (TestI8Fit).
//
// The normalized entries are held in 20-bit fixed point (gq = round(g *
// 2^20): the grid and the least-squares fit see g to within 2^-21; with
// 2^-17 the candidates' errors were perturbed enough to pick a table 0.3%
// worse than the best, TestFitSums), so that the integers and their sums
// (sum u, sum u^2, sum u*gq <= 16 * 127 * 2^20 < 2^31) are exact int32
// arithmetic, computed for all 128
// candidates at once, 8 per AVX2 vector (fitSums; fitSumsGo where there
// is no assembly). Each candidate's least-squares refit and error are then
// float64 from exact sums. This takes ~2 us per 16-entry group where the
// scalar float64 loop took ~11 us: the 1.1B shape's ~20k groups are fitted
// at runtime.New, before the first token.
func fitI8(f []float32, lo, hi float32, lv int, u []byte) (s, m float32) {
	k := len(f)
	var gq [16]int32
	var sg, sgg float64
	span := float64(hi - lo)
	for i, v := range f {
		gq[i] = int32(math.Round(float64(v-lo) / span * fitOne))
		g := float64(gq[i]) / fitOne
		sg += g
		sgg += g * g
	}
	cs := fitCandsOf(lv)
	var su, suu, sug [fitNC]int32
	if !fitSums(gq[:k], cs, int32(lv), &su, &suu, &sug) {
		fitSumsGo(gq[:k], cs, int32(lv), &su, &suu, &sug)
	}
	n := float64(k)
	best := math.Inf(1)
	bc, ba, bb := -1, 1/float64(lv), 0.0 // the plain map if every candidate is degenerate
	for c := range cs.L {
		su, suu, sug := float64(su[c]), float64(suu[c]), float64(sug[c])/fitOne
		den := n*suu - su*su
		if den <= 0 {
			continue
		}
		a := (n*sug - su*sg) / den
		b := (sg - a*su) / n
		// sum (a*u + b - g)^2, expanded
		e := a*a*suu + 2*a*b*su - 2*a*sug + n*b*b - 2*b*sg + sgg
		if e < best {
			best, bc, ba, bb = e, c, a, b
		}
	}
	L, ph := int32(lv), int32(fitOne/2)
	if bc >= 0 {
		L, ph = cs.L[bc], cs.ph[bc]
	}
	for i := 0; i < k; i++ {
		u[i] = uint8(fitLevel(gq[i], L, ph, int32(lv)))
	}
	return float32(ba * span), float32(float64(lo) + bb*span)
}

// fitOne is 1 in fitI8's fixed point.
const fitOne = 1 << fitShift

const fitShift = 20

// fitNC is the number of candidate grids of fitI8 (a multiple of 8).
const fitNC = 128

// fitCands are fitI8's candidate grids in the order it tries them: top
// level L and offset ph (1/2 for rounding, plus o; in fixed point).
type fitCands struct{ L, ph [fitNC]int32 }

var fitCands7, fitCands6 = makeFitCands(127), makeFitCands(63)

func makeFitCands(lv int) *fitCands {
	lmin := lv - lv/fitSpan7
	if lv < 127 {
		lmin = lv - lv/fitSpan6
	}
	c := new(fitCands)
	i := 0
	for L := lv; L >= lmin; L-- {
		for p := 0; p < fitPhases; p++ {
			c.L[i], c.ph[i] = int32(L), fitOne/2+int32(p)*fitOne/fitPhases
			i++
		}
	}
	if i != fitNC {
		panic("kernels: fitI8 candidate count")
	}
	return c
}

func fitCandsOf(lv int) *fitCands {
	if lv < 127 {
		return fitCands6
	}
	return fitCands7
}

// fitLevel is a normalized entry's integer on grid (L, ph): floor(g*L +
// ph) capped at lv, in fixed point (gq*L + ph < 2^28 for gq <= 2^20,
// L <= 127).
func fitLevel(gq, L, ph, lv int32) int32 {
	return min(lv, (gq*L+ph)>>fitShift)
}

// fitSumsGo is the reference of fitSums: for each candidate c, the sums
// over the entries of u, u*u and u*gq, u = fitLevel(gq, L_c, ph_c), in
// int32 (at most 16 * 127 * 2^20 < 2^31).
func fitSumsGo(gq []int32, cs *fitCands, lv int32, su, suu, sug *[fitNC]int32) {
	for c := range cs.L {
		var a, b, d int32
		for _, g := range gq {
			q := fitLevel(g, cs.L[c], cs.ph[c], lv)
			a += q
			b += q * q
			d += q * g
		}
		su[c], suu[c], sug[c] = a, b, d
	}
}

// The candidate grids of fitI8: 32 top levels x 4 offsets for 7-bit
// tables, 32 x 4 for 6-bit ones (fitNC = 128 either way; once per
// palette). Narrower searches measured worse on a 3.7 bpw stories260K
// bundle (mean int8 KLD: 0.2235 with 32 x 4, 0.2244 with 16 x 2, 0.2245
// with 2 x 1, 0.2257 with the plain map refitted, 0.2259 plain).
const (
	fitSpan7  = 4
	fitSpan6  = 2
	fitPhases = 4
)

// buildI8Tab quantizes each group's LUT to i8Levels(bits) with fitI8:
// w ~ s*u + m per group (an all-equal group gets s = 0, m = its value).
func buildI8Tab(lut []uint16, bits int) *i8Tab {
	k := 1 << bits
	lv := float32(i8Levels(bits))
	ng := len(lut) / k
	t := &i8Tab{u: make([]byte, 16*ng), s: make([]float32, ng), m: make([]float32, ng)}
	for g := 0; g < ng; g++ {
		var f [16]float32
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for i := 0; i < k; i++ {
			f[i] = f16(lut[g*k+i])
			lo = min(lo, f[i])
			hi = max(hi, f[i])
		}
		if s := (hi - lo) / lv; s == 0 || math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			t.s[g], t.m[g] = 0, lo
			continue
		}
		t.s[g], t.m[g] = fitI8(f[:k], lo, hi, int(lv), t.u[16*g:16*g+k])
	}
	if bits == 2 {
		t.u2 = make([]byte, 32*ng)
		for g := 0; g < ng; g++ {
			u, o := t.u[16*g:16*g+4], t.u2[32*g:32*g+32]
			for i := 0; i < 16; i++ {
				o[i], o[16+i] = u[i&3], u[i>>2]
			}
		}
	}
	if bits == 3 {
		t.u3 = make([]byte, 32*ng)
		for g := 0; g < ng; g++ {
			u, o := t.u[16*g:16*g+8], t.u3[32*g:32*g+32]
			for i := 0; i < 16; i++ {
				o[i], o[16+i] = u[i&7], u[i&3|(i>>3)<<2]
			}
		}
	}
	return t
}

// ---- int8 activations ----

// qx is an activation vector quantized to int8 in sub-blocks of 8 (scale d
// per sub-block, see q8Sub), plus the element orders and expanded scales
// the assembly wants: perm/sc hold, per 64 elements, the bytes in the
// order the index decoder produces them and 8 float scales (one per int32
// lane).
//
// Why sub-blocks of 8, not Q8_0's blocks of 32: every int32 lane of the
// row and tile kernels sums the products of exactly 8 activations, and
// the kernels scale each lane by its own float (sc), so a scale per lane
// costs the kernels nothing (the same bytes and instructions as one scale
// per 32). The 8 activations of a lane are, in each aligned block of 32,
// elements 4l..4l+3 and 16+4l..16+4l+3 for lane l = 0..3, in the lut4 and
// the lut2/lut3 layouts alike, so one quantization serves both. An outlier
// now coarsens the grid of 7 neighbours, not 31 (docs/QUALITY.md, session
// 8).
type qx struct {
	n    int
	qn   []int8    // natural order
	d    []float32 // per sub-block of 8 (q8Sub): sd[super-block] * is
	is   []int32   // per sub-block: its integer scale s (see quantize)
	sd   []float32 // per super-block of q8Super sub-blocks: the float step D
	inv  []float32 // per sub-block: 1/d (0 where d is 0)
	perm []int8
	sc   []float32 // d in the kernels' lane order (permute)
	isc  []int32   // is in the lut2/lut3 lane order, s in both 16-bit halves
	isum []int32   // per sub-block: sum of qn
	xsum float32   // sum of the dequantized x: sum_b d_b * isum_b
}

// Integer sub-block scales. A sub-block's step is d = D*s: D a float per
// super-block of q8Super sub-blocks (2048 elements), s a small integer per
// sub-block. The lut2 row kernels multiply each lane's int16 sums by s in
// the VPMADDWD that widens them and add the lanes in int32 over a whole
// super-block, converting and scaling by D once per super-block instead of
// once per 64 weights (docs/PERF.md, session 10). q8Budget bounds the sum
// of s over a super-block so that no int32 sum can overflow: every product
// is at most 127*128 in magnitude (table bytes <= 127, activations >= -128)
// and a lane sums 8 per sub-block, so any partial sum is at most
// q8Budget * 8 * 127*128 = 2,147,432,624 < 2^31.
const (
	q8Super  = 256
	q8Budget = 16513
)

// q8Sub is the sub-block of element i: in each aligned block of 32, sub-block
// l (0..3) holds elements 4l..4l+3 and 16+4l..16+4l+3.
func q8Sub(i int) int { return (i>>5)<<2 | (i>>2)&3 }

var qxPool = sync.Pool{New: func() any { return new(qx) }}

func grow8(b []int8, n int) []int8 {
	if cap(b) < n {
		return make([]int8, n)
	}
	return b[:n]
}

func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func growI(b []int32, n int) []int32 {
	if cap(b) < n {
		return make([]int32, n)
	}
	return b[:n]
}

// quantize fills q from x (len a multiple of 32) in three steps:
//  1. a = amax/127 per sub-block of 8 (q8Sub);
//  2. q8Scales: per super-block, D = sum(a) / (q8Budget - 2*nsub) and per
//     sub-block s = ceil(a/D), d = D*s >= a (so |qn| <= 127), and the sum
//     of s within q8Budget. An outlier raises D for its super-block by its
//     share of sum(a), not the grid of every sub-block to its own amax.
//     d exceeds a by 0.8% on average on N(0,1) activations and by 3% on
//     heavy-tailed ones (TestQuantQ8Grid);
//  3. qn = round-half-even(x * (1/d)) (the assembly's VCVTPS2DQ rounding;
//     0 for an all-zero sub-block).
func (q *qx) quantize(x []float32) {
	n := len(x)
	nb := n / 8
	q.n = n
	q.qn = grow8(q.qn, n)
	q.d = growF(q.d, nb)
	q.is = growI(q.is, nb)
	q.sd = growF(q.sd, (nb+q8Super-1)/q8Super)
	q.inv = growF(q.inv, nb)
	q.isum = growI(q.isum, nb)
	if !amaxQ8(x, q.d) {
		amaxQ8Go(x, q.d)
	}
	q8Scales(q.d, q.is, q.sd, q.inv)
	if !quantQ8(x, q.inv, q.qn, q.isum) {
		quantQ8Go(x, q.inv, q.qn, q.isum)
	}
	var xs float32
	for b, d := range q.d {
		xs += d * float32(q.isum[b])
	}
	q.xsum = xs
}

// copyQuant makes q's quantization (not its layout) that of o.
func (q *qx) copyQuant(o *qx) {
	q.n, q.xsum = o.n, o.xsum
	q.qn = append(q.qn[:0], o.qn...)
	q.d = append(q.d[:0], o.d...)
	q.is = append(q.is[:0], o.is...)
	q.sd = append(q.sd[:0], o.sd...)
	q.inv = append(q.inv[:0], o.inv...)
	q.isum = append(q.isum[:0], o.isum...)
}

// amaxQ8Go is the reference of amaxQ8AVX2: a[b] = amax/127 of sub-block b.
func amaxQ8Go(x []float32, a []float32) {
	for b := 0; b < len(x)/8; b++ {
		// sub-block b: elements o..o+3 and o+16..o+19
		o := 32*(b/4) + 4*(b%4)
		var amax float32
		for _, i := range [8]int{o, o + 1, o + 2, o + 3, o + 16, o + 17, o + 18, o + 19} {
			if a := float32(math.Abs(float64(x[i]))); a > amax {
				amax = a
			}
		}
		a[b] = amax / 127
	}
}

// q8Scales turns the sub-blocks' a = amax/127 (in d) into the integer
// scales is, the super-block steps sd, the steps d = sd*is and their
// inverses inv (see quantize). A super-block whose a sum is not finite
// (an infinite activation) gets s = 1 and D = that sum, so the infinity
// reaches the output. A NaN activation is skipped by the amax and
// quantizes to -128, as before integer scales: the int8 path does not
// promise to carry NaN through.
func q8Scales(d []float32, is []int32, sd []float32, inv []float32) {
	nb := len(d)
	for k := 0; k*q8Super < nb; k++ {
		b0, b1 := k*q8Super, min(nb, (k+1)*q8Super)
		A := sum8(d[b0:b1])
		D := A / float32(q8Budget-2*(b1-b0))
		sd[k] = D
		if A == 0 || math.IsNaN(float64(A)) || math.IsInf(float64(A), 0) {
			for b := b0; b < b1; b++ {
				is[b], d[b], inv[b] = 0, 0, 0
				if A != 0 {
					is[b], d[b], inv[b] = 1, D, 1/D
				}
			}
			continue
		}
		tot := q8ScalesRun(d[b0:b1], D, is[b0:b1], inv[b0:b1])
		if tot > q8Budget {
			// ceil adds at most 1 per sub-block and D leaves 2 per sub-block
			// of room: unreachable unless the arithmetic above changes
			panic(fmt.Sprintf("kernels: integer activation scales sum to %d > %d", tot, q8Budget))
		}
	}
}

// q8ScalesGo is the reference of q8ScalesAVX2 over the sub-blocks' a (in
// d): s = ceil(a * (1/D)), d = D*s, inv = 1/d (0 where s is 0); it
// returns the sum of s. s*D may fall short of a by a rounding, so that
// x/d reaches 127 plus a few ulps: it still rounds to 127.
func q8ScalesGo(d []float32, D float32, is []int32, inv []float32) int32 {
	invD := 1 / D
	var tot int32
	for b, a := range d {
		c := float32(math.Ceil(float64(a * invD)))
		s := int32(c)
		is[b] = s
		tot += s
		d[b] = D * c
		inv[b] = 0
		if s != 0 {
			inv[b] = 1 / d[b]
		}
	}
	return tot
}

// sum8 is the float32 sum of v in 8 interleaved partial sums (v[i] into
// partial i%8; then ((p0+p4)+(p2+p6))+((p1+p5)+(p3+p7))): a fixed order
// that does not wait on one long chain of adds.
func sum8(v []float32) float32 {
	var p [8]float32
	i := 0
	for ; i+8 <= len(v); i += 8 {
		for j := range 8 {
			p[j] += v[i+j]
		}
	}
	for j := 0; i < len(v); i, j = i+1, j+1 {
		p[j] += v[i]
	}
	return ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]))
}

// quantQ8Go is the reference of quantQ8AVX2: qn = round-half-even(x *
// inv[sub-block]) and isum, the sum of qn per sub-block (q8Sub).
func quantQ8Go(x []float32, inv []float32, qn []int8, isum []int32) {
	for b := 0; b < len(x)/8; b++ {
		o := 32*(b/4) + 4*(b%4)
		id := inv[b]
		var is int32
		for _, i := range [8]int{o, o + 1, o + 2, o + 3, o + 16, o + 17, o + 18, o + 19} {
			qv := int32(math.RoundToEven(float64(x[i] * id)))
			// the assembly's VPACKSSDW/VPACKSSWB saturate; d >= amax/127
			// keeps |qv| <= 127 for finite x
			qv = max(-128, min(127, qv))
			qn[i] = int8(qv)
			is += qv
		}
		isum[b] = is
	}
}

// permute arranges qn and the scales for the decoder of the given width
// (len a multiple of 64 for 4 bits, 128 for 2 and 3).
func (q *qx) permute(bits int) {
	n := q.n
	q.perm = grow8(q.perm, n)
	q.sc = growF(q.sc, n/8)
	qn, p, d, sc := q.qn, q.perm, q.d, q.sc
	if bits == 4 {
		// 64 elements = blocks A, B of 32; vectors [A0-15|B0-15],
		// [A16-31|B16-31] (B = elements 32..63); lanes scaled dA, dB.
		type b16 = [16]int8
		for u := 0; u < n/64; u++ {
			s, o := qn[64*u:64*u+64], p[64*u:64*u+64]
			*(*b16)(o[0:]) = *(*b16)(s[0:])
			*(*b16)(o[16:]) = *(*b16)(s[32:])
			*(*b16)(o[32:]) = *(*b16)(s[16:])
			*(*b16)(o[48:]) = *(*b16)(s[48:])
		}
		// lane l of A's (B's) vectors: A's (B's) sub-block l
		copy(sc, d)
		return
	}
	// isc (lut2 only; lut3 shares this layout): s in both halves of an
	// int32 lane, the multiplier of VPMADDWD's two int16 sums (s <=
	// q8Budget < 2^15)
	q.isc = growI(q.isc, n/8)
	is, isc := q.is, q.isc
	// 128 elements = index blocks A (0..63), B (64..127); vector k holds
	// [A 16k..16k+15 | B 16k..16k+15]; vectors 0,1 meet Q8 blocks 4u, 4u+2,
	// vectors 2,3 blocks 4u+1, 4u+3; lane l of a block: its sub-block l.
	// (Array copies: one 16-byte move each, not a copy call.)
	type b16 = [16]int8
	type f4 = [4]float32
	type i4 = [4]int32
	for u := 0; u < n/128; u++ {
		s, o := qn[128*u:128*u+128], p[128*u:128*u+128]
		for k := 0; k < 4; k++ {
			*(*b16)(o[32*k:]) = *(*b16)(s[16*k:])
			*(*b16)(o[32*k+16:]) = *(*b16)(s[64+16*k:])
		}
		f, dd := sc[16*u:16*u+16], d[16*u:16*u+16]
		*(*f4)(f[0:]) = *(*f4)(dd[0:])
		*(*f4)(f[4:]) = *(*f4)(dd[8:])
		*(*f4)(f[8:]) = *(*f4)(dd[4:])
		*(*f4)(f[12:]) = *(*f4)(dd[12:])
		g, ss := isc[16*u:16*u+16], is[16*u:16*u+16]
		for j, src := range [4]int{0, 8, 4, 12} {
			v := *(*i4)(ss[src:])
			*(*i4)(g[4*j:]) = i4{v[0] | v[0]<<16, v[1] | v[1]<<16, v[2] | v[2]<<16, v[3] | v[3]<<16}
		}
	}
}

// i8Aligned reports whether a row of cols elements suits the int8 kernels.
func i8Aligned(bits, cols int) bool {
	switch bits {
	case 4:
		return cols%64 == 0
	case 2, 3:
		return cols%128 == 0
	}
	return false
}

// matVecLUTI8 is MatVec over the int8 path; ok is false when the tensor or
// the build has none.
func matVecLUTI8(w *ir.Tensor, L *lutLayout, x, out []float32, r0, r1 int) bool {
	if !i8Asm() || !i8Aligned(L.bits, w.Cols()) {
		return false
	}
	q := qxPool.Get().(*qx)
	defer qxPool.Put(q)
	q.quantize(x[:w.Cols()])
	q.permute(L.bits)
	matVecI8Rows(w, L, i8TableOf(w, L.bits), q, out, r0, r1)
	return true
}

// matVecI8Rows computes rows [r0, r1) against an already quantized x.
func matVecI8Rows(w *ir.Tensor, L *lutLayout, tab *i8Tab, q *qx, out []float32, r0, r1 int) {
	pal := w.Pal
	gs := pal.GroupSize
	g0 := r0 / gs
	first := gs - r0%gs
	p0, p1 := L.rowPlanes(w.Data, r0)
	i8Rows(L.bits, p0, p1, L.rowB, r1-r0, q, tab, g0, gs, first, out[r0:r1])
	// group by group (no division per row); the same expression as ever
	for r, g := r0, g0; r < r1; g++ {
		e := min(r1, (g+1)*gs)
		s, m := tab.s[g], tab.m[g]*q.xsum
		o := out[r:e]
		if pal.Scales != nil {
			// row scales converted 64 at a time (VCVTPH2PS; exact)
			var buf [64]float32
			for c0 := 0; c0 < len(o); c0 += len(buf) {
				oc := o[c0:min(len(o), c0+len(buf))]
				sc := buf[:len(oc)]
				f16ToF32(pal.Scales[r+c0:r+c0+len(oc)], sc)
				for i, v := range oc {
					oc[i] = (s*v + m) * sc[i]
				}
			}
		} else {
			for i, v := range o {
				o[i] = s*v + m
			}
		}
		r = e
	}
}

// i8RowRef is the scalar reference of the int8 arithmetic for one row:
// idx the row's indices (natural order), u the group's int8 table, q the
// quantized x. It returns sum_b d_b * sum_{i in b} u[idx_i]*qn_i (before
// the group's s, m and the row scale).
func i8RowRef(idx []uint8, u []byte, q *qx) float32 {
	acc := make([]int32, len(idx)/8)
	for i, v := range idx {
		acc[q8Sub(i)] += int32(u[v]) * int32(q.qn[i])
	}
	var s float32
	for b, a := range acc {
		s += q.d[b] * float32(a)
	}
	return s
}

// i8RowRefInt is the lut2 row kernels' arithmetic for one row, to the
// bit: per super-block the exact integer sum over its sub-blocks b of
// s_b * sum_{i in b} u[idx_i]*qn_i, converted to float32, multiplied by
// the super-block's D and added to the row in order (no fused multiply-add).
func i8RowRefInt(idx []uint8, u []byte, q *qx) float32 {
	var row float32
	const se = 8 * q8Super // elements per super-block
	for k := range q.sd {
		var tot int64
		for i := k * se; i < min(len(idx), (k+1)*se); i++ {
			tot += int64(q.is[q8Sub(i)]) * int64(u[idx[i]]) * int64(q.qn[i])
		}
		if tot != int64(int32(tot)) {
			panic("kernels: a super-block's integer sum overflows int32")
		}
		row += float32(q.sd[k] * float32(int32(tot)))
	}
	return row
}

// qxBatch holds the n inputs of a MatMul quantized for the int8 tile
// kernel: token i's activations in qx.permute order at perm[i*cols:] and
// its expanded block scales at sc[i*cols/8:], xsum[i] its dequantized sum;
// tokens are padded with zeros to a multiple of 4 (the tile's width), so
// the padding contributes exact zeros that are never stored.
type qxBatch struct {
	cols, n int
	perm    []int8
	sc      []float32
	xsum    []float32
	q       qx
}

var qxbPool = sync.Pool{New: func() any { return new(qxBatch) }}

// quantize fills b from the n inputs x[i*cols:(i+1)*cols], each quantized
// exactly as MatVec quantizes it (qx.quantize, qx.permute).
func (b *qxBatch) quantize(x []float32, n, cols, bits int) {
	b.alloc(n, cols)
	b.quantizeTokens(x, 0, n, bits, &b.q)
}

// alloc sizes b for n inputs of cols and zeroes the padding tokens (n up
// to the next multiple of 4); quantizeTokens then fills the tokens, in
// disjoint ranges that may run concurrently.
func (b *qxBatch) alloc(n, cols int) {
	np := (n + 3) &^ 3
	b.cols, b.n = cols, n
	b.perm = grow8(b.perm, np*cols)
	b.sc = growF(b.sc, np*cols/8)
	b.xsum = growF(b.xsum, np)
	clear(b.perm[n*cols:])
	clear(b.sc[n*cols/8:])
	clear(b.xsum[n:])
}

// quantizeTokens quantizes the inputs t0..t1-1 of x into b (sized by
// alloc), with q as scratch.
func (b *qxBatch) quantizeTokens(x []float32, t0, t1, bits int, q *qx) {
	cols := b.cols
	for i := t0; i < t1; i++ {
		q.quantize(x[i*cols : (i+1)*cols])
		q.permute(bits)
		copy(b.perm[i*cols:(i+1)*cols], q.perm)
		copy(b.sc[i*cols/8:(i+1)*cols/8], q.sc)
		b.xsum[i] = q.xsum
	}
}

// i8TileRowBlock is the weight bytes (one plane) a row block of the int8
// MatMul may span: every token quad passes over the block while it sits
// in L2 (512 KiB on the Zen 3 build machine), so the weights stream from
// memory once per call, not once per token quad.
const i8TileRowBlock = 64 << 10

// matMulLUTI8 is MatMul over the int8 path; ok is false when the tensor or
// the build has none. The n inputs are quantized once (as MatVec quantizes
// one), then the register-tiled micro-kernel (2 rows x 4 tokens: each
// weight unit is decoded once and meets 4 tokens; i8Lut{4,2,3}Tile) runs
// over row blocks. i8NoTile selects the previous scheme (the MatVec row
// kernel once per token) for comparison.
func matMulLUTI8(w *ir.Tensor, L *lutLayout, x, out []float32, n, r0, r1 int) bool {
	cols, rows := w.Cols(), w.Rows()
	if !i8Asm() || !i8Aligned(L.bits, cols) {
		return false
	}
	tab := i8TableOf(w, L.bits)
	if !i8TileBits(L.bits) || i8NoTile {
		q := qxPool.Get().(*qx)
		defer qxPool.Put(q)
		for i := 0; i < n; i++ {
			q.quantize(x[i*cols : (i+1)*cols])
			q.permute(L.bits)
			matVecI8Rows(w, L, tab, q, out[i*rows:(i+1)*rows], r0, r1)
		}
		return true
	}
	qb := qxbPool.Get().(*qxBatch)
	defer qxbPool.Put(qb)
	qb.quantize(x, n, cols, L.bits)
	matMulI8Tiles(w, L, tab, qb, out, r0, r1)
	return true
}

// i8NoTile makes MatMul run the int8 row kernel per token (as before the
// tile kernel existed); benchmarks set it to compare the two.
var i8NoTile bool

// matMulI8Tiles runs the tile kernel over rows [r0, r1) and every token of
// qb, applying each group's affine map and the row scales (the formula of
// matVecI8Rows: (s*sum + m*xsum) * scale, the scale 1 without scales).
func matMulI8Tiles(w *ir.Tensor, L *lutLayout, tab *i8Tab, qb *qxBatch, out []float32, r0, r1 int) {
	rows, n := w.Rows(), qb.n
	pal := w.Pal
	gs := pal.GroupSize
	rb := min(i8TileMaxRows, max(2, i8TileRowBlock/L.rowB[0])) &^ 1
	var o [8]float32
	// per row of the block: group table offset, s, m, scale, and the sums
	// of the 4 tokens over the column chunks
	var gu [i8TileMaxRows]int
	var cs, cm, cc [i8TileMaxRows]float32
	var acc [i8TileMaxRows][4]float32
	cols := qb.cols
	kc := cols
	if cols > i8TileCols {
		kc = i8TileCols
	}
	for a0 := r0; a0 < r1; a0 += rb {
		a1 := min(a0+rb, r1)
		for r := a0; r < a1; r++ {
			i, g := r-a0, r/gs
			gu[i], cs[i], cm[i], cc[i] = 16*g, tab.s[g], tab.m[g], 1
			if pal.Scales != nil {
				cc[i] = f16(pal.Scales[r])
			}
		}
		for t := 0; t < n; t += 4 {
			for c0 := 0; c0 < cols; c0 += kc {
				c1 := min(c0+kc, cols)
				for r := a0; r < a1; r += 2 {
					rB := min(r+1, a1-1) // an odd last row is computed twice
					i, iB := r-a0, rB-a0
					pa, qa := L.rowPlanes(w.Data, r)
					pb, qb1 := L.rowPlanes(w.Data, rB)
					if !i8Tile(L.bits, pa, pb, qa, qb1, tab.u[gu[i]:gu[i]+16], tab.u[gu[iB]:gu[iB]+16], qb, t, c0, c1, &o) {
						panic("kernels: no int8 tile kernel for this width")
					}
					if c0 == 0 {
						acc[i] = [4]float32(o[0:4])
						if rB != r {
							acc[iB] = [4]float32(o[4:8])
						}
					} else {
						for j := range 4 {
							acc[i][j] += o[j]
						}
						if rB != r {
							for j := range 4 {
								acc[iB][j] += o[4+j]
							}
						}
					}
				}
			}
			xs := qb.xsum[t : t+4]
			for j := 0; j < min(4, n-t); j++ {
				oj := out[(t+j)*rows : (t+j+1)*rows]
				for r := a0; r < a1; r++ {
					i := r - a0
					oj[r] = (cs[i]*acc[i][j] + cm[i]*xs[j]) * cc[i]
				}
			}
		}
	}
}

// i8TileCols is the column chunk of the int8 MatMul: a token quad's
// activations over 2048 columns (12 KiB of int8 and scales) stay in the
// 32 KiB L1 while the row pairs of a block pass over them. Wider matrices
// (ffn_down) sum the chunks' partial sums in float, in a fixed order.
const i8TileCols = 2048

// i8TileMaxRows caps the row block (for narrow matrices, where 64 KiB of
// indices is many rows) so the per-row coefficients fit on the stack.
const i8TileMaxRows = 256

// WarmI8 builds, on every CPU, the int8 tables of the tensors (and lutmix
// parts) among ws that the int8 kernels will run, so that the first
// forward pass does not fit them one tensor at a time (~2.6 us per LUT
// group; ~20k groups on the 1.1B shape). It does nothing outside
// ModeInt8 or without the int8 kernels. Safe beside forward passes: a
// table is built once, whoever asks first.
func WarmI8(ws []*ir.Tensor) {
	if EffectiveMode() != ModeInt8 {
		return
	}
	type job struct {
		w    *ir.Tensor
		bits int
	}
	var jobs []job
	for _, w := range ws {
		parts := []*ir.Tensor{w}
		if w != nil && w.Type == ir.LUTMIX {
			parts = w.Parts
		}
		for _, p := range parts {
			if p == nil || p.Pal == nil || len(p.Shape) != 2 {
				continue
			}
			if L, ok := layoutOf(p); ok && i8Aligned(L.bits, p.Cols()) {
				jobs = append(jobs, job{p, L.bits})
			}
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := int(next.Add(1) - 1); j < len(jobs); j = int(next.Add(1) - 1) {
				i8TableOf(jobs[j].w, jobs[j].bits)
			}
		}()
	}
	wg.Wait()
}
