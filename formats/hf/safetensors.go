package hf

// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
// "__metadata__": {...}}, then the data section; offsets are relative to
// its start (byte 8+N).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
)

// maxHeaderBytes caps the JSON header before anything is allocated for it.
const maxHeaderBytes = 100 << 20

// stEntry is one tensor of a safetensors file, validated.
type stEntry struct {
	Name  string
	DType string
	Shape []int
	Begin int64 // absolute file offsets
	End   int64
}

// stDTypeSize is the element size of the safetensors dtypes squeeze knows.
var stDTypeSize = map[string]int{
	"F64": 8, "F32": 4, "F16": 2, "BF16": 2,
	"I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
	"F8_E4M3": 1, "F8_E5M2": 1,
}

// parseSafetensors validates the header of a whole safetensors file held in
// data (normally a memory mapping) and returns its tensors by name. file
// names the file in errors.
func parseSafetensors(file string, data []byte) (map[string]stEntry, error) {
	size := int64(len(data))
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too short for a safetensors header length (8 bytes)", file, size)
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > maxHeaderBytes {
		return nil, fmt.Errorf("%s: safetensors header length %d exceeds the %d-byte limit", file, n, maxHeaderBytes)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%s: safetensors header length %d, but only %d bytes follow the length field", file, n, size-8)
	}
	if n < 2 {
		return nil, fmt.Errorf("%s: safetensors header length %d is too short for a JSON object", file, n)
	}
	dataStart := 8 + int64(n)
	var raw map[string]json.RawMessage
	// The header may be padded with spaces (or NULs) to align the data.
	if err := json.Unmarshal(bytes.TrimRight(data[8:dataStart], " \x00"), &raw); err != nil {
		return nil, fmt.Errorf("%s: safetensors header is not a JSON object: %w", file, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%s: safetensors header is null, expected a JSON object", file)
	}
	out := make(map[string]stEntry, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var h struct {
			DType   *string  `json:"dtype"`
			Shape   *[]int64 `json:"shape"`
			Offsets *[]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(msg, &h); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %w", file, name, err)
		}
		if h.DType == nil || h.Shape == nil || h.Offsets == nil {
			return nil, fmt.Errorf("%s: tensor %q: header entry needs dtype, shape and data_offsets", file, name)
		}
		if len(*h.Offsets) != 2 {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets has %d values, expected 2", file, name, len(*h.Offsets))
		}
		b, e := (*h.Offsets)[0], (*h.Offsets)[1]
		if b < 0 || e < b || e > size-dataStart {
			return nil, fmt.Errorf("%s: tensor %q: data_offsets [%d, %d] outside the data section of %d bytes", file, name, b, e, size-dataStart)
		}
		shape := make([]int, len(*h.Shape))
		elems := int64(1)
		for i, d := range *h.Shape {
			if d < 0 || d > math.MaxInt32 {
				return nil, fmt.Errorf("%s: tensor %q: shape %v has an invalid dimension %d", file, name, *h.Shape, d)
			}
			shape[i] = int(d)
			if d != 0 && elems > math.MaxInt64/d/8 {
				return nil, fmt.Errorf("%s: tensor %q: shape %v is too large", file, name, *h.Shape)
			}
			elems *= d
		}
		if es, ok := stDTypeSize[*h.DType]; ok {
			if want := elems * int64(es); e-b != want {
				return nil, fmt.Errorf("%s: tensor %q (%s, shape %v): data_offsets span %d bytes, expected %d", file, name, *h.DType, *h.Shape, e-b, want)
			}
		}
		out[name] = stEntry{Name: name, DType: *h.DType, Shape: shape, Begin: dataStart + b, End: dataStart + e}
	}
	return out, nil
}

// stTensor is one tensor to write.
type stTensor struct {
	Name  string
	DType string // "F32" or "F16"
	Shape []int
	Size  int64
	Write func(w io.Writer) error // writes exactly Size bytes
}

// writeSafetensors writes tensors (in the given order, packed without holes)
// with an 8-byte aligned data section and __metadata__ {"format": "pt"}.
func writeSafetensors(w io.Writer, tensors []stTensor) error {
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	for _, t := range tensors {
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = entry{t.DType, shape, []int64{off, off + t.Size}}
		off += t.Size
	}
	js, err := json.Marshal(hdr) // map keys sorted: deterministic
	if err != nil {
		return err
	}
	for (8+len(js))%8 != 0 {
		js = append(js, ' ')
	}
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(len(js)))
	if _, err := w.Write(lenb[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range tensors {
		cw := &countWriter{w: w}
		if err := t.Write(cw); err != nil {
			return err
		}
		if cw.n != t.Size {
			return fmt.Errorf("tensor %q: wrote %d bytes, expected %d", t.Name, cw.n, t.Size)
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// sortedNames returns the keys of a header map in order of file offset.
func sortedNames(h map[string]stEntry) []string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := h[names[i]], h[names[j]]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return names[i] < names[j]
	})
	return names
}
