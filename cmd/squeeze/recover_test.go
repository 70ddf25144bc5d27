package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/formats/bundle"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/runtime"
)

var (
	recoverOnce    sync.Once
	recoverDir     string
	recoverErr     error
	recoverBundle  string // palettized stories260K, no adapters
	recoverTwoSets string // the same with sets "a" and "b"
	recoverCalib   string // the first 8 KB of calib.txt
)

// recoverFixtures builds (once per test binary) a quickly palettized
// stories260K bundle (every linear 2-bit, one LUT per tensor), a short
// calibration text, and a copy of the bundle with two adapter sets trained
// by squeeze recover for a few steps.
func recoverFixtures(t *testing.T) {
	t.Helper()
	recoverOnce.Do(func() {
		recoverDir, recoverErr = os.MkdirTemp("", "squeeze-recover-test")
		if recoverErr != nil {
			return
		}
		m, err := formats.Load(stories, formats.LoadOptions{})
		if err != nil {
			recoverErr = err
			return
		}
		defer m.Close()
		pm := *m
		pm.Tensors = map[string]*ir.Tensor{}
		for name, t := range m.Tensors {
			pm.Tensors[name] = t
		}
		for l := 0; l < m.Config.Layers; l++ {
			for _, k := range ir.LinearKinds {
				name := ir.Blk(l, k)
				q, _, err := palettize.PalettizeTensor(m.Tensors[name], palettize.Options{Bits: 2, Workers: 1})
				if err != nil {
					recoverErr = err
					return
				}
				pm.Tensors[name] = q
			}
		}
		recoverBundle = filepath.Join(recoverDir, "base.sqz")
		if _, err := bundle.Write(recoverBundle, &pm, bundle.Extra{SqueezeVersion: version, Source: "stories260K.bin"}); err != nil {
			recoverErr = err
			return
		}
		text, err := os.ReadFile("../../testdata/tinystories/calib.txt")
		if err != nil {
			recoverErr = err
			return
		}
		recoverCalib = filepath.Join(recoverDir, "calib.txt")
		if recoverErr = os.WriteFile(recoverCalib, text[:8<<10], 0o644); recoverErr != nil {
			return
		}
		recoverTwoSets = filepath.Join(recoverDir, "two.sqz")
		for i, name := range []string{"a", "b"} {
			in := recoverBundle
			if i > 0 {
				in = recoverTwoSets
			}
			var out, errb strings.Builder
			root := newRootCmd(&out, &errb)
			root.SetArgs([]string{"recover", in, "--original", stories, "--calib", recoverCalib, "--steps", "2", "--batch", "2",
				"--seq-len", "32", "--rank", "2", "--name", name, "--seed", string(rune('1' + i)), "-o", recoverTwoSets})
			if recoverErr = root.Execute(); recoverErr != nil {
				return
			}
		}
	})
	if recoverErr != nil {
		t.Fatal(recoverErr)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if recoverDir != "" {
		os.RemoveAll(recoverDir)
	}
	os.Exit(code)
}

// TestRecoverJSONAndBudget: recover writes the set, picks the rank the
// budget allows (the --rank cap otherwise), and reports its figures.
func TestRecoverJSONAndBudget(t *testing.T) {
	recoverFixtures(t)
	out := filepath.Join(t.TempDir(), "r.sqz")
	st, _ := os.Stat(recoverBundle)
	base, _, err := bundle.Load(recoverBundle, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	// A budget for 3.5 x the rank-1 bytes: rank 3, the largest that fits.
	perRank := int64(0)
	for l := 0; l < base.Config.Layers; l++ {
		for _, k := range ir.LinearKinds {
			w := base.Tensors[ir.Blk(l, k)]
			perRank += 2 * int64(w.Rows()+w.Cols())
		}
	}
	var names []string
	for l := 0; l < base.Config.Layers; l++ {
		for _, k := range ir.LinearKinds {
			names = append(names, ir.Blk(l, k))
		}
	}
	ins, outs := make([]int, len(names)), make([]int, len(names))
	for i, n := range names {
		ins[i], outs[i] = base.Tensors[n].Cols(), base.Tensors[n].Rows()
	}
	threes := make([]int, len(names))
	for i := range threes {
		threes[i] = 3
	}
	over := bundle.AdapterSetOverhead(defaultRecoverName, names, ins, outs, threes, st.Size())
	budget := (3.5*float64(perRank) + float64(over)) / float64(st.Size())
	wantRank := 3
	stdout, stderr, err := squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--steps", "3",
		"--batch", "2", "--seq-len", "32", "--adapter-budget", fmt.Sprint(budget), "--rank", "64", "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("recover --json: %v\n%s", err, stdout)
	}
	if r.Rank != wantRank || r.Targets != 35 || r.Steps != 3 || r.Name != defaultRecoverName {
		t.Errorf("rank %d targets %d steps %d name %q; want rank %d (budget), 35 targets, 3 steps, %q", r.Rank, r.Targets, r.Steps, r.Name, wantRank, defaultRecoverName)
	}
	if !strings.Contains(stderr, "largest whose float16 adapters and") {
		t.Errorf("stderr does not say why rank %d: %q", r.Rank, stderr)
	}
	if r.AdapterBytes != int64(wantRank)*perRank || r.AdapterBytes > int64(budget*float64(st.Size())) {
		t.Errorf("adapter bytes %d, want %d (<= %g x %d)", r.AdapterBytes, int64(wantRank)*perRank, budget, st.Size())
	}
	if want := 8 * float64(r.AdapterBytes) / float64(palettizedWeights(base)); r.AdapterBPW != want {
		t.Errorf("adapter_bpw %v, want %v", r.AdapterBPW, want)
	}
	if !(r.HeldOutKLBefore > 0) || !(r.HeldOutKLAfter <= r.HeldOutKLInit) || r.Seconds <= 0 {
		t.Errorf("held-out KL before %v init %v after %v, seconds %v", r.HeldOutKLBefore, r.HeldOutKLInit, r.HeldOutKLAfter, r.Seconds)
	}
	// The budget holds for the file, manifest and padding included.
	if so, _ := os.Stat(out); so.Size()-st.Size() > int64(budget*float64(st.Size())) {
		t.Errorf("the bundle grew by %d bytes, over the budget of %g x %d", so.Size()-st.Size(), budget, st.Size())
	}
	m, _, err := bundle.Load(out, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.AdapterSets) != 1 || m.AdapterSets[0].Name != defaultRecoverName || m.AdapterSets[0].BaseSHA256 != base.Meta["base_sha256"] {
		t.Fatalf("written sets: %+v (base %s)", m.AdapterSets, base.Meta["base_sha256"])
	}
	if a := m.AdapterSets[0].Adapters["blk.1.ffn_down"]; a == nil || a.Rank != wantRank || a.In != 172 || a.Out != 64 {
		t.Fatalf("adapter blk.1.ffn_down: %+v", a)
	}
	// No budget: the --rank cap.
	stdout, _, err = squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--steps", "1",
		"--batch", "1", "--seq-len", "32", "--adapter-budget", "0", "--rank", "3", "--lora-targets", "o,blk.2.ffn_up", "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Rank != 3 || r.Targets != 6 {
		t.Errorf("no budget: rank %d on %d targets, want 3 on 6 (5 attn_output + blk.2.ffn_up)", r.Rank, r.Targets)
	}
}

// TestRecoverLoraRanks: --lora-ranks fixes the rank of the targets it
// names (a tensor name over its kind), their bytes are paid from the
// budget first, the other targets get the largest rank left, the file
// stays within the budget, and malformed or unknown entries are refused.
func TestRecoverLoraRanks(t *testing.T) {
	recoverFixtures(t)
	out := filepath.Join(t.TempDir(), "r.sqz")
	st, _ := os.Stat(recoverBundle)
	// 10% of the fixture bundle: rank 1 everywhere fits; with attn_q at 3
	// and blk.4.attn_q at 2 the rest still get rank 1.
	stdout, stderr, err := squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--steps", "2",
		"--batch", "1", "--seq-len", "32", "--rank", "64", "--lora-ranks", "q=3, blk.4.attn_q=2", "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("recover --json: %v\n%s", err, stdout)
	}
	if r.Rank < 1 || r.Ranks[ir.AttnQ] != 3 || r.Ranks["blk.4.attn_q"] != 2 || len(r.Ranks) != 2 || r.Targets != 35 {
		t.Fatalf("rank %d ranks %v targets %d", r.Rank, r.Ranks, r.Targets)
	}
	if so, _ := os.Stat(out); so.Size()-st.Size() > st.Size()/10 {
		t.Errorf("the bundle grew by %d bytes, over 10%% of %d", so.Size()-st.Size(), st.Size())
	}
	m, _, err := bundle.Load(out, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var bytes int64
	for name, a := range m.AdapterSets[0].Adapters {
		want := r.Rank
		switch {
		case name == "blk.4.attn_q":
			want = 2
		case strings.HasSuffix(name, ".attn_q"):
			want = 3
		}
		if a.Rank != want || len(a.A) != want*a.In || len(a.B) != a.Out*want {
			t.Errorf("%s: rank %d (A %d, B %d values), want rank %d", name, a.Rank, len(a.A), len(a.B), want)
		}
		bytes += 2 * int64(len(a.A)+len(a.B))
	}
	if bytes != r.AdapterBytes {
		t.Errorf("adapter bytes %d in the bundle, %d reported", bytes, r.AdapterBytes)
	}
	if !strings.Contains(stderr, "rank") {
		t.Errorf("stderr does not report the rank choice: %q", stderr)
	}
	// Every target given: no budgeted rank to report.
	_, stderr, err = squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--steps", "1",
		"--batch", "1", "--seq-len", "32", "--lora-targets", "q,blk.1.ffn_up", "--lora-ranks", "q=2,blk.1.ffn_up=3", "-o", out)
	if err != nil || !strings.Contains(stderr, "every target has its --lora-ranks rank") {
		t.Errorf("all ranks given: %v, stderr %q", err, stderr)
	}
	for _, tc := range []struct{ ranks, want string }{
		{"q=0", "TARGET=RANK"},
		{"q", "TARGET=RANK"},
		{"q=2,attn_q=3", "given twice"},
		{"blk.9.attn_q=2", "not one of the adapted linears"},
		{"q=65", "outside 1..min(out, in)"},
		{"q=2,k=64,v=64,o=64,gate=64", "budget"},
	} {
		_, _, err := squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--steps", "1",
			"--batch", "1", "--seq-len", "32", "--lora-ranks", tc.ranks, "-o", out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--lora-ranks %s: %v, want an error with %q", tc.ranks, err, tc.want)
		}
	}
}

// TestRecoverReplacesInPlace: without -o the bundle is rewritten; a set of
// the same name is replaced, others kept; the base is untouched.
func TestRecoverReplacesInPlace(t *testing.T) {
	recoverFixtures(t)
	path := filepath.Join(t.TempDir(), "two.sqz")
	data, _ := os.ReadFile(recoverTwoSets)
	os.WriteFile(path, data, 0o644)
	before, _, err := bundle.Load(path, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	aBefore := before.AdapterSets[0].Adapters["blk.0.attn_q"].B[0]
	baseSHA := before.Meta["base_sha256"]
	before.Close()
	stdout, _, err := squeeze(t, "recover", path, "--original", stories, "--calib", recoverCalib, "--steps", "2", "--batch", "2",
		"--seq-len", "32", "--rank", "1", "--name", "a", "--seed", "9", "--json")
	if err != nil {
		t.Fatal(err)
	}
	// the budget's base is the bundle without either set: their matrices,
	// manifest entries and padding
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	plain, err := os.Stat(recoverBundle)
	if err != nil {
		t.Fatal(err)
	}
	if r.BaseBytes != plain.Size() {
		t.Errorf("base bytes %d with two sets stored, want the set-less bundle's %d", r.BaseBytes, plain.Size())
	}
	m, man, err := bundle.Load(path, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var names []string
	for _, s := range m.AdapterSets {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "b,a" {
		t.Fatalf("sets after replacing a: %v, want [b a]", names)
	}
	a := m.AdapterSets[1].Adapters["blk.0.attn_q"]
	if a.Rank != 1 || a.B[0] == aBefore {
		t.Errorf("set a not replaced: rank %d", a.Rank)
	}
	if m.Meta["base_sha256"] != baseSHA || man.Source != "stories260K.bin" || man.SqueezeVersion != version {
		t.Errorf("base %s (was %s), source %q, version %q", m.Meta["base_sha256"], baseSHA, man.Source, man.SqueezeVersion)
	}
}

// TestAdapterSelection: a bundle with two sets runs either on request
// (run and eval), "none" and "" run the base, an unknown name lists the
// sets.
func TestAdapterSelection(t *testing.T) {
	recoverFixtures(t)
	ppl := func(adapter string) float64 {
		t.Helper()
		args := []string{"eval", recoverTwoSets, "--text", recoverCalib, "--ctx", "64", "--max-windows", "3", "--json"}
		if adapter != "" {
			args = append(args, "--adapter", adapter)
		}
		out, _, err := squeeze(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r["ppl"].(float64)
	}
	pNone, pEmpty, pA, pB := ppl("none"), ppl(""), ppl("a"), ppl("b")
	t.Logf("ppl: none %.4f, a %.4f, b %.4f", pNone, pA, pB)
	if pNone != pEmpty || pA == pNone || pB == pNone || pA == pB {
		t.Fatalf("ppl none %v, default %v, a %v, b %v: want none = default, a and b distinct from both", pNone, pEmpty, pA, pB)
	}
	// eval --adapter a is the runtime with set a applied.
	m, err := formats.Load(recoverTwoSets, formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rt, err := runtime.New(m, runtime.Options{Threads: 1, Adapters: m.AdapterSets[0]})
	if err != nil {
		t.Fatal(err)
	}
	rt2, _ := runtime.New(m, runtime.Options{Threads: 1})
	if err := selectAdapter(m, rt2, "a"); err != nil {
		t.Fatal(err)
	}
	toks := m.Tokenizer.Encode("Once upon a time", true)
	l1 := make([]float32, m.Config.Vocab)
	l2 := make([]float32, m.Config.Vocab)
	rt.Forward(rt.NewState(16), toks, l1, false)
	rt2.Forward(rt2.NewState(16), toks, l2, false)
	for i := range l1 {
		if l1[i] != l2[i] {
			t.Fatalf("logit %d: %v with Options.Adapters, %v via selectAdapter", i, l1[i], l2[i])
		}
	}
	for _, ad := range []string{"a", "b", "none"} {
		out, _, err := squeeze(t, "run", recoverTwoSets, "--prompt", "Once upon a time", "-n", "8", "--temp", "0", "--adapter", ad)
		if err != nil || !strings.HasPrefix(out, "Once upon a time") {
			t.Fatalf("run --adapter %s: %q, %v", ad, out, err)
		}
	}
	for _, args := range [][]string{{"run", "--prompt", "x"}, {"eval", "--text", recoverCalib}} {
		_, _, err := squeeze(t, append(args, recoverTwoSets, "--adapter", "c")...)
		if err == nil || !strings.Contains(err.Error(), "available: a, b") {
			t.Errorf("%s --adapter c: %v, want an error listing a, b", args[0], err)
		}
	}
	if _, _, err := squeeze(t, "run", recoverBundle, "--prompt", "x", "--adapter", "a"); err == nil || !strings.Contains(err.Error(), "no adapter sets") {
		t.Errorf("run --adapter a on a bundle without sets: %v", err)
	}
}

// tamperSetBase rewrites set i's base_sha256 in a bundle's manifest (and
// the header's manifest checksum, so the file still loads).
func tamperSetBase(t *testing.T, src, dst string, i int, sha string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	mo, ml := binary.LittleEndian.Uint64(data[8:]), binary.LittleEndian.Uint64(data[16:])
	var man bundle.Manifest
	if err := json.Unmarshal(data[mo:mo+ml], &man); err != nil {
		t.Fatal(err)
	}
	man.Adapters[i].BaseSHA256 = sha
	mj, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	out := append(append([]byte(nil), data[:mo]...), mj...)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(mj)))
	sum := sha256.Sum256(mj)
	copy(out[24:56], sum[:])
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAdapterRefused: a set whose base checksum is not the bundle's, or
// whose shapes do not fit, is refused with a clear error; the other set
// still runs.
func TestAdapterRefused(t *testing.T) {
	recoverFixtures(t)
	bad := filepath.Join(t.TempDir(), "tampered.sqz")
	tamperSetBase(t, recoverTwoSets, bad, 1, strings.Repeat("ab", 32))
	_, _, err := squeeze(t, "eval", bad, "--text", recoverCalib, "--ctx", "64", "--max-windows", "1", "--adapter", "b")
	if err == nil || !strings.Contains(err.Error(), "trained on base abababababababab") {
		t.Fatalf("eval --adapter b on a tampered base hash: %v", err)
	}
	if _, _, err := squeeze(t, "run", bad, "--prompt", "x", "-n", "2", "--adapter", "b"); err == nil {
		t.Fatal("run --adapter b on a tampered base hash: no error")
	}
	if _, _, err := squeeze(t, "eval", bad, "--text", recoverCalib, "--ctx", "64", "--max-windows", "1", "--adapter", "a"); err != nil {
		t.Fatalf("eval --adapter a (untampered) : %v", err)
	}

	m, err := formats.Load(recoverTwoSets, formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rt, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Wrong shapes: set a with one adapter transposed.
	good := m.AdapterSets[0]
	wrong := &ir.AdapterSet{Name: "wrong", BaseSHA256: good.BaseSHA256, Adapters: map[string]*ir.Adapter{}}
	for n, a := range good.Adapters {
		wrong.Adapters[n] = a
	}
	a := *good.Adapters["blk.3.ffn_down"]
	a.In, a.Out = a.Out, a.In
	a.A, a.B = make([]float32, a.Rank*a.In), make([]float32, a.Out*a.Rank)
	wrong.Adapters["blk.3.ffn_down"] = &a
	m.AdapterSets = append(m.AdapterSets, wrong)
	if err := selectAdapter(m, rt, "wrong"); err == nil || !strings.Contains(err.Error(), "blk.3.ffn_down") {
		t.Fatalf("wrong shapes: %v", err)
	}
	// No base checksum on the model: nothing to check against.
	meta := m.Meta
	m.Meta = map[string]string{}
	if err := selectAdapter(m, rt, "a"); err == nil || !strings.Contains(err.Error(), "no base checksum") {
		t.Fatalf("no base checksum: %v", err)
	}
	m.Meta = meta
	if err := selectAdapter(m, rt, "a"); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverErrors(t *testing.T) {
	recoverFixtures(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"recover", recoverBundle, "--calib", recoverCalib}, "--original"},
		{[]string{"recover", recoverBundle, "--original", stories}, "--calib"},
		{[]string{"recover", recoverBundle, "--original", recoverBundle, "--calib", recoverCalib}, "compiled bundle"},
		{[]string{"recover", stories, "--original", stories, "--calib", recoverCalib}, "magic"},
		{[]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--name", "none"}, "--name"},
		{[]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--lora-targets", "q,foo"}, "foo"},
		{[]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--adapter-budget", "0.0001"}, "does not fit rank-1"},
		{[]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--lora-init", "gauss"}, "--lora-init \"gauss\""},
	} {
		_, _, err := squeeze(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args[2:], err, tc.want)
		}
	}
	orig, err := formats.Load(stories, formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	base, _, err := bundle.Load(recoverBundle, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	other := *orig
	other.Config.FFN = 171
	if _, _, err := recoverAdapters(&other, base, []byte("Once upon a time"), recoverConfig{}); err == nil || !strings.Contains(err.Error(), "not the model") {
		t.Errorf("original of another shape: %v", err)
	}
}

// TestRecoverTuneLUTs: --tune-luts --rank 0 rewrites the palettes only
// (same indices, same file size, new base checksum, the old adapter sets
// dropped); with adapters, the set is trained on (and accepted by) the tuned
// base.
func TestRecoverTuneLUTs(t *testing.T) {
	recoverFixtures(t)
	dir := t.TempDir()
	tuned := filepath.Join(dir, "t.sqz")
	stdout, stderr, err := squeeze(t, "recover", recoverTwoSets, "--original", stories, "--calib", recoverCalib, "--tune-luts",
		"--tune-steps", "6", "--tune-lr", "2e-2", "--batch", "2", "--seq-len", "32", "--rank", "0", "-o", tuned, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("recover --json: %v\n%s", err, stdout)
	}
	if r.Tune == nil || r.Tune.Steps != 6 || r.Tune.Tensors != 35 || r.Tune.LUTEntries == 0 || r.Rank != 0 || r.AdapterBytes != 0 {
		t.Fatalf("result %+v, tune %+v", r, r.Tune)
	}
	if !(r.Tune.HeldOutKLAfter <= r.Tune.HeldOutKLBefore) || !(r.Tune.HeldOutKLBefore > 0) {
		t.Errorf("held-out KL %v -> %v", r.Tune.HeldOutKLBefore, r.Tune.HeldOutKLAfter)
	}
	if strings.Join(r.DroppedSets, ",") != "a,b" || !strings.Contains(stderr, "dropping adapter sets a, b") {
		t.Errorf("dropped %v; stderr %q", r.DroppedSets, stderr)
	}
	base, _, err := bundle.Load(recoverBundle, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	m, _, err := bundle.Load(tuned, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.AdapterSets) != 0 || m.Meta["base_sha256"] == base.Meta["base_sha256"] || m.Meta["base_sha256"] != r.BaseSHA256 {
		t.Errorf("sets %d, base %s (was %s, reported %s)", len(m.AdapterSets), m.Meta["base_sha256"], base.Meta["base_sha256"], r.BaseSHA256)
	}
	st, _ := os.Stat(recoverBundle)
	if r.BundleBytes != st.Size() {
		t.Errorf("tuned bundle %d bytes, base %d: tuning must not change the size", r.BundleBytes, st.Size())
	}
	changed := 0
	for name, bt := range base.Tensors {
		mt := m.Tensors[name]
		if string(bt.Data) != string(mt.Data) {
			t.Fatalf("%s: data (indices) changed", name)
		}
		if bt.Pal != nil && fmt.Sprint(bt.Pal.LUT) != fmt.Sprint(mt.Pal.LUT) {
			changed++
		}
	}
	if changed < 30 {
		t.Errorf("%d of 35 LUTs changed", changed)
	}
	// --ce-weight reaches palette tuning too: the same run with it lands
	// elsewhere.
	stdout, _, err = squeeze(t, "recover", recoverTwoSets, "--original", stories, "--calib", recoverCalib, "--tune-luts",
		"--tune-steps", "6", "--tune-lr", "2e-2", "--batch", "2", "--seq-len", "32", "--rank", "0", "--ce-weight", "1", "-o", filepath.Join(dir, "ce.sqz"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rce recoverResult
	if err := json.Unmarshal([]byte(stdout), &rce); err != nil {
		t.Fatal(err)
	}
	if rce.Tune == nil || rce.Tune.HeldOutKLAfter == r.Tune.HeldOutKLAfter {
		t.Errorf("--ce-weight 1 gave held-out KL %v, the same as without", rce.Tune.HeldOutKLAfter)
	}
	// Tuning then adapters: the set carries the tuned base's checksum and
	// runs on it.
	both := filepath.Join(dir, "tr.sqz")
	stdout, _, err = squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--tune-luts",
		"--tune-steps", "2", "--steps", "2", "--batch", "2", "--seq-len", "32", "--rank", "2", "--adapter-budget", "0", "-o", both, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Tune == nil || r.Rank != 2 {
		t.Fatalf("tune %+v, rank %d", r.Tune, r.Rank)
	}
	if _, _, err := squeeze(t, "eval", both, "--text", recoverCalib, "--ctx", "64", "--max-windows", "1", "--adapter", defaultRecoverName); err != nil {
		t.Fatalf("eval --adapter on the tuned bundle: %v", err)
	}
	for _, args := range [][]string{{"--rank", "0"}, {"--tune-luts", "--tune-steps", "0"}, {"--tune-luts", "--tune-lr", "-1"}} {
		_, _, err := squeeze(t, append([]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib}, args...)...)
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// recover --tune-luts --qat re-assigns indices at zero bytes: same bundle
// size and layout, some indices moved, held-out KL no worse, and --qat
// without --tune-luts or with a bad step is refused. (A large --qat-lr, so
// that 6 steps move latent weights across LUT gaps.)
func TestRecoverQAT(t *testing.T) {
	recoverFixtures(t)
	out := filepath.Join(t.TempDir(), "q.sqz")
	stdout, _, err := squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--tune-luts", "--qat",
		"--qat-lr", "0.2", "--tune-steps", "6", "--batch", "2", "--seq-len", "32", "--rank", "0", "--sample-tokens", "400", "-o", out, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("recover --json: %v\n%s", err, stdout)
	}
	if r.SampledTokens < 400 {
		t.Errorf("--sample-tokens 400: %d sampled tokens reported", r.SampledTokens)
	}
	if r.Tune == nil || r.Tune.QAT == nil || r.Tune.QAT.Weights == 0 {
		t.Fatalf("tune %+v: no QAT report", r.Tune)
	}
	if !(r.Tune.HeldOutKLAfter <= r.Tune.HeldOutKLBefore) {
		t.Errorf("held-out KL %v -> %v", r.Tune.HeldOutKLBefore, r.Tune.HeldOutKLAfter)
	}
	st, _ := os.Stat(recoverBundle)
	if r.BundleBytes != st.Size() {
		t.Errorf("QAT bundle %d bytes, base %d: QAT must not change the size", r.BundleBytes, st.Size())
	}
	base, _, err := bundle.Load(recoverBundle, bundle.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	m, _, err := bundle.Load(out, bundle.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	moved := 0
	for name, bt := range base.Tensors {
		mt := m.Tensors[name]
		if bt.Type != mt.Type || fmt.Sprint(bt.Shape) != fmt.Sprint(mt.Shape) || len(bt.Data) != len(mt.Data) {
			t.Fatalf("%s: layout changed: %s %v -> %s %v", name, ir.Encodings[bt.Type].Name, bt.Shape, ir.Encodings[mt.Type].Name, mt.Shape)
		}
		if bt.Pal != nil && string(bt.Data) != string(mt.Data) {
			moved++
		}
	}
	t.Logf("best step %d, %d tensors moved, %d indices", r.Tune.BestStep, moved, r.Tune.QAT.IndicesChanged)
	if r.Tune.BestStep > 0 && (moved == 0 || r.Tune.QAT.IndicesChanged == 0) {
		t.Errorf("best step %d but %d tensors' indices moved (%d indices reported)", r.Tune.BestStep, moved, r.Tune.QAT.IndicesChanged)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--qat"}, "--tune-luts"},
		{[]string{"--tune-luts", "--qat", "--qat-lr", "0"}, "--qat-lr"},
		{[]string{"--tune-luts", "--qat", "--sample-tokens", "-1"}, "--sample-tokens"},
		{[]string{"--joint", "--qat=false"}, "--joint"},
		{[]string{"--tune-luts", "--qat", "--joint", "--rank", "0"}, "--joint"},
	} {
		args := append([]string{"recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "-o", out}, tc.args...)
		if _, _, err := squeeze(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}

// recover --tune-luts --qat --joint trains the adapters in the QAT run: the
// bundle gains one adapter set within the budget, trained on the bundle's
// own (re-assigned) base, and eval runs it; the held-out KL with the
// adapters is below the QAT-only run's with the same settings.
func TestRecoverJoint(t *testing.T) {
	recoverFixtures(t)
	dir := t.TempDir()
	args := []string{"--original", stories, "--calib", recoverCalib, "--tune-luts", "--qat", "--qat-lr", "0.2", "--tune-steps", "6",
		"--batch", "2", "--seq-len", "32", "--json"}
	run := func(out string, extra ...string) recoverResult {
		return recoverJSON(t, recoverBundle, out, slices.Concat(args, extra)...)
	}
	alone := run(filepath.Join(dir, "q.sqz"), "--rank", "0")
	out := filepath.Join(dir, "j.sqz")
	j := run(out, "--joint", "--rank", "2")
	t.Logf("held-out KL: QAT alone %.4f, joint %.4f (rank %d, %d adapter bytes of %d)", alone.Tune.HeldOutKLAfter, j.HeldOutKLAfter, j.Rank, j.AdapterBytes, j.BaseBytes)
	if j.Rank < 1 || j.Rank > 2 || j.Targets != 35 || j.AdapterBytes == 0 || j.Name != "recover" {
		t.Fatalf("joint result %+v", j)
	}
	if j.AddedBytes > int64(0.1*float64(j.BaseBytes)) {
		t.Errorf("the adapters add %d bytes to %d: over the 10%% budget", j.AddedBytes, j.BaseBytes)
	}
	// the held-out KL with the initial adapters is reported (it read 0 before)
	// and the "without adapters" figure is the base's own (it was the
	// initial adapters' figure, so the two read the same)
	if !(j.HeldOutKLInit > 0) || !(j.HeldOutKLAfter <= j.HeldOutKLInit) || !(j.HeldOutKLInit < j.HeldOutKLBefore) {
		t.Errorf("joint held-out KL without adapters %v, initialised %v, trained %v", j.HeldOutKLBefore, j.HeldOutKLInit, j.HeldOutKLAfter)
	}
	if !(j.HeldOutKLAfter < alone.Tune.HeldOutKLAfter) || j.HeldOutKLAfter != j.Tune.HeldOutKLAfter {
		t.Errorf("joint held-out KL %v (tune %v), QAT alone %v", j.HeldOutKLAfter, j.Tune.HeldOutKLAfter, alone.Tune.HeldOutKLAfter)
	}
	stdout, _, err := squeeze(t, "eval", out, "--ref", stories, "--text", recoverCalib, "--adapter", "recover", "--ctx", "64", "--max-windows", "2", "--json")
	if err != nil {
		t.Fatalf("eval --adapter recover on the joint bundle: %v", err)
	}
	if !strings.Contains(stdout, "kld_mean") {
		t.Errorf("eval output: %s", stdout)
	}
}

// TestJointDefaults: --joint implies --tune-luts --tune-norms --qat and
// the recipe's steps, sampled tokens and adapter lr, but never overrides
// a flag the user gave; without --joint nothing changes.
func TestJointDefaults(t *testing.T) {
	given := map[string]bool{}
	changed := func(n string) bool { return given[n] }
	o := recoverOptions{Joint: true, TuneSteps: defaultTuneSteps, LR: defaultRecoverLR}
	o.jointDefaults(changed)
	if !o.TuneLUTs || !o.TuneNorms || !o.QAT || o.TuneSteps != jointTuneSteps || o.SampleTokens != jointSampleTokens || o.LR != jointLR ||
		o.JointCycles != jointCycles || jointCycles != 2 {
		t.Fatalf("--joint alone: %+v", o)
	}
	given = map[string]bool{"tune-steps": true, "lr": true, "tune-norms": true, "sample-tokens": true, "joint-cycles": true}
	o = recoverOptions{Joint: true, TuneSteps: 50, LR: 0.02, SampleTokens: 0, JointCycles: 1}
	o.jointDefaults(changed)
	if o.TuneSteps != 50 || o.LR != 0.02 || o.TuneNorms || o.SampleTokens != 0 || !o.QAT || !o.TuneLUTs || o.JointCycles != 1 {
		t.Fatalf("--joint with given flags: %+v", o)
	}
	o = recoverOptions{TuneSteps: 50, LR: 0.02, JointCycles: 1}
	o.jointDefaults(func(string) bool { return false })
	if o.TuneLUTs || o.QAT || o.TuneSteps != 50 || o.LR != 0.02 || o.JointCycles != 1 {
		t.Fatalf("without --joint: %+v", o)
	}
}

// TestRecoverJointCycles: --joint-cycles 2 (--joint's default) writes the
// bundle that running recover --joint --joint-cycles 1 twice (the second on the first's output) writes, byte
// for byte, and reports each cycle's held-out KL and the held-out KL of
// the bundle as given.
func TestRecoverJointCycles(t *testing.T) {
	recoverFixtures(t)
	dir := t.TempDir()
	args := []string{"--original", stories, "--calib", recoverCalib, "--joint", "--qat-lr", "0.2", "--tune-steps", "4",
		"--batch", "2", "--seq-len", "32", "--sample-tokens", "0", "--json"}
	run := func(in, out string, extra ...string) recoverResult {
		t.Helper()
		return recoverJSON(t, in, out, slices.Concat(args, extra)...)
	}
	once, twice, cycles := filepath.Join(dir, "1.sqz"), filepath.Join(dir, "2.sqz"), filepath.Join(dir, "c.sqz")
	r1 := run(recoverBundle, once, "--joint-cycles", "1")
	r2 := run(once, twice, "--joint-cycles", "1")
	rc := run(recoverBundle, cycles, "--joint-cycles", "2")
	if !bytes.Equal(mustRead(t, twice), mustRead(t, cycles)) {
		t.Fatal("--joint-cycles 2 wrote a different bundle from two recover --joint runs")
	}
	if len(rc.CycleHeldOutKL) != 2 || rc.CycleHeldOutKL[0] != r1.HeldOutKLAfter || rc.CycleHeldOutKL[1] != r2.HeldOutKLAfter ||
		rc.HeldOutKLAfter != r2.HeldOutKLAfter || rc.HeldOutKLBefore != r1.HeldOutKLBefore {
		t.Errorf("cycles %v, before %v after %v; the two runs: before %v, after %v then %v",
			rc.CycleHeldOutKL, rc.HeldOutKLBefore, rc.HeldOutKLAfter, r1.HeldOutKLBefore, r1.HeldOutKLAfter, r2.HeldOutKLAfter)
	}
	if _, _, err := squeeze(t, "recover", recoverBundle, "--original", stories, "--calib", recoverCalib, "--rank", "1",
		"--joint-cycles", "2", "-o", filepath.Join(dir, "x.sqz")); err == nil || !strings.Contains(err.Error(), "--joint-cycles") {
		t.Errorf("--joint-cycles 2 without --joint: error %v", err)
	}
}

// recoverJSON runs squeeze recover IN -o OUT with args (which include
// --json) and returns its result.
func recoverJSON(t *testing.T, in, out string, args ...string) recoverResult {
	t.Helper()
	stdout, _, err := squeeze(t, append([]string{"recover", in, "-o", out}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var r recoverResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("recover --json: %v\n%s", err, stdout)
	}
	return r
}
