package main

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/runtime"
)

// logitsOf runs a fixed prompt through a model file and returns all logits.
// round16 > 0 first rounds the matrices (2: and the vectors) to float16 in
// memory, as a GGUF (matrices only) or HF (everything) f16 export stores them.
func logitsOf(t *testing.T, path string, round16 int) []float32 {
	t.Helper()
	m, err := formats.Load(path, formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if round16 > 0 {
		for n, tt := range m.Tensors {
			if len(tt.Shape) == 2 || round16 == 2 {
				v := tt.F32()
				b := make([]byte, 2*len(v))
				for i, x := range v {
					h := ir.F32ToF16(x)
					b[2*i], b[2*i+1] = byte(h), byte(h>>8)
				}
				m.Tensors[n] = &ir.Tensor{Name: n, Shape: tt.Shape, Type: ir.F16, Data: b}
			}
		}
	}
	rt, err := runtime.New(m, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	toks := m.Tokenizer.Encode("Once upon a time, there was a little girl named Lily. She loved to play", true)
	out := make([]float32, len(toks)*m.Config.Vocab)
	if err := rt.Forward(rt.NewState(0), toks, out, true); err != nil {
		t.Fatal(err)
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestExportRoundTripLogits(t *testing.T) {
	dir := t.TempDir()
	ref := logitsOf(t, stories, 0)
	refs := map[string][]float32{"gguf": logitsOf(t, stories, 1), "hf": logitsOf(t, stories, 2)}
	cases := []struct {
		format, dtype, path string
		tol                 float64
	}{
		// GGUF keeps llama.cpp's interleaved RoPE layout: identical bits.
		{"gguf", "f32", filepath.Join(dir, "m32.gguf"), 0},
		// HF stores q/k permuted for rotate-half RoPE; the runtime rotates
		// the same pairs and keeps q and k in pair order, so the q.k sums
		// run in the same order: identical bits too.
		{"hf", "f32", filepath.Join(dir, "hf32"), 0},
		// f16 exports are compared with the original rounded to f16 in memory.
		{"gguf", "f16", filepath.Join(dir, "m16.gguf"), 0},
		{"hf", "f16", filepath.Join(dir, "hf16"), 0},
	}
	for _, c := range cases {
		if _, _, err := squeeze(t, "export", stories, "--format", c.format, "--dtype", c.dtype, "-o", c.path); err != nil {
			t.Fatalf("export %s %s: %v", c.format, c.dtype, err)
		}
		got := logitsOf(t, c.path, 0)
		want := ref
		if c.dtype == "f16" {
			want = refs[c.format]
		}
		d := maxAbsDiff(want, got)
		t.Logf("%s %s: max |logit diff| = %.3g", c.format, c.dtype, d)
		if d > c.tol {
			t.Errorf("%s %s round trip: max |logit diff| %.3g > %.3g", c.format, c.dtype, d, c.tol)
		}
	}
}

// The GGUF files llama.cpp's own tools wrote from stories260K run to the
// same logits (f32: bit for bit; Q8_0: within its 8-bit rounding).
func TestLlamaCppGGUFLogits(t *testing.T) {
	ref := logitsOf(t, stories, 0)
	if d := maxAbsDiff(ref, logitsOf(t, "../../testdata/stories260K/gguf/stories260K-f32.gguf", 0)); d != 0 {
		t.Errorf("llama.cpp f32 GGUF: max |logit diff| %.3g, want 0", d)
	}
	q8 := logitsOf(t, "../../testdata/stories260K/gguf/stories260K-Q8_0.gguf", 0)
	if d := maxAbsDiff(ref, q8); d > 0.5 || d == 0 {
		t.Errorf("llama.cpp Q8_0 GGUF: max |logit diff| %.3g, want 8-bit rounding (0 < d < 0.5)", d)
	}
	V := 512
	for p := 0; p < len(ref)/V; p++ {
		if runtime.Argmax(ref[p*V:(p+1)*V]) != runtime.Argmax(q8[p*V:(p+1)*V]) {
			t.Errorf("llama.cpp Q8_0 GGUF: position %d predicts another top token than f32", p)
		}
	}
}
