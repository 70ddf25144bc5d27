package gguf

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/formats/tokenizer"
	"github.com/squeeze-ml/squeeze/ir"
)

// Load memory-maps a GGUF file and returns its model. F32, F16, BF16 and
// Q8_0 tensors point straight into the mapping (no copy); Close the model to
// release it.
func Load(path string) (*ir.Model, error) {
	mp, err := fileio.MapFile(path)
	if err != nil {
		return nil, errorf(path, "%v", err)
	}
	m, err := Parse(path, mp.Data)
	if err != nil {
		mp.Close()
		return nil, err
	}
	m.AddCloser(mp)
	return m, nil
}

// Parse reads a whole GGUF file held in data; name is used in errors and as
// the model's Source. Tensor Data slices point into data, which must stay
// unchanged while the model is used. Every count, length and offset in the
// header is checked against len(data) before anything is allocated.
func Parse(name string, data []byte) (*ir.Model, error) {
	h, err := parseHeader(name, data)
	if err != nil {
		return nil, err
	}
	return h.model()
}

// value is one metadata value. Scalars fill u (unsigned integers and bool),
// i (signed integers), f (floats) or s (string); arrays of fixed-size
// elements keep their encoded bytes in raw, arrays of strings their strings.
type value struct {
	typ     uint32
	u       uint64
	i       int64
	f       float64
	s       string
	arrType uint32
	n       int
	raw     []byte
	strs    []string
}

// asInt returns an integer-typed scalar as int64.
func (v *value) asInt() (int64, bool) {
	switch v.typ {
	case typeUint8, typeUint16, typeUint32, typeUint64:
		if v.u > math.MaxInt64 {
			return 0, false
		}
		return int64(v.u), true
	case typeInt8, typeInt16, typeInt32, typeInt64:
		return v.i, true
	}
	return 0, false
}

// elemInt decodes integer element k of a fixed-size array.
func (v *value) elemInt(k int) (int64, bool) {
	b := v.raw
	switch v.arrType {
	case typeUint8:
		return int64(b[k]), true
	case typeInt8:
		return int64(int8(b[k])), true
	case typeUint16:
		return int64(binary.LittleEndian.Uint16(b[2*k:])), true
	case typeInt16:
		return int64(int16(binary.LittleEndian.Uint16(b[2*k:]))), true
	case typeUint32:
		return int64(binary.LittleEndian.Uint32(b[4*k:])), true
	case typeInt32:
		return int64(int32(binary.LittleEndian.Uint32(b[4*k:]))), true
	case typeUint64:
		u := binary.LittleEndian.Uint64(b[8*k:])
		return int64(u), u <= math.MaxInt64
	case typeInt64:
		return int64(binary.LittleEndian.Uint64(b[8*k:])), true
	}
	return 0, false
}

// elemFloat decodes float element k of a fixed-size array.
func (v *value) elemFloat(k int) (float64, bool) {
	switch v.arrType {
	case typeFloat32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(v.raw[4*k:]))), true
	case typeFloat64:
		return math.Float64frombits(binary.LittleEndian.Uint64(v.raw[8*k:])), true
	}
	return 0, false
}

func (v *value) describe() string {
	if v.typ == typeArray {
		return "array of " + strconv.Itoa(v.n) + " " + typeName(v.arrType)
	}
	return typeName(v.typ)
}

// tensorInfo is one entry of the tensor-info table.
type tensorInfo struct {
	name   string // as stored ("blk.0.attn_q.weight")
	ne     []uint64
	typ    ggmlType
	offset uint64 // relative to the data section
}

// header is everything before the tensor data.
type header struct {
	name      string
	data      []byte
	version   uint32
	kv        map[string]*value
	keys      []string // in file order
	tensors   []tensorInfo
	alignment uint64
	dataStart int64
}

// decoder reads little-endian fields with bounds checks.
type decoder struct {
	name string
	data []byte
	off  int
}

func (d *decoder) left() int { return len(d.data) - d.off }

func (d *decoder) need(n uint64, what string) error {
	if n > uint64(d.left()) {
		return d.short(n, what)
	}
	return nil
}

// short is the error for a field of n bytes that does not fit.
func (d *decoder) short(n uint64, what string) error {
	return errorf(d.name, "%s at byte %s needs %s bytes, file has only %s left (file is %s bytes)",
		what, commas(int64(d.off)), commas64u(n), commas(int64(d.left())), commas(int64(len(d.data))))
}

func commas64u(n uint64) string {
	if n > math.MaxInt64 {
		return strconv.FormatUint(n, 10)
	}
	return commas(int64(n))
}

func (d *decoder) u32(what string) (uint32, error) {
	if err := d.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(d.data[d.off:])
	d.off += 4
	return v, nil
}

func (d *decoder) u64(what string) (uint64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(d.data[d.off:])
	d.off += 8
	return v, nil
}

// str reads a string (uint64 length, bytes). what describes the field for
// errors; it is only called on error, so the hot path builds no messages.
func (d *decoder) str(what func() string) (string, error) {
	if d.left() < 8 {
		return "", d.short(8, what()+" length")
	}
	n := binary.LittleEndian.Uint64(d.data[d.off:])
	d.off += 8
	if n > uint64(d.left()) {
		return "", d.short(n, what()+" of "+commas64u(n)+" bytes")
	}
	s := string(d.data[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

// scalar reads a fixed-size scalar of type t.
func (d *decoder) scalar(t uint32, v *value, what string) error {
	sz := scalarSize(t)
	if err := d.need(uint64(sz), what); err != nil {
		return err
	}
	b := d.data[d.off:]
	switch t {
	case typeUint8:
		v.u = uint64(b[0])
	case typeInt8:
		v.i = int64(int8(b[0]))
	case typeBool:
		if b[0] > 1 {
			return errorf(d.name, "%s: bool value is %d, expected 0 or 1", what, b[0])
		}
		v.u = uint64(b[0])
	case typeUint16:
		v.u = uint64(binary.LittleEndian.Uint16(b))
	case typeInt16:
		v.i = int64(int16(binary.LittleEndian.Uint16(b)))
	case typeUint32:
		v.u = uint64(binary.LittleEndian.Uint32(b))
	case typeInt32:
		v.i = int64(int32(binary.LittleEndian.Uint32(b)))
	case typeFloat32:
		// The shortest decimal that rounds to this float32 (1e-05, not
		// 9.999999747378752e-06), so a value written from a float64 config
		// reads back as the same float64.
		f := math.Float32frombits(binary.LittleEndian.Uint32(b))
		v.f, _ = strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	case typeUint64:
		v.u = binary.LittleEndian.Uint64(b)
	case typeInt64:
		v.i = int64(binary.LittleEndian.Uint64(b))
	case typeFloat64:
		v.f = math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	d.off += sz
	return nil
}

// readValue reads a metadata value of type t for key.
func (d *decoder) readValue(key string, t uint32) (*value, error) {
	what := "metadata key " + strconv.Quote(key)
	v := &value{typ: t}
	switch {
	case t == typeString:
		s, err := d.str(func() string { return what + " string" })
		if err != nil {
			return nil, err
		}
		v.s = s
	case t == typeArray:
		at, err := d.u32(what + " array type")
		if err != nil {
			return nil, err
		}
		n, err := d.u64(what + " array count")
		if err != nil {
			return nil, err
		}
		v.arrType = at
		switch {
		case at == typeString:
			// Each string is at least its 8-byte length.
			if n > uint64(d.left())/8 {
				return nil, errorf(d.name, "%s: array of %s strings needs at least %s bytes, file has only %s left",
					what, commas64u(n), mulString(n, 8), commas(int64(d.left())))
			}
			v.n = int(n)
			v.strs = make([]string, n)
			for k := range v.strs {
				if v.strs[k], err = d.str(func() string { return what + " element " + strconv.Itoa(k) }); err != nil {
					return nil, err
				}
			}
		case scalarSize(at) > 0:
			sz := uint64(scalarSize(at))
			if n > uint64(d.left())/sz {
				return nil, errorf(d.name, "%s: array of %s %s needs %s bytes, file has only %s left",
					what, commas64u(n), typeName(at), mulString(n, sz), commas(int64(d.left())))
			}
			v.n = int(n)
			v.raw = d.data[d.off : d.off+int(n*sz)]
			d.off += int(n * sz)
			if at == typeBool {
				for k, b := range v.raw {
					if b > 1 {
						return nil, errorf(d.name, "%s: element %d: bool value is %d, expected 0 or 1", what, k, b)
					}
				}
			}
		case at == typeArray:
			return nil, errorf(d.name, "%s: nested arrays are not supported", what)
		default:
			return nil, errorf(d.name, "%s: unknown array element type %d", what, at)
		}
	case scalarSize(t) > 0:
		if err := d.scalar(t, v, what); err != nil {
			return nil, err
		}
	default:
		return nil, errorf(d.name, "%s: unknown value type %d (expected 0..12)", what, t)
	}
	return v, nil
}

// mulString prints n*k without overflowing.
func mulString(n, k uint64) string {
	hi, lo := bits.Mul64(n, k)
	if hi != 0 || lo > math.MaxInt64 {
		return "more than " + commas(math.MaxInt64)
	}
	return commas(int64(lo))
}

// Minimum encoded sizes, to bound counts before allocating.
const (
	minKVBytes     = 8 + 4 + 1         // key length, type, one-byte value
	minTensorBytes = 8 + 4 + 8 + 4 + 8 // name length, n_dims, one ne, type, offset
)

func parseHeader(name string, data []byte) (*header, error) {
	d := &decoder{name: name, data: data}
	if len(data) < 4 || string(data[:4]) != magic {
		got := data
		if len(got) > 4 {
			got = got[:4]
		}
		return nil, errorf(name, "not a GGUF file: magic is %q, expected %q", got, magic)
	}
	d.off = 4
	h := &header{name: name, data: data, kv: map[string]*value{}}
	var err error
	if h.version, err = d.u32("version"); err != nil {
		return nil, err
	}
	switch h.version {
	case 2, 3:
	case 1:
		return nil, errorf(name, "GGUF version 1 is not supported (expected version 2 or 3)")
	default:
		if sw := bits.ReverseBytes32(h.version); sw == 2 || sw == 3 {
			return nil, errorf(name, "big-endian GGUF (version %d) is not supported", sw)
		}
		return nil, errorf(name, "GGUF version is %d, expected 2 or 3", h.version)
	}
	nTensors, err := d.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return nil, err
	}
	if nKV > uint64(d.left())/minKVBytes {
		return nil, errorf(name, "metadata count %s needs at least %s bytes, file has only %s left",
			commas64u(nKV), mulString(nKV, minKVBytes), commas(int64(d.left())))
	}
	if nTensors > (uint64(d.left())-nKV*minKVBytes)/minTensorBytes {
		return nil, errorf(name, "tensor count %s needs at least %s bytes, file has only %s left",
			commas64u(nTensors), mulString(nTensors, minTensorBytes), commas(int64(d.left())))
	}
	h.keys = make([]string, 0, nKV)
	for k := uint64(0); k < nKV; k++ {
		key, err := d.str(func() string { return "metadata key " + strconv.FormatUint(k, 10) })
		if err != nil {
			return nil, err
		}
		t, err := d.u32("metadata key " + strconv.Quote(key) + " type")
		if err != nil {
			return nil, err
		}
		v, err := d.readValue(key, t)
		if err != nil {
			return nil, err
		}
		if _, dup := h.kv[key]; dup {
			return nil, errorf(name, "metadata key %q appears twice", key)
		}
		h.kv[key] = v
		h.keys = append(h.keys, key)
	}

	h.alignment = defaultAlignment
	if v, ok := h.kv["general.alignment"]; ok {
		a, ok := v.asInt()
		if !ok || a <= 0 || a > 1<<30 || a&(a-1) != 0 {
			return nil, errorf(name, "general.alignment is %s, expected a power of two", h.showScalar(v))
		}
		h.alignment = uint64(a)
	}

	if nTensors > uint64(d.left())/minTensorBytes {
		return nil, errorf(name, "tensor count %s needs at least %s bytes, file has only %s left",
			commas64u(nTensors), mulString(nTensors, minTensorBytes), commas(int64(d.left())))
	}
	h.tensors = make([]tensorInfo, nTensors)
	seen := make(map[string]bool, nTensors)
	for k := range h.tensors {
		ti := &h.tensors[k]
		if ti.name, err = d.str(func() string { return "tensor " + strconv.Itoa(k) + " name" }); err != nil {
			return nil, err
		}
		what := "tensor " + strconv.Quote(ti.name)
		if seen[ti.name] {
			return nil, errorf(name, "%s appears twice", what)
		}
		seen[ti.name] = true
		nd, err := d.u32(what + " n_dims")
		if err != nil {
			return nil, err
		}
		if nd < 1 || nd > maxDims {
			return nil, errorf(name, "%s: n_dims is %d, expected 1..%d", what, nd, maxDims)
		}
		ti.ne = make([]uint64, nd)
		elems := uint64(1)
		for j := range ti.ne {
			if ti.ne[j], err = d.u64(what + " ne[" + strconv.Itoa(j) + "]"); err != nil {
				return nil, err
			}
			if ti.ne[j] < 1 || ti.ne[j] > 1<<31 {
				return nil, errorf(name, "%s: ne[%d] is %s, expected 1..%s", what, j, commas64u(ti.ne[j]), commas(1<<31))
			}
			hi, lo := bits.Mul64(elems, ti.ne[j])
			if hi != 0 || lo > 1<<46 {
				return nil, errorf(name, "%s: shape %v has more than 2^46 elements", what, ti.ne)
			}
			elems = lo
		}
		tid, err := d.u32(what + " type")
		if err != nil {
			return nil, err
		}
		g, ok := ggmlTypes[tid]
		if !ok {
			if n, known := ggmlOtherNames[tid]; known {
				return nil, errorf(name, "%s: ggml type %d (%s) is not supported (squeeze reads f32, f16, bf16, q8_0)", what, tid, n)
			}
			return nil, errorf(name, "%s: unknown ggml type %d", what, tid)
		}
		ti.typ = g
		if ti.ne[0]%uint64(g.block) != 0 {
			return nil, errorf(name, "%s: %s rows of %d elements are not a multiple of the block size %d", what, g.name, ti.ne[0], g.block)
		}
		if ti.offset, err = d.u64(what + " offset"); err != nil {
			return nil, err
		}
	}
	// The data section starts at the next multiple of the alignment.
	start := (uint64(d.off) + h.alignment - 1) / h.alignment * h.alignment
	if len(h.tensors) > 0 && start > uint64(len(data)) {
		return nil, errorf(name, "tensor data starts at byte %s, file has %s", commas64u(start), commas(int64(len(data))))
	}
	h.dataStart = int64(start)
	return h, nil
}

func (h *header) showScalar(v *value) string {
	switch v.typ {
	case typeString:
		return strconv.Quote(v.s)
	case typeFloat32, typeFloat64:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case typeInt8, typeInt16, typeInt32, typeInt64:
		return strconv.FormatInt(v.i, 10)
	case typeArray:
		return "an " + v.describe()
	}
	return strconv.FormatUint(v.u, 10)
}

// tensorBytes is the encoded size of a tensor.
func (ti *tensorInfo) bytes() uint64 {
	rows := uint64(1)
	for _, n := range ti.ne[1:] {
		rows *= n
	}
	return rows * (ti.ne[0] / uint64(ti.typ.block)) * uint64(ti.typ.blockBytes)
}

// canonicalName maps a GGUF tensor name to the ir name: ".weight" is
// dropped, ".bias" kept ("blk.0.attn_q.bias").
func canonicalName(n string) string { return strings.TrimSuffix(n, ".weight") }

// metadata accessors; all errors name the key.

func (h *header) str(key string) (string, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return "", false, nil
	}
	if v.typ != typeString {
		return "", true, errorf(h.name, "%s is %s, expected a string", key, v.describe())
	}
	return v.s, true, nil
}

// int reads an integer key and checks it is in lo..hi.
func (h *header) int(key string, lo, hi int64) (int, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return 0, false, nil
	}
	x, isInt := v.asInt()
	if !isInt {
		if v.typ == typeUint64 {
			return 0, true, errorf(h.name, "%s is %d, expected %d..%d", key, v.u, lo, hi)
		}
		return 0, true, errorf(h.name, "%s is %s, expected an integer", key, v.describe())
	}
	if x < lo || x > hi {
		return 0, true, errorf(h.name, "%s is %d, expected %d..%d", key, x, lo, hi)
	}
	return int(x), true, nil
}

func (h *header) float(key string) (float64, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return 0, false, nil
	}
	if v.typ != typeFloat32 && v.typ != typeFloat64 {
		return 0, true, errorf(h.name, "%s is %s, expected a float", key, v.describe())
	}
	return v.f, true, nil
}

func (h *header) bool(key string) (bool, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return false, false, nil
	}
	if v.typ != typeBool {
		return false, true, errorf(h.name, "%s is %s, expected a bool", key, v.describe())
	}
	return v.u == 1, true, nil
}

func (h *header) strArray(key string) ([]string, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return nil, false, nil
	}
	if v.typ != typeArray || v.arrType != typeString {
		return nil, true, errorf(h.name, "%s is %s, expected an array of strings", key, v.describe())
	}
	return v.strs, true, nil
}

// numArray returns a numeric array key with n elements.
func (h *header) numArray(key string, n int) (*value, bool, error) {
	v, ok := h.kv[key]
	if !ok {
		return nil, false, nil
	}
	if v.typ != typeArray || scalarSize(v.arrType) == 0 || v.arrType == typeBool {
		return nil, true, errorf(h.name, "%s is %s, expected an array of numbers", key, v.describe())
	}
	if v.n != n {
		return nil, true, errorf(h.name, "%s has %d elements, expected %d (one per token)", key, v.n, n)
	}
	return v, true, nil
}

// model builds the ir.Model from the header.
func (h *header) model() (*ir.Model, error) {
	name := h.name
	arch, ok, err := h.str("general.architecture")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errorf(name, "general.architecture is missing")
	}
	switch arch {
	case "llama", "mistral", "qwen2":
	default:
		return nil, errorf(name, "general.architecture is %q, expected llama, mistral or qwen2", arch)
	}
	m := &ir.Model{
		Tensors: make(map[string]*ir.Tensor, len(h.tensors)),
		Format:  "gguf",
		Source:  name,
		Meta: map[string]string{
			"general.architecture": arch,
			"gguf.version":         strconv.Itoa(int(h.version)),
		},
	}
	for _, k := range []string{"general.name", "tokenizer.ggml.pre", "tokenizer.ggml.model", "llama.rope.scaling.type", arch + ".rope.scaling.type"} {
		if s, ok, _ := h.str(k); ok {
			m.Meta[k] = s
		}
	}
	if b, ok, _ := h.bool("tokenizer.ggml.add_bos_token"); ok {
		m.Meta["tokenizer.ggml.add_bos_token"] = strconv.FormatBool(b)
	}

	// Tensors.
	size := uint64(len(h.data))
	for k := range h.tensors {
		ti := &h.tensors[k]
		cn := canonicalName(ti.name)
		if _, dup := m.Tensors[cn]; dup {
			return nil, errorf(name, "tensor %q appears twice (as %q and %q.weight)", cn, cn, cn)
		}
		if ti.offset%h.alignment != 0 {
			return nil, errorf(name, "tensor %q: offset %s is not a multiple of general.alignment %d", cn, commas64u(ti.offset), h.alignment)
		}
		nb := ti.bytes()
		start, c1 := bits.Add64(uint64(h.dataStart), ti.offset, 0)
		end, c2 := bits.Add64(start, nb, 0)
		if c1|c2 != 0 || end > size {
			endStr := commas64u(end)
			if c1|c2 != 0 {
				endStr = "beyond 2^64"
			}
			return nil, errorf(name, "tensor %q: data ends at byte %s, file has %s", cn, endStr, commas(int64(size)))
		}
		shape := make([]int, len(ti.ne))
		for j, n := range ti.ne {
			shape[len(shape)-1-j] = int(n)
		}
		m.Tensors[cn] = &ir.Tensor{
			Name:  cn,
			Shape: shape,
			Type:  ti.typ.dtype,
			Data:  h.data[start : start+nb : start+nb],
		}
	}

	// Configuration.
	c := &m.Config
	c.Arch = "llama" // mistral and qwen2 map onto the llama layout
	p := arch + "."
	const maxInt = math.MaxInt32
	req := func(key string, dst *int, lo int64) error {
		v, ok, err := h.int(p+key, lo, maxInt)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(name, "%s is missing", p+key)
		}
		*dst = v
		return nil
	}
	for _, f := range []struct {
		key string
		dst *int
	}{
		{"embedding_length", &c.Dim},
		{"block_count", &c.Layers},
		{"attention.head_count", &c.Heads},
		{"feed_forward_length", &c.FFN},
		{"context_length", &c.SeqLen},
	} {
		if err := req(f.key, f.dst, 1); err != nil {
			return nil, err
		}
	}
	c.KVHeads = c.Heads
	if v, ok, err := h.int(p+"attention.head_count_kv", 1, maxInt); err != nil {
		return nil, err
	} else if ok {
		c.KVHeads = v
	}
	keyLen, hasKey, err := h.int(p+"attention.key_length", 1, maxInt)
	if err != nil {
		return nil, err
	}
	valLen, hasVal, err := h.int(p+"attention.value_length", 1, maxInt)
	if err != nil {
		return nil, err
	}
	ropeDim, hasRope, err := h.int(p+"rope.dimension_count", 1, maxInt)
	if err != nil {
		return nil, err
	}
	switch {
	case hasKey:
		c.HeadDim = keyLen
	case hasRope:
		c.HeadDim = ropeDim
	default:
		if c.Dim%c.Heads != 0 {
			return nil, errorf(name, "%sembedding_length %d is not a multiple of head_count %d and %sattention.key_length is missing", p, c.Dim, c.Heads, p)
		}
		c.HeadDim = c.Dim / c.Heads
	}
	if hasVal && valLen != c.HeadDim {
		return nil, errorf(name, "%sattention.value_length %d differs from the key length %d; squeeze needs them equal", p, valLen, c.HeadDim)
	}
	if hasRope && ropeDim != c.HeadDim {
		return nil, errorf(name, "%srope.dimension_count %d differs from the head dimension %d; partial rotary embeddings are not supported", p, ropeDim, c.HeadDim)
	}
	c.RopeTheta = 10000
	if f, ok, err := h.float(p + "rope.freq_base"); err != nil {
		return nil, err
	} else if ok {
		c.RopeTheta = f
	}
	f, ok, err := h.float(p + "attention.layer_norm_rms_epsilon")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errorf(name, "%sattention.layer_norm_rms_epsilon is missing", p)
	}
	c.NormEps = f
	_, hasOutput := m.Tensors[ir.NameOutput]
	c.TiedEmbed = !hasOutput
	_, c.QKVBias = m.Tensors[ir.Blk(0, ir.AttnQB)]
	// llama.cpp rotates adjacent pairs for llama and mistral (the
	// converters permute Hugging Face's q/k rows into that layout) and
	// halves (NeoX) for qwen2, whose weights are stored unpermuted.
	c.RopeNeoX = arch == "qwen2"

	// Vocabulary.
	tok, err := h.tokenizer()
	if err != nil {
		return nil, err
	}
	m.Tokenizer = tok
	switch {
	case tok != nil:
		c.Vocab = tok.Size()
	default:
		if v, ok, err := h.int(p+"vocab_size", 1, maxInt); err != nil {
			return nil, err
		} else if ok {
			c.Vocab = v
		} else if t, ok := m.Tensors[ir.NameTokenEmbd]; ok {
			c.Vocab = t.Rows()
		}
	}

	if err := m.Validate(); err != nil {
		return nil, errorf(name, "%v", strings.TrimPrefix(err.Error(), name+": "))
	}
	return m, nil
}

// tokenizer reads tokenizer.ggml.*; nil when the file has no vocabulary.
func (h *header) tokenizer() (*tokenizer.Tokenizer, error) {
	model, ok, err := h.str("tokenizer.ggml.model")
	if err != nil || !ok {
		return nil, err
	}
	t := &tokenizer.Tokenizer{BOS: -1, EOS: -1, UNK: -1}
	switch model {
	case "llama":
		t.Kind = tokenizer.SentencePiece
		t.BOS, t.EOS, t.UNK = 1, 2, 0 // llama.cpp's defaults for SentencePiece
		t.AddSpacePrefix = true
	case "gpt2":
		t.Kind = tokenizer.ByteBPE
	case "no_vocab", "none":
		return nil, nil
	default:
		return nil, errorf(h.name, "tokenizer.ggml.model is %q, expected llama or gpt2", model)
	}
	toks, ok, err := h.strArray("tokenizer.ggml.tokens")
	if err != nil {
		return nil, err
	}
	if !ok || len(toks) == 0 {
		return nil, errorf(h.name, "tokenizer.ggml.tokens is missing or empty")
	}
	n := len(toks)
	t.Tokens = toks
	if v, ok, err := h.numArray("tokenizer.ggml.scores", n); err != nil {
		return nil, err
	} else if ok {
		t.Scores = make([]float32, n)
		for k := range t.Scores {
			f, isFloat := v.elemFloat(k)
			if !isFloat {
				return nil, errorf(h.name, "tokenizer.ggml.scores is %s, expected floats", v.describe())
			}
			t.Scores[k] = float32(f)
		}
	} else if t.Kind == tokenizer.SentencePiece {
		t.Scores = make([]float32, n)
	}
	if v, ok, err := h.numArray("tokenizer.ggml.token_type", n); err != nil {
		return nil, err
	} else if ok {
		t.Types = make([]tokenizer.TokenType, n)
		for k := range t.Types {
			x, isInt := v.elemInt(k)
			if !isInt || x < 0 || x > 6 {
				return nil, errorf(h.name, "tokenizer.ggml.token_type[%d] is not a token type 0..6 (array of %s)", k, typeName(v.arrType))
			}
			t.Types[k] = tokenizer.TokenType(x)
		}
	}
	if t.Kind == tokenizer.ByteBPE {
		merges, ok, err := h.strArray("tokenizer.ggml.merges")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errorf(h.name, "tokenizer.ggml.merges is missing (needed by the gpt2 tokenizer)")
		}
		t.Merges = merges
	}
	for _, s := range []struct {
		key string
		dst *int
	}{
		{"tokenizer.ggml.bos_token_id", &t.BOS},
		{"tokenizer.ggml.eos_token_id", &t.EOS},
		{"tokenizer.ggml.unknown_token_id", &t.UNK},
	} {
		v, ok := h.kv[s.key]
		if !ok {
			continue
		}
		id, isInt := v.asInt()
		switch {
		case !isInt:
			return nil, errorf(h.name, "%s is %s, expected an integer", s.key, v.describe())
		case id == -1 || id == math.MaxUint32:
			*s.dst = -1 // "none", as llama.cpp writes it
		case id < 0 || id >= int64(n):
			return nil, errorf(h.name, "%s is %d, outside the vocabulary of %d tokens", s.key, id, n)
		default:
			*s.dst = int(id)
		}
	}
	if b, ok, err := h.bool("tokenizer.ggml.add_space_prefix"); err != nil {
		return nil, err
	} else if ok {
		t.AddSpacePrefix = b
	}
	if err := t.Init(); err != nil {
		return nil, errorf(h.name, "%v", err)
	}
	return t, nil
}
