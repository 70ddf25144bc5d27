package gguf

import (
	"fmt"
	"strconv"

	"github.com/squeeze-ml/squeeze/ir"
)

const (
	magic            = "GGUF"
	defaultAlignment = 32
	maxDims          = 4 // GGML_MAX_DIMS
)

// Metadata value types (enum gguf_type).
const (
	typeUint8   uint32 = 0
	typeInt8    uint32 = 1
	typeUint16  uint32 = 2
	typeInt16   uint32 = 3
	typeUint32  uint32 = 4
	typeInt32   uint32 = 5
	typeFloat32 uint32 = 6
	typeBool    uint32 = 7
	typeString  uint32 = 8
	typeArray   uint32 = 9
	typeUint64  uint32 = 10
	typeInt64   uint32 = 11
	typeFloat64 uint32 = 12
)

var typeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

func typeName(t uint32) string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type " + strconv.Itoa(int(t))
}

// scalarSize is the encoded size of a fixed-size metadata type (0 for
// string and array).
func scalarSize(t uint32) int {
	switch t {
	case typeUint8, typeInt8, typeBool:
		return 1
	case typeUint16, typeInt16:
		return 2
	case typeUint32, typeInt32, typeFloat32:
		return 4
	case typeUint64, typeInt64, typeFloat64:
		return 8
	}
	return 0
}

// ggml tensor types squeeze reads (enum ggml_type), with their ir encoding
// and block size: a row of ne[0] elements takes ne[0]/block*blockBytes bytes.
type ggmlType struct {
	id         uint32
	name       string
	dtype      ir.DType
	block      int
	blockBytes int
}

var ggmlTypes = map[uint32]ggmlType{
	0:  {0, "f32", ir.F32, 1, 4},
	1:  {1, "f16", ir.F16, 1, 2},
	8:  {8, "q8_0", ir.Q8_0, 32, 34},
	30: {30, "bf16", ir.BF16, 1, 2},
}

// ggmlTypeOf maps an ir encoding to its ggml type id.
func ggmlTypeOf(dt ir.DType) (uint32, bool) {
	for id, g := range ggmlTypes {
		if g.dtype == dt {
			return id, true
		}
	}
	return 0, false
}

// Names of the ggml types squeeze does not read, for error messages.
var ggmlOtherNames = map[uint32]string{
	2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1", 9: "q8_1", 10: "q2_k", 11: "q3_k",
	12: "q4_k", 13: "q5_k", 14: "q6_k", 15: "q8_k", 16: "iq2_xxs", 17: "iq2_xs",
	18: "iq3_xxs", 19: "iq1_s", 20: "iq4_nl", 21: "iq3_s", 22: "iq2_s", 23: "iq4_xs",
	24: "i8", 25: "i16", 26: "i32", 27: "i64", 28: "f64", 29: "iq1_m",
	34: "tq1_0", 35: "tq2_0", 39: "mxfp4",
}

// commas formats n with thousands separators: 91,340,800.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := false
	if n < 0 {
		neg, s = true, s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// errorf prefixes an error with the package and file name.
func errorf(name, format string, args ...any) error {
	return fmt.Errorf("gguf: %s: "+format, append([]any{name}, args...)...)
}
