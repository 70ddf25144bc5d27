package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"unsafe"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// Magic starts every bundle.
const Magic = "SQZB"

// Version is the bundle format version this code writes and reads.
const Version = 1

const (
	headerSize = 64
	align      = 64
)

// Section is one aligned byte range of the bundle.
type Section struct {
	Name   string `json:"name"`
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// TensorEntry describes one tensor and where its bytes are.
type TensorEntry struct {
	Name      string `json:"name"`
	Shape     []int  `json:"shape"`
	Type      string `json:"type"` // encoding name: f32, f16, bf16, q8_0, lut1..lut8, lutmix
	Data      int    `json:"data"` // section index (-1 for lutmix: the data is in the parts)
	GroupSize int    `json:"group_size,omitempty"`
	LUT       int    `json:"lut,omitempty"`    // section index of the float16 LUTs (palettized)
	Scales    int    `json:"scales,omitempty"` // section index of float16 row scales, 0 = none
	// ScaleCodes is the section index of one-byte row scale codes
	// (ir.ScaleCode), 0 = none; a tensor has Scales or ScaleCodes.
	ScaleCodes int `json:"scale_codes,omitempty"`
	// Parts (lutmix only) are the row parts top to bottom. Their packed
	// indices, LUTs and scales are concatenated in part order in the
	// tensor's Data, LUT and Scales sections (Scales holding only the
	// parts that have scales); each part's share follows from its rows,
	// width and group size, and every share of Data is a whole number of
	// 16-byte index blocks.
	Parts []PartEntry `json:"parts,omitempty"`
}

// PartEntry is one row part of a lutmix tensor.
type PartEntry struct {
	Rows       int    `json:"rows"`
	Type       string `json:"type"` // lut1..lut8
	GroupSize  int    `json:"group_size"`
	Scales     bool   `json:"scales,omitempty"`      // float16 row scales (in the Scales section)
	ScaleCodes bool   `json:"scale_codes,omitempty"` // one-byte scale codes (in the ScaleCodes section)
}

// TokenizerEntry is the vocabulary, embedded in the manifest.
type TokenizerEntry struct {
	Kind           string    `json:"kind"` // "spm" or "bpe"
	Tokens         []string  `json:"tokens"`
	Scores         []float32 `json:"scores,omitempty"`
	Types          []int32   `json:"types"`
	Merges         []string  `json:"merges,omitempty"`
	BOS            int       `json:"bos"`
	EOS            int       `json:"eos"`
	UNK            int       `json:"unk"`
	AddSpacePrefix bool      `json:"add_space_prefix"`
}

// AdapterEntry is one LoRA adapter: A (rank x in) then B (out x rank),
// float16, at byte offsets A and B of its set's section.
type AdapterEntry struct {
	Target string  `json:"target"`
	Rank   int     `json:"rank"`
	In     int     `json:"in"`
	Out    int     `json:"out"`
	Scale  float32 `json:"scale"`
	A      int64   `json:"a_offset"`
	B      int64   `json:"b_offset"`
}

// AdapterSetEntry is a named adapter set; all its matrices share one
// section (per-matrix sections would cost alignment and manifest bytes that
// matter next to adapters of a few kilobytes).
type AdapterSetEntry struct {
	Name       string         `json:"name"`
	BaseSHA256 string         `json:"base_sha256"`
	Section    int            `json:"section"`
	Adapters   []AdapterEntry `json:"adapters"`
}

// AdapterSetOverhead bounds the bytes an adapter set named name adds to a
// bundle of about fileSize bytes beyond its float16 matrices: its manifest
// entries, its section's entry in the table of contents and the alignment
// padding, for adapters of rank ranks[i] on the given target tensors
// (in[i] x out[i]).
// Adapter budgets count it, so that "adapters add at most X% to the bundle"
// holds for the file, not only for the matrices. It is exact but for the
// scale (taken at its widest float32 spelling) and the padding (taken whole).
func AdapterSetOverhead(name string, targets []string, in, out, ranks []int, fileSize int64) int64 {
	se := AdapterSetEntry{Name: name, BaseSHA256: strings.Repeat("0", 64), Section: 1 << 20}
	var off int64
	for i, t := range targets {
		a := 2 * int64(ranks[i]*in[i])
		se.Adapters = append(se.Adapters, AdapterEntry{Target: t, Rank: ranks[i], In: in[i], Out: out[i],
			Scale: -1.2345678e-30, A: off, B: off + a})
		off += a + 2*int64(ranks[i]*out[i])
	}
	sec := Section{Name: "adapters." + name, Offset: 10 * fileSize, Size: off, SHA256: strings.Repeat("0", 64)}
	sj, _ := json.Marshal(se)
	cj, _ := json.Marshal(sec)
	// the "adapters":[...] wrapper and commas, and up to align-1 bytes of
	// padding before the section and before the manifest.
	return int64(len(sj)+len(cj)) + int64(len(`,"adapters":[]`)) + 2 + 2*(align-1)
}

// Manifest is the bundle's table of contents.
type Manifest struct {
	Format         string            `json:"format"` // "squeeze-bundle"
	FormatVersion  int               `json:"format_version"`
	SqueezeVersion string            `json:"squeeze_version"`
	Source         string            `json:"source"` // the model it was compiled from (base name)
	Config         ir.Config         `json:"config"`
	Tokenizer      *TokenizerEntry   `json:"tokenizer,omitempty"`
	Tensors        []TensorEntry     `json:"tensors"`
	Sections       []Section         `json:"sections"`
	BaseSHA256     string            `json:"base_sha256"` // SHA-256 over the base tensors' section hashes
	Plan           json.RawMessage   `json:"plan,omitempty"`
	Calibration    json.RawMessage   `json:"calibration,omitempty"`
	Adapters       []AdapterSetEntry `json:"adapters,omitempty"`
	Extra          map[string]string `json:"extra,omitempty"`
}

// addTensor writes t's sections (data, then LUT and scales when
// palettized; each part's in turn for lutmix) and feeds their hashes to
// base in that order.
func (sw *sectionWriter) addTensor(name string, t *ir.Tensor, base hash.Hash) (TensorEntry, error) {
	e := TensorEntry{Name: name, Shape: t.Shape, Type: ir.Encodings[t.Type].Name}
	// float16 scales are stored unless they are the expansion of codes
	f16Scales := t.Pal != nil && t.Pal.Scales != nil && t.Pal.ScaleCodes == nil
	if t.Type == ir.LUTMIX {
		var data []byte
		var lut, scales []uint16
		var codes []uint8
		for _, p := range t.Parts {
			data = append(data, p.Data...)
			lut = append(lut, p.Pal.LUT...)
			pe := PartEntry{Rows: p.Rows(), Type: ir.Encodings[p.Type].Name, GroupSize: p.Pal.GroupSize}
			switch {
			case p.Pal.ScaleCodes != nil:
				codes = append(codes, p.Pal.ScaleCodes...)
				pe.ScaleCodes = true
			case p.Pal.Scales != nil:
				scales = append(scales, p.Pal.Scales...)
				pe.Scales = true
			}
			e.Parts = append(e.Parts, pe)
		}
		t = &ir.Tensor{Data: data, Pal: &ir.Palette{LUT: lut}}
		if len(scales) > 0 {
			t.Pal.Scales = scales
		}
		f16Scales = len(scales) > 0
		if len(codes) > 0 {
			t.Pal.ScaleCodes = codes
		}
	}
	var err error
	if e.Data, err = sw.add(name, t.Data); err != nil {
		return e, err
	}
	base.Write([]byte(sw.sections[e.Data].SHA256))
	if t.Pal != nil {
		e.GroupSize = t.Pal.GroupSize
		if e.LUT, err = sw.add(name+".lut", u16bytes(t.Pal.LUT)); err != nil {
			return e, err
		}
		base.Write([]byte(sw.sections[e.LUT].SHA256))
		if f16Scales {
			if e.Scales, err = sw.add(name+".scales", u16bytes(t.Pal.Scales)); err != nil {
				return e, err
			}
			base.Write([]byte(sw.sections[e.Scales].SHA256))
		}
		if t.Pal.ScaleCodes != nil {
			if e.ScaleCodes, err = sw.add(name+".scale_codes", t.Pal.ScaleCodes); err != nil {
				return e, err
			}
			base.Write([]byte(sw.sections[e.ScaleCodes].SHA256))
		}
	}
	return e, nil
}

// readParts cuts a lutmix tensor's data (d), LUT and scales sections into
// its parts' views.
func readParts(e TensorEntry, t *ir.Tensor, d []byte, sec func(int, string) ([]byte, error), byName map[string]ir.DType,
	fail func(string, ...any) error) (*ir.Tensor, error) {
	if len(e.Shape) != 2 || len(e.Parts) == 0 {
		return nil, fail("tensor %q: lutmix needs a matrix shape and parts (shape %v, %d parts)", e.Name, e.Shape, len(e.Parts))
	}
	lb, err := sec(e.LUT, "tensor "+e.Name+" LUT")
	if err != nil {
		return nil, err
	}
	lut := u16view(lb)
	var scales []uint16
	if e.Scales > 0 {
		sb, err := sec(e.Scales, "tensor "+e.Name+" scales")
		if err != nil {
			return nil, err
		}
		scales = u16view(sb)
	}
	var codes []uint8
	if e.ScaleCodes > 0 {
		if codes, err = sec(e.ScaleCodes, "tensor "+e.Name+" scale codes"); err != nil {
			return nil, err
		}
	}
	cols := e.Shape[1]
	t.Data = nil
	for i, pe := range e.Parts {
		dt, ok := byName[pe.Type]
		enc := ir.Encodings[dt]
		if !ok || enc.Bits == 0 {
			return nil, fail("tensor %q part %d: encoding %q, expected lut1..lut8", e.Name, i, pe.Type)
		}
		if pe.Rows < 1 || pe.GroupSize < 1 || pe.GroupSize > pe.Rows {
			return nil, fail("tensor %q part %d: %d rows, group size %d", e.Name, i, pe.Rows, pe.GroupSize)
		}
		nd := enc.DataBytes(pe.Rows * cols)
		nl := ((pe.Rows + pe.GroupSize - 1) / pe.GroupSize) << enc.Bits
		ns, nc := 0, 0
		if pe.Scales && pe.ScaleCodes {
			return nil, fail("tensor %q part %d: has both scales and scale codes", e.Name, i)
		}
		if pe.Scales {
			ns = pe.Rows
		}
		if pe.ScaleCodes {
			nc = pe.Rows
		}
		if int64(len(d)) < nd || len(lut) < nl || len(scales) < ns || len(codes) < nc {
			return nil, fail("tensor %q part %d: its sections are too short (data %d of %d bytes, LUT %d of %d entries, scales %d of %d, scale codes %d of %d left)",
				e.Name, i, len(d), nd, len(lut), nl, len(scales), ns, len(codes), nc)
		}
		p := &ir.Tensor{Name: fmt.Sprintf("%s#%d", e.Name, i), Shape: []int{pe.Rows, cols}, Type: dt, Data: d[:nd:nd],
			Pal: &ir.Palette{GroupSize: pe.GroupSize, LUT: lut[:nl:nl]}}
		if pe.Scales {
			p.Pal.Scales = scales[:ns:ns]
		}
		if pe.ScaleCodes {
			p.Pal.ScaleCodes = codes[:nc:nc]
			p.Pal.ExpandScaleCodes()
		}
		d, lut, scales, codes = d[nd:], lut[nl:], scales[ns:], codes[nc:]
		t.Parts = append(t.Parts, p)
	}
	if len(d) != 0 || len(lut) != 0 || len(scales) != 0 || len(codes) != 0 {
		return nil, fail("tensor %q: %d data bytes, %d LUT entries, %d scales and %d scale codes left over after its parts", e.Name, len(d), len(lut), len(scales), len(codes))
	}
	return t, nil
}

// Extra is what Write stores beside the model.
type Extra struct {
	SqueezeVersion string
	Source         string
	Plan           any // marshalled into the manifest as is
	Calibration    any
	Meta           map[string]string
}

// Info summarises a written bundle.
type Info struct {
	Path       string `json:"path"`
	Bytes      int64  `json:"bytes"`
	BaseSHA256 string `json:"base_sha256"`
}

// sectionWriter streams aligned, hashed sections.
type sectionWriter struct {
	w        io.Writer
	off      int64
	sections []Section
}

func (s *sectionWriter) add(name string, parts ...[]byte) (int, error) {
	if pad := (align - s.off%align) % align; pad > 0 {
		if _, err := s.w.Write(make([]byte, pad)); err != nil {
			return 0, err
		}
		s.off += pad
	}
	h := sha256.New()
	start := s.off
	for _, p := range parts {
		if _, err := s.w.Write(p); err != nil {
			return 0, err
		}
		h.Write(p)
		s.off += int64(len(p))
	}
	s.sections = append(s.sections, Section{Name: name, Offset: start, Size: s.off - start, SHA256: hex.EncodeToString(h.Sum(nil))})
	return len(s.sections) - 1, nil
}

func u16bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func f16bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], ir.F32ToF16(x))
	}
	return b
}

// Write writes m (any mix of encodings) and its adapter sets to path.
func Write(path string, m *ir.Model, ex Extra) (Info, error) {
	if err := m.Validate(); err != nil {
		return Info{}, err
	}
	man := Manifest{Format: "squeeze-bundle", FormatVersion: Version, SqueezeVersion: ex.SqueezeVersion,
		Source: ex.Source, Config: m.Config, Extra: ex.Meta}
	if ex.Plan != nil {
		b, err := json.Marshal(ex.Plan)
		if err != nil {
			return Info{}, fmt.Errorf("bundle: plan: %w", err)
		}
		man.Plan = b
	}
	if ex.Calibration != nil {
		b, err := json.Marshal(ex.Calibration)
		if err != nil {
			return Info{}, fmt.Errorf("bundle: calibration: %w", err)
		}
		man.Calibration = b
	}
	if t := m.Tokenizer; t != nil {
		te := &TokenizerEntry{Kind: t.Kind.String(), Tokens: t.Tokens, Scores: t.Scores, Merges: t.Merges,
			BOS: t.BOS, EOS: t.EOS, UNK: t.UNK, AddSpacePrefix: t.AddSpacePrefix}
		for _, ty := range t.Types {
			te.Types = append(te.Types, int32(ty))
		}
		man.Tokenizer = te
	}
	var info Info
	err := fileio.WriteAtomic(path, func(f *os.File) error {
		if _, err := f.Write(make([]byte, headerSize)); err != nil {
			return err
		}
		sw := &sectionWriter{w: f, off: headerSize}
		base := sha256.New()
		for _, name := range m.TensorNames() {
			e, err := sw.addTensor(name, m.Tensors[name], base)
			if err != nil {
				return err
			}
			man.Tensors = append(man.Tensors, e)
		}
		man.BaseSHA256 = hex.EncodeToString(base.Sum(nil))
		for _, set := range m.AdapterSets {
			se := AdapterSetEntry{Name: set.Name, BaseSHA256: set.BaseSHA256}
			if se.BaseSHA256 == "" {
				se.BaseSHA256 = man.BaseSHA256
			}
			if se.BaseSHA256 != man.BaseSHA256 {
				return fmt.Errorf("bundle: adapter set %q was trained on base %s, this base is %s", set.Name, se.BaseSHA256, man.BaseSHA256)
			}
			targets := make([]string, 0, len(set.Adapters))
			for n := range set.Adapters {
				targets = append(targets, n)
			}
			sort.Strings(targets)
			var parts [][]byte
			var off int64
			for _, n := range targets {
				a := set.Adapters[n]
				ae := AdapterEntry{Target: n, Rank: a.Rank, In: a.In, Out: a.Out, Scale: a.Scale, A: off}
				ab, bb := f16bytes(a.A), f16bytes(a.B)
				ae.B = off + int64(len(ab))
				off += int64(len(ab) + len(bb))
				parts = append(parts, ab, bb)
				se.Adapters = append(se.Adapters, ae)
			}
			var err error
			if se.Section, err = sw.add("adapters."+set.Name, parts...); err != nil {
				return err
			}
			man.Adapters = append(man.Adapters, se)
		}
		man.Sections = sw.sections
		mj, err := json.Marshal(man)
		if err != nil {
			return err
		}
		if pad := (align - sw.off%align) % align; pad > 0 {
			if _, err := f.Write(make([]byte, pad)); err != nil {
				return err
			}
			sw.off += pad
		}
		manOff := sw.off
		if _, err := f.Write(mj); err != nil {
			return err
		}
		hdr := make([]byte, headerSize)
		copy(hdr, Magic)
		binary.LittleEndian.PutUint32(hdr[4:], Version)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(manOff))
		binary.LittleEndian.PutUint64(hdr[16:], uint64(len(mj)))
		sum := sha256.Sum256(mj)
		copy(hdr[24:56], sum[:])
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return err
		}
		info = Info{Path: path, Bytes: manOff + int64(len(mj)), BaseSHA256: man.BaseSHA256}
		return nil
	})
	return info, err
}

// BaseBytes is the size of the file Write would give for this manifest's
// model without its adapter sets: the header, the tensor sections (written
// before any adapter section) and the manifest without the sets' entries.
// It is what an adapter budget is relative to.
func (man *Manifest) BaseBytes() (int64, error) {
	isSet := map[int]bool{}
	for _, se := range man.Adapters {
		isSet[se.Section] = true
	}
	b := *man
	b.Adapters, b.Sections = nil, nil
	end := int64(headerSize)
	for i, s := range man.Sections {
		if isSet[i] {
			continue
		}
		b.Sections = append(b.Sections, s)
		end = max(end, s.Offset+s.Size)
	}
	if len(b.Sections)+len(isSet) != len(man.Sections) {
		return 0, fmt.Errorf("bundle: manifest: adapter sets share or lack sections")
	}
	mj, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	return (end+align-1)/align*align + int64(len(mj)), nil
}

// Sniff reports whether data starts with the bundle magic.
func Sniff(head []byte) bool { return len(head) >= 4 && string(head[:4]) == Magic }

// Options for Load.
type Options struct {
	// Verify checks every section's SHA-256 (reads the whole file).
	Verify bool
}

// Load maps a bundle. Weight sections are used in place (f32 and the
// palettes' float16 tables are views of the mapping); adapters are decoded
// to float32.
func Load(path string, opt Options) (*ir.Model, *Manifest, error) {
	mp, err := fileio.MapFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	m, man, err := Parse(path, mp.Data, opt)
	if err != nil {
		mp.Close()
		return nil, nil, err
	}
	m.AddCloser(mp)
	return m, man, nil
}

// Parse reads a bundle held in data (normally a mapping).
func Parse(name string, data []byte, opt Options) (*ir.Model, *Manifest, error) {
	fail := func(f string, a ...any) error { return fmt.Errorf("bundle: %s: "+f, append([]any{name}, a...)...) }
	if len(data) < headerSize {
		return nil, nil, fail("file is %d bytes, shorter than the %d-byte header", len(data), headerSize)
	}
	if string(data[:4]) != Magic {
		return nil, nil, fail("magic %q, expected %q", data[:4], Magic)
	}
	if v := binary.LittleEndian.Uint32(data[4:]); v != Version {
		return nil, nil, fail("format version %d; this squeeze reads version %d", v, Version)
	}
	mo, ml := binary.LittleEndian.Uint64(data[8:]), binary.LittleEndian.Uint64(data[16:])
	if mo < headerSize || mo > uint64(len(data)) || ml > uint64(len(data))-mo {
		return nil, nil, fail("manifest at byte %d, %d bytes long, file has %d bytes (truncated?)", mo, ml, len(data))
	}
	mj := data[mo : mo+ml]
	if sum := sha256.Sum256(mj); !bytes.Equal(sum[:], data[24:56]) {
		return nil, nil, fail("manifest checksum mismatch (corrupted file)")
	}
	var man Manifest
	if err := json.Unmarshal(mj, &man); err != nil {
		return nil, nil, fail("manifest: %v", err)
	}
	if man.Format != "squeeze-bundle" {
		return nil, nil, fail("manifest format %q, expected squeeze-bundle", man.Format)
	}
	for i, s := range man.Sections {
		if s.Offset < headerSize || s.Offset%align != 0 || s.Size < 0 || s.Offset > int64(mo) || s.Size > int64(mo)-s.Offset {
			return nil, nil, fail("section %d (%q): offset %d size %d outside the data area [64, %d) or unaligned", i, s.Name, s.Offset, s.Size, mo)
		}
		if opt.Verify {
			sum := sha256.Sum256(data[s.Offset : s.Offset+s.Size])
			if hex.EncodeToString(sum[:]) != s.SHA256 {
				return nil, nil, fail("section %d (%q): SHA-256 mismatch (corrupted file)", i, s.Name)
			}
		}
	}
	sec := func(i int, what string) ([]byte, error) {
		if i < 0 || i >= len(man.Sections) {
			return nil, fail("%s: section %d does not exist (%d sections)", what, i, len(man.Sections))
		}
		s := man.Sections[i]
		return data[s.Offset : s.Offset+s.Size : s.Offset+s.Size], nil
	}
	m := &ir.Model{Config: man.Config, Tensors: map[string]*ir.Tensor{}, Format: "bundle", Source: name,
		Meta: map[string]string{"squeeze_version": man.SqueezeVersion, "compiled_from": man.Source, "base_sha256": man.BaseSHA256}}
	if err := m.Config.Validate(); err != nil {
		return nil, nil, fail("%v", err)
	}
	byName := map[string]ir.DType{}
	for dt, e := range ir.Encodings {
		byName[e.Name] = dt
	}
	for _, e := range man.Tensors {
		if _, dup := m.Tensors[e.Name]; dup {
			return nil, nil, fail("tensor %q appears twice", e.Name)
		}
		readEntry := func(e TensorEntry) (*ir.Tensor, error) {
			dt, ok := byName[e.Type]
			if !ok {
				return nil, fail("tensor %q: unknown encoding %q", e.Name, e.Type)
			}
			t := &ir.Tensor{Name: e.Name, Shape: e.Shape, Type: dt}
			if dt != ir.LUTMIX && len(e.Parts) > 0 {
				return nil, fail("tensor %q: %s with parts (only lutmix has parts)", e.Name, e.Type)
			}
			d, err := sec(e.Data, "tensor "+e.Name)
			if err != nil {
				return nil, err
			}
			t.Data = d
			if dt == ir.LUTMIX {
				return readParts(e, t, d, sec, byName, fail)
			}
			if ir.Encodings[dt].Bits > 0 {
				lut, err := sec(e.LUT, "tensor "+e.Name+" LUT")
				if err != nil {
					return nil, err
				}
				t.Pal = &ir.Palette{GroupSize: e.GroupSize, LUT: u16view(lut)}
				if e.Scales > 0 && e.ScaleCodes > 0 {
					return nil, fail("tensor %q: has both scales and scale codes", e.Name)
				}
				if e.Scales > 0 {
					sc, err := sec(e.Scales, "tensor "+e.Name+" scales")
					if err != nil {
						return nil, err
					}
					t.Pal.Scales = u16view(sc)
				}
				if e.ScaleCodes > 0 {
					sc, err := sec(e.ScaleCodes, "tensor "+e.Name+" scale codes")
					if err != nil {
						return nil, err
					}
					// The kernels read float16 scales: expanded once on
					// load (2 bytes per row on the heap; the weights stay
					// mapped).
					t.Pal.ScaleCodes = sc
					t.Pal.ExpandScaleCodes()
				}
			}
			return t, nil
		}
		t, err := readEntry(e)
		if err != nil {
			return nil, nil, err
		}
		if err := t.Check(); err != nil {
			return nil, nil, fail("%v", err)
		}
		m.Tensors[e.Name] = t
	}
	if te := man.Tokenizer; te != nil {
		tok := &tokenizer.Tokenizer{Tokens: te.Tokens, Scores: te.Scores, Merges: te.Merges, BOS: te.BOS, EOS: te.EOS,
			UNK: te.UNK, AddSpacePrefix: te.AddSpacePrefix}
		if te.Kind == "bpe" {
			tok.Kind = tokenizer.ByteBPE
		}
		for _, ty := range te.Types {
			tok.Types = append(tok.Types, tokenizer.TokenType(ty))
		}
		if err := tok.Init(); err != nil {
			return nil, nil, fail("%v", err)
		}
		m.Tokenizer = tok
	}
	for _, se := range man.Adapters {
		set := &ir.AdapterSet{Name: se.Name, BaseSHA256: se.BaseSHA256, Adapters: map[string]*ir.Adapter{}}
		data, err := sec(se.Section, "adapter set "+se.Name)
		if err != nil {
			return nil, nil, err
		}
		for _, ae := range se.Adapters {
			if ae.Rank <= 0 || ae.In <= 0 || ae.Out <= 0 || ae.Rank > 1<<16 || ae.In > 1<<24 || ae.Out > 1<<24 {
				return nil, nil, fail("adapter %s/%s: rank %d, %dx%d out of range", se.Name, ae.Target, ae.Rank, ae.Out, ae.In)
			}
			na, nb := 2*int64(ae.Rank)*int64(ae.In), 2*int64(ae.Rank)*int64(ae.Out)
			if ae.A < 0 || ae.B < 0 || ae.A > int64(len(data))-na || ae.B > int64(len(data))-nb {
				return nil, nil, fail("adapter %s/%s: A at %d (%d bytes) or B at %d (%d bytes) outside its %d-byte section", se.Name, ae.Target, ae.A, na, ae.B, nb, len(data))
			}
			a, b := data[ae.A:ae.A+na], data[ae.B:ae.B+nb]
			set.Adapters[ae.Target] = &ir.Adapter{Target: ae.Target, Rank: ae.Rank, In: ae.In, Out: ae.Out, Scale: ae.Scale,
				A: f16decode(a), B: f16decode(b)}
		}
		m.AdapterSets = append(m.AdapterSets, set)
	}
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}
	return m, &man, nil
}

// u16view reinterprets 2-aligned little-endian bytes as uint16 values
// without copying (sections are 64-byte aligned in a page-aligned mapping).
func u16view(b []byte) []uint16 {
	if len(b) == 0 {
		return []uint16{}
	}
	if uintptr(unsafe.Pointer(&b[0]))%2 != 0 {
		v := make([]uint16, len(b)/2)
		for i := range v {
			v[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return v
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

func f16decode(b []byte) []float32 {
	v := make([]float32, len(b)/2)
	for i := range v {
		v[i] = ir.F16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		if math.IsNaN(float64(v[i])) {
			v[i] = 0
		}
	}
	return v
}
