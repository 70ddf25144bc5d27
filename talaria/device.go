package talaria

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/squeeze-ml/squeeze/ir"
)

// DeviceSchema is the value of the "schema" field of a device profile file.
const DeviceSchema = "squeeze.talaria.device/v1"

// Device classes. Efficiency factors (achieved fraction of a peak figure)
// are a property of the class, not of a model: see ClassEfficiency.
const (
	ClassNPU = "npu"
	ClassGPU = "gpu"
	ClassCPU = "cpu"
)

// Device is a device profile: the hardware figures the cost model needs.
// The JSON form is documented field by field in docs/TALARIA.md. Every
// number in a built-in profile has an entry in Sources naming where it comes
// from (spec sheet, paper, benchmark) or saying that it is an assumption.
type Device struct {
	Schema      string `json:"schema"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Class       string `json:"class"` // npu | gpu | cpu

	// Numeric formats the device computes in: bytes per activation element
	// and per KV-cache element (4 = float32, 2 = float16).
	ActBytes int `json:"act_bytes"`
	KVBytes  int `json:"kv_bytes"`

	// DRAM: peak bandwidth (GB/s, 1e9 bytes) and the fraction a streaming
	// read achieves. Capacity in bytes.
	MemBandwidthGBs float64 `json:"mem_bandwidth_gbs"`
	MemEfficiency   float64 `json:"mem_efficiency"`
	MemoryBytes     int64   `json:"memory_bytes"`

	// Compute: dense peak in TFLOP/s at the compute format, and the fraction
	// that large matrix products achieve.
	PeakTFLOPs        float64 `json:"peak_tflops"`
	ComputeEfficiency float64 `json:"compute_efficiency"`

	// On-chip memory (SRAM, caches) that holds an op's activations: an op
	// whose activation traffic exceeds it spills to DRAM.
	OnChipBytes int64 `json:"onchip_bytes"`

	// LUT decode: achieved throughput of decoding palettized weights, in
	// 1e9 elements/s, per index width ("1","2","3","4","6","8"); and the
	// cost of each LUT group a weight read touches (finer groups cost more).
	LUTDecodeGElemS    map[string]float64 `json:"lut_decode_gelem_s"`
	LUTGroupOverheadNs float64            `json:"lut_group_overhead_ns"`

	// Fixed cost of dispatching one op (µs).
	OpOverheadUs float64 `json:"op_overhead_us"`

	// Optional: achieved FLOP rate (1e9 FLOP/s, ir's FLOP count) of the
	// attention op, when it runs far below the matmul peak (a CPU runtime's
	// scalar softmax and weighted sum over a KV cache read one head's row
	// at a time). 0: attention is costed like any op, at peak_tflops x
	// compute_efficiency. The host profile measures it.
	AttentionGFLOPs float64 `json:"attention_gflops,omitempty"`

	// Optional: extra fixed cost (µs) of an op the squeeze CPU runtime
	// splits over worker goroutines (a linear or classifier op with
	// in x out x tokens >= 65536, attention with heads x context x head_dim
	// >= 32768, when the device runs more than one thread): starting the
	// workers on the other cores and waiting for the slowest. Added to
	// op_overhead_us for those ops. The host profile measures it.
	ParallelOpOverheadUs float64 `json:"parallel_op_overhead_us,omitempty"`

	// Optional: achieved FLOP rate (1e9 FLOP/s, ir's FLOP count) of a
	// linear or classifier product, per weight encoding: "f32", "f16", or a
	// palettized index width ("2", "4", ...; fractional widths interpolate
	// as for lut_decode_gelem_s). When the op's encoding has a rate, its
	// compute term is FLOPs / that rate instead of FLOPs at peak_tflops x
	// compute_efficiency. A CPU runtime's products do not run at one FMA
	// peak: a palettized product's int8 kernels beat the float32 FMA rate,
	// and a decode step's matrix-vector product is bound by its loads, a
	// prefill's tiled product by the FMAs. The host profile measures it
	// with a 64-token product in the arithmetic the runtime runs.
	MatMulGFLOPs map[string]float64 `json:"matmul_gflops,omitempty"`

	// Energy: per byte moved to or from DRAM, per byte moved on chip, per
	// floating-point operation (pJ).
	DRAMPJPerByte   float64 `json:"dram_pj_per_byte"`
	OnChipPJPerByte float64 `json:"onchip_pj_per_byte"`
	PJPerFLOP       float64 `json:"pj_per_flop"`

	// Sources maps each numeric field's JSON name to where its value comes
	// from. Required for every number of a built-in profile.
	Sources map[string]string `json:"sources,omitempty"`

	// Calibration is set on a measured host profile.
	Calibration *Calibration `json:"calibration,omitempty"`
}

// NumericFields lists the JSON names of the numeric fields of a profile, in
// schema order. Every one needs a source in a built-in profile.
var NumericFields = []string{
	"act_bytes", "kv_bytes", "mem_bandwidth_gbs", "mem_efficiency", "memory_bytes",
	"peak_tflops", "compute_efficiency", "onchip_bytes", "lut_decode_gelem_s",
	"lut_group_overhead_ns", "op_overhead_us", "dram_pj_per_byte", "onchip_pj_per_byte", "pj_per_flop",
}

// OptionalNumericFields are numeric fields that may be absent (zero); when
// set they need a source in a built-in profile like the others.
var OptionalNumericFields = []string{"attention_gflops", "parallel_op_overhead_us", "matmul_gflops"}

// Efficiency is the pair of achieved fractions of a device class.
type Efficiency struct {
	Mem, Compute float64
}

// ClassEfficiency holds the achieved-fraction factors of each device class
// for published (not measured) profiles. They are applied per class, never
// per model. Their derivation and honesty notes are in docs/TALARIA.md:
//   - gpu: measured from llama.cpp's public Apple-Silicon table (M2 10-core
//     GPU, LLaMA-7B Q4_0: tg128 21.9 t/s x 3.83 GB = 84% of 100 GB/s;
//     pp512 179.6 t/s x 13.0 GFLOP = 2.34 TFLOP/s = 65% of 3.6 TFLOP/s).
//   - npu: memory as the gpu (same LPDDR controllers and fabric: an
//     assumption); compute 0.5 of the fp16 peak is an assumption.
//   - cpu: 0.6 of DRAM peak and 0.5 of FMA peak are assumptions.
var ClassEfficiency = map[string]Efficiency{
	ClassGPU: {Mem: 0.84, Compute: 0.65},
	ClassNPU: {Mem: 0.84, Compute: 0.5},
	ClassCPU: {Mem: 0.6, Compute: 0.5},
}

// Calibration records how and where a host profile was measured.
type Calibration struct {
	HostKey   string `json:"host_key"` // GOOS/GOARCH/CPU model/threads/probe version
	Measured  string `json:"measured"` // RFC 3339 time
	Threads   int    `json:"threads"`
	GoVersion string `json:"go_version"`
	Probe     string `json:"probe"` // which kernels the probes called
}

// LUTThroughput returns the LUT-decode rate in elements/s for an index
// width, interpolating linearly between the listed widths for fractional
// widths (a uniform --bpw plan) and clamping outside them.
func (d *Device) LUTThroughput(bits float64) float64 {
	if v, ok := interpWidths(d.LUTDecodeGElemS, bits); ok {
		return v
	}
	return math.Inf(1)
}

// interpWidths reads a per-index-width rate table (keys "1".."8", values in
// units of 1e9) at a possibly fractional width: linear between the listed
// widths, the nearest listed width outside them; false when no key is a
// width. The result is in units of 1.
func interpWidths(m map[string]float64, bits float64) (float64, bool) {
	type pt struct{ b, v float64 }
	var pts []pt
	for k, v := range m {
		if b, err := strconv.Atoi(k); err == nil {
			pts = append(pts, pt{float64(b), v * 1e9})
		}
	}
	if len(pts) == 0 {
		return 0, false
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].b < pts[j].b })
	if bits <= pts[0].b {
		return pts[0].v, true
	}
	for i := 1; i < len(pts); i++ {
		if bits <= pts[i].b {
			f := (bits - pts[i-1].b) / (pts[i].b - pts[i-1].b)
			return pts[i-1].v + f*(pts[i].v-pts[i-1].v), true
		}
	}
	return pts[len(pts)-1].v, true
}

// MatMulRate returns the measured FLOP rate (FLOP/s) of a product with
// weight w (matmul_gflops), and false when the profile has none for its
// encoding. Palettized widths between listed ones interpolate linearly;
// outside them the nearest listed width is used.
func (d *Device) MatMulRate(w *resolved) (float64, bool) {
	if len(d.MatMulGFLOPs) == 0 || w == nil {
		return 0, false
	}
	if w.LUTBits == 0 {
		k := "f32"
		if w.Bits == 16 {
			k = "f16"
		}
		v, ok := d.MatMulGFLOPs[k]
		return v * 1e9, ok
	}
	return interpWidths(d.MatMulGFLOPs, w.LUTBits)
}

// Validate checks a profile; errors name the field, what was expected and
// what was found. where names the file (or "builtin:NAME").
func (d *Device) Validate(where string) error {
	bad := func(field, expected string, found any) error {
		return fmt.Errorf("%s: device profile field %q: expected %s, found %v", where, field, expected, found)
	}
	if d.Schema != DeviceSchema {
		return bad("schema", fmt.Sprintf("%q", DeviceSchema), fmt.Sprintf("%q", d.Schema))
	}
	if strings.TrimSpace(d.Name) == "" {
		return bad("name", "a non-empty name", `""`)
	}
	switch d.Class {
	case ClassNPU, ClassGPU, ClassCPU:
	default:
		return bad("class", `"npu", "gpu" or "cpu"`, fmt.Sprintf("%q", d.Class))
	}
	if d.ActBytes != 2 && d.ActBytes != 4 {
		return bad("act_bytes", "2 (float16) or 4 (float32)", d.ActBytes)
	}
	if d.KVBytes != 1 && d.KVBytes != 2 && d.KVBytes != 4 {
		return bad("kv_bytes", "1, 2 or 4", d.KVBytes)
	}
	pos := func(field string, v float64) error {
		if !(v > 0) || math.IsInf(v, 0) {
			return bad(field, "a finite number > 0", v)
		}
		return nil
	}
	nonneg := func(field string, v float64) error {
		if !(v >= 0) || math.IsInf(v, 0) {
			return bad(field, "a finite number >= 0", v)
		}
		return nil
	}
	frac := func(field string, v float64) error {
		if !(v > 0 && v <= 1) {
			return bad(field, "a fraction in (0, 1]", v)
		}
		return nil
	}
	for _, e := range []error{
		pos("mem_bandwidth_gbs", d.MemBandwidthGBs),
		frac("mem_efficiency", d.MemEfficiency),
		pos("memory_bytes", float64(d.MemoryBytes)),
		pos("peak_tflops", d.PeakTFLOPs),
		frac("compute_efficiency", d.ComputeEfficiency),
		nonneg("onchip_bytes", float64(d.OnChipBytes)),
		nonneg("lut_group_overhead_ns", d.LUTGroupOverheadNs),
		nonneg("op_overhead_us", d.OpOverheadUs),
		nonneg("attention_gflops", d.AttentionGFLOPs),
		nonneg("parallel_op_overhead_us", d.ParallelOpOverheadUs),
		nonneg("dram_pj_per_byte", d.DRAMPJPerByte),
		nonneg("onchip_pj_per_byte", d.OnChipPJPerByte),
		nonneg("pj_per_flop", d.PJPerFLOP),
	} {
		if e != nil {
			return e
		}
	}
	for _, b := range ir.PaletteBits {
		k := strconv.Itoa(b)
		v, ok := d.LUTDecodeGElemS[k]
		if !ok {
			return bad("lut_decode_gelem_s", fmt.Sprintf("an entry for every index width %v", ir.PaletteBits), fmt.Sprintf("no entry %q", k))
		}
		if err := pos("lut_decode_gelem_s."+k, v); err != nil {
			return err
		}
	}
	for k := range d.LUTDecodeGElemS {
		b, err := strconv.Atoi(k)
		if err != nil || !isPaletteBits(b) {
			return bad("lut_decode_gelem_s", fmt.Sprintf("keys among %v", ir.PaletteBits), fmt.Sprintf("key %q", k))
		}
	}
	for k, v := range d.MatMulGFLOPs {
		if b, err := strconv.Atoi(k); (err != nil || !isPaletteBits(b)) && k != "f32" && k != "f16" {
			return bad("matmul_gflops", fmt.Sprintf(`keys among "f32", "f16" and %v`, ir.PaletteBits), fmt.Sprintf("key %q", k))
		}
		if err := pos("matmul_gflops."+k, v); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, f := range append(append([]string(nil), NumericFields...), OptionalNumericFields...) {
		known[f] = true
	}
	for k := range d.Sources {
		if !known[k] {
			return bad("sources", fmt.Sprintf("keys among %v and %v", NumericFields, OptionalNumericFields), fmt.Sprintf("key %q", k))
		}
	}
	return nil
}

// MissingSources lists the numeric fields without a source (optional
// fields only when set).
func (d *Device) MissingSources() []string {
	var m []string
	for _, f := range NumericFields {
		if strings.TrimSpace(d.Sources[f]) == "" {
			m = append(m, f)
		}
	}
	opt := map[string]float64{"attention_gflops": d.AttentionGFLOPs, "parallel_op_overhead_us": d.ParallelOpOverheadUs,
		"matmul_gflops": float64(len(d.MatMulGFLOPs))}
	for _, f := range OptionalNumericFields {
		if opt[f] != 0 && strings.TrimSpace(d.Sources[f]) == "" {
			m = append(m, f)
		}
	}
	return m
}

func isPaletteBits(b int) bool {
	for _, p := range ir.PaletteBits {
		if p == b {
			return true
		}
	}
	return false
}

// ParseDevice decodes and validates a device profile. Unknown fields are
// errors (a misspelt field would otherwise silently fall back to zero).
func ParseDevice(r io.Reader, where string) (*Device, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var d Device
	if err := dec.Decode(&d); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("%s: device profile is not valid JSON at byte %d: %v", where, se.Offset, err)
		case errors.As(err, &te):
			return nil, fmt.Errorf("%s: device profile field %q: expected %s, found JSON %s", where, te.Field, te.Type, te.Value)
		}
		return nil, fmt.Errorf("%s: device profile: %v", where, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: device profile: extra data after the JSON object", where)
	}
	if err := d.Validate(where); err != nil {
		return nil, err
	}
	return &d, nil
}

// LoadDevice reads a device profile file.
func LoadDevice(path string) (*Device, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("device profile: %w", err)
	}
	return ParseDevice(bytes.NewReader(b), path)
}

// WriteDevice writes a profile as indented JSON.
func WriteDevice(w io.Writer, d *Device) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

//go:embed profiles/*.json
var builtinFS embed.FS

// BuiltinNames lists the built-in profiles; "host" is measured on this
// machine (see HostDevice), the others are published figures.
func BuiltinNames() []string {
	names := []string{"host"}
	ents, _ := builtinFS.ReadDir("profiles")
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// Builtin returns a published built-in profile by name (not "host": use
// HostDevice, which measures).
func Builtin(name string) (*Device, error) {
	b, err := builtinFS.ReadFile("profiles/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("device %q is not a built-in profile; built-ins: %v (or pass a profile JSON file)", name, BuiltinNames())
	}
	return ParseDevice(bytes.NewReader(b), "builtin:"+name)
}

// ResolveDevice returns a built-in by name, the measured host profile for
// "host", or reads a profile file (any argument containing a path separator
// or ending in .json).
func ResolveDevice(nameOrPath string, host HostOptions) (*Device, error) {
	if nameOrPath == "host" {
		return HostDevice(host)
	}
	if strings.HasSuffix(nameOrPath, ".json") || strings.ContainsRune(nameOrPath, os.PathSeparator) {
		return LoadDevice(nameOrPath)
	}
	return Builtin(nameOrPath)
}
