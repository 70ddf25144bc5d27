package llama2c

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

const dir = "../../testdata/stories260K/"

func TestLoadStories260K(t *testing.T) {
	m, err := Load(dir+"stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := m.Config
	if c.Dim != 64 || c.Layers != 5 || c.Heads != 8 || c.KVHeads != 4 || c.FFN != 172 || c.Vocab != 512 || c.SeqLen != 512 || !c.TiedEmbed {
		t.Fatalf("config %+v", c)
	}
	if _, ok := m.Tensors[ir.NameOutput]; ok {
		t.Fatal("tied classifier must not be a separate tensor")
	}
	if m.Tokenizer == nil || m.Tokenizer.Size() != 512 || !strings.HasSuffix(m.Meta["tokenizer"], "tok512.bin") {
		t.Fatalf("tokenizer not discovered beside the model: %v", m.Meta)
	}
	// zero copy: tensor data lies inside the mapped file
	raw, _ := os.ReadFile(dir + "stories260K.bin")
	e := m.Tensors[ir.NameTokenEmbd]
	if !bytes.Equal(e.Data[:16], raw[28:44]) {
		t.Fatal("token_embd does not start right after the header")
	}
}

// v1Bytes re-encodes a model in llama2.c's version-1 layout.
func v1Bytes(m *ir.Model) []byte {
	var b bytes.Buffer
	c := m.Config
	hdr := []int32{0x616b3432, 1, int32(c.Dim), int32(c.FFN), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), int32(c.Vocab), int32(c.SeqLen)}
	binary.Write(&b, binary.LittleEndian, hdr)
	b.WriteByte(1)
	b.Write(make([]byte, 256-b.Len()))
	w := func(n string) { b.Write(m.Tensors[n].Data) }
	for _, k := range []string{ir.AttnNorm, ir.FFNNorm} {
		for l := 0; l < c.Layers; l++ {
			w(ir.Blk(l, k))
		}
	}
	w(ir.NameOutputNorm)
	w(ir.NameTokenEmbd)
	for _, k := range []string{ir.AttnQ, ir.AttnK, ir.AttnV, ir.AttnOut, ir.FFNGate, ir.FFNDown, ir.FFNUp} {
		for l := 0; l < c.Layers; l++ {
			w(ir.Blk(l, k))
		}
	}
	return b.Bytes()
}

func TestVersion1And2(t *testing.T) {
	m, err := Load(dir+"stories260K.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	v1, err := Parse("v1.bin", v1Bytes(m))
	if err != nil {
		t.Fatal(err)
	}
	for n, tt := range m.Tensors {
		if !bytes.Equal(tt.Data, v1.Tensors[n].Data) {
			t.Fatalf("v1: tensor %s differs", n)
		}
	}
	// version 2: int8 with group-size-64 float32 scales, norms in float32
	var b bytes.Buffer
	c := m.Config
	binary.Write(&b, binary.LittleEndian, []int32{0x616b3432, 2, int32(c.Dim), int32(c.FFN), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), int32(c.Vocab), int32(c.SeqLen)})
	b.WriteByte(1)
	binary.Write(&b, binary.LittleEndian, int32(64))
	b.Write(make([]byte, 256-b.Len()))
	for _, k := range []string{ir.AttnNorm, ir.FFNNorm} {
		for l := 0; l < c.Layers; l++ {
			b.Write(m.Tensors[ir.Blk(l, k)].Data)
		}
	}
	b.Write(m.Tensors[ir.NameOutputNorm].Data)
	q := func(n string) {
		v := m.Tensors[n].F32()
		qs := make([]byte, len(v))
		var sc []float32
		for g := 0; g < len(v); g += 64 {
			mx := float32(0)
			for _, x := range v[g : g+64] {
				mx = max(mx, float32(math.Abs(float64(x))))
			}
			s := mx / 127
			sc = append(sc, s)
			for i, x := range v[g : g+64] {
				qs[g+i] = byte(int8(math.Round(float64(x / s))))
			}
		}
		b.Write(qs)
		binary.Write(&b, binary.LittleEndian, sc)
	}
	q(ir.NameTokenEmbd)
	for _, k := range []string{ir.AttnQ, ir.AttnK, ir.AttnV, ir.AttnOut, ir.FFNGate, ir.FFNDown, ir.FFNUp} {
		for l := 0; l < c.Layers; l++ {
			q(ir.Blk(l, k))
		}
	}
	v2, err := Parse("v2.bin", b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for n, tt := range m.Tensors {
		a, bb := tt.F32(), v2.Tensors[n].F32()
		for i := range a {
			if d := math.Abs(float64(a[i] - bb[i])); d > 0.02 {
				t.Fatalf("v2 tensor %s[%d]: %g vs %g", n, i, bb[i], a[i])
			}
		}
	}
}

func TestCorruptInputs(t *testing.T) {
	raw, err := os.ReadFile(dir + "stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 3, 27, 28, 100, 4096, len(raw) / 2, len(raw) - 1} {
		if _, err := Parse("cut.bin", raw[:cut]); err == nil || !strings.Contains(err.Error(), "cut.bin") {
			t.Errorf("truncated at %d: error %v", cut, err)
		}
	}
	huge := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(huge[0:], 1<<30) // dim
	if _, err := Parse("huge.bin", huge); err == nil {
		t.Error("dim 2^30 accepted")
	}
	nan := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(nan[28+400:], math.Float32bits(float32(math.NaN())))
	if _, err := Parse("nan.bin", nan); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("NaN weight: %v", err)
	}
	tok, _ := os.ReadFile(dir + "tok512.bin")
	for _, cut := range []int{0, 2, 10, len(tok) / 2, len(tok) - 1} {
		if _, err := ParseTokenizer("tok.bin", tok[:cut], 512); err == nil {
			t.Errorf("tokenizer truncated at %d accepted", cut)
		}
	}
	if _, err := ParseTokenizer("tok.bin", tok, 1<<40); err == nil {
		t.Error("vocab 2^40 accepted")
	}
}

func TestTokenizerRoundTrip(t *testing.T) {
	for _, c := range []struct {
		path  string
		vocab int
	}{{dir + "tok512.bin", 512}, {"../../testdata/llama2-tokenizer/tokenizer.bin", 32000}} {
		tok, err := LoadTokenizer(c.path, c.vocab)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := os.ReadFile("../../testdata/tinystories/dev.txt")
		s := string(text[:20000]) + " héllo wörld ✓ 日本語\n\n\ttabs  and   spaces"
		ids := tok.Encode(s, true)
		if got := tok.Decode(ids[1:]); got != s {
			t.Fatalf("%s: round trip changed the text (%d vs %d bytes)", c.path, len(got), len(s))
		}
	}
	tok, _ := LoadTokenizer("../../testdata/llama2-tokenizer/tokenizer.bin", 32000)
	// SentencePiece reference ids for the Llama-2 vocabulary.
	if got := tok.Encode("Hello world", true); !eq(got, []int{1, 15043, 3186}) {
		t.Errorf("Llama-2 'Hello world' = %v, want [1 15043 3186]", got)
	}
}

func eq(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParse(f *testing.F) {
	raw, err := os.ReadFile(dir + "stories260K.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw[:300])
	f.Add(raw[:28])
	small := make([]byte, 28)
	binary.LittleEndian.PutUint32(small[0:], 8)
	f.Add(small)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.bin", data)
		if err == nil {
			if verr := m.Validate(); verr != nil {
				t.Fatalf("Parse accepted an invalid model: %v", verr)
			}
		}
		_, _ = ParseTokenizer("fuzz.tok", data, 16)
	})
}
