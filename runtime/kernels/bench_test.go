package kernels

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/squeeze-ml/squeeze/ir"
)

// Benchmarks on TinyLlama-1.1B matrix shapes (synthetic random weights).
// Each benchmark cycles through enough copies of the weights (>= 96 MiB) that
// they stream from DRAM rather than the 32 MiB L3, and reports GB/s of
// weight bytes (Tensor.Bytes: indices + LUTs + scales) and the ratio to the
// StreamSum bandwidth measured in the same process.
//
//	go test -run XXX -bench 'MatVec' -benchtime 20x ./runtime/kernels/

var benchShapes = [][2]int{{2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}}

var (
	streamOnce sync.Once
	streamGBs  float64
)

func streamBW() float64 {
	streamOnce.Do(func() { streamGBs = StreamSum(256<<20, 300*time.Millisecond) })
	return streamGBs
}

func BenchmarkStreamSum(b *testing.B) {
	a := make([]float32, 64<<20)
	b.SetBytes(int64(4 * len(a)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		streamSink += Sum(a)
	}
	b.ReportMetric(float64(4*len(a))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// benchTensor makes random weights of the given type: random packed bytes
// are valid indices for every LUT width; LUTs have one group per 16 rows.
func benchTensor(rng *rand.Rand, dt ir.DType, rows, cols int) *ir.Tensor {
	enc := ir.Encodings[dt]
	n := rows * cols
	w := &ir.Tensor{Name: "bench", Shape: []int{rows, cols}, Type: dt, Data: make([]byte, enc.DataBytes(n))}
	switch dt {
	case ir.F32:
		rng.Read(w.Data)
		for i := 3; i < len(w.Data); i += 4 {
			w.Data[i] = 0x3c | (w.Data[i] & 0x80) // keep values finite, |v| < 2
		}
	case ir.F16:
		rng.Read(w.Data)
		for i := 1; i < len(w.Data); i += 2 {
			w.Data[i] = 0x30 | (w.Data[i] & 0x83)
		}
	default:
		rng.Read(w.Data)
		gs := 16
		w.Pal = &ir.Palette{GroupSize: gs, LUT: make([]uint16, ((rows+gs-1)/gs)<<enc.Bits)}
		for i := range w.Pal.LUT {
			w.Pal.LUT[i] = ir.F32ToF16(float32(rng.NormFloat64()) * 0.02)
		}
	}
	return w
}

func benchMatVec(b *testing.B, dt ir.DType, rows, cols int) {
	rng := rand.New(rand.NewSource(1))
	w0 := benchTensor(rng, dt, rows, cols)
	copies := int((96<<20)/w0.Bytes()) + 1
	ws := []*ir.Tensor{w0}
	for len(ws) < copies {
		ws = append(ws, benchTensor(rng, dt, rows, cols))
	}
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	out := make([]float32, rows)
	stream := streamBW()
	b.SetBytes(w0.Bytes())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		MatVec(ws[i%len(ws)], x, out, 0, rows)
	}
	gbs := float64(w0.Bytes()) * float64(b.N) / b.Elapsed().Seconds() / 1e9
	b.ReportMetric(gbs, "GB/s")
	b.ReportMetric(gbs/stream, "xStream")
	b.ReportMetric(stream, "streamGB/s")
}

func BenchmarkMatVec(b *testing.B) {
	types := []ir.DType{ir.F32, ir.F16, ir.LUT4, ir.LUT3, ir.LUT2, ir.LUT1, ir.LUT6, ir.LUT8}
	for _, dt := range types {
		for _, s := range benchShapes {
			for _, m := range []Mode{ModeFloat, ModeInt8} {
				if m == ModeInt8 && !i8Aligned(ir.Encodings[dt].Bits, s[1]) {
					continue
				}
				name := fmt.Sprintf("%s/%dx%d/%v", ir.Encodings[dt].Name, s[0], s[1], m)
				b.Run(name, func(b *testing.B) {
					defer SetMode(SetMode(m))
					benchMatVec(b, dt, s[0], s[1])
				})
			}
		}
	}
}

// BenchmarkMatMul measures prefill: 64 tokens against one weight matrix,
// reported as GFLOP/s (2*rows*cols*tokens per op).
func BenchmarkMatMul(b *testing.B) {
	const n = 64
	for _, dt := range []ir.DType{ir.F32, ir.F16, ir.LUT4, ir.LUT3, ir.LUT2, ir.LUT8} {
		s := [2]int{2048, 2048}
		b.Run(fmt.Sprintf("%s/%dx%dx%d", ir.Encodings[dt].Name, s[0], s[1], n), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			w := benchTensor(rng, dt, s[0], s[1])
			x := make([]float32, n*s[1])
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			out := make([]float32, n*s[0])
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				MatMul(w, x, out, n, 0, s[0])
			}
			b.ReportMetric(2*float64(s[0]*s[1]*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// tinyLlamaMACs is the multiply-adds per token of TinyLlama-1.1B's
// matrices (22 layers of q, k, v, o, gate, up, down plus the output
// projection), to turn a kernel's MAC rate into whole-model tokens/s.
const tinyLlamaMACs = 22*(2*2048*2048+2*256*2048+3*5632*2048) + 32000*2048

// BenchmarkMatMulPrefill measures prefill as the runtime runs it: 128
// tokens against TinyLlama matrices (lut4 q/o, gate/up and down shapes;
// lut3, lut2 at 2048x2048) on
// one thread: the int8 tile
// kernel, the int8 row kernel run per token (int8-pertoken, the previous
// MatMul) and the float path.
// tok/s counts tokens through this matrix; G-MAC/s is multiply-adds per
// second; model-tok/s is G-MAC/s over TinyLlama's 1.03 G MACs per token
// (the matrices alone: an upper bound for the model's prefill).
//
//	go test -run XXX -bench MatMulPrefill -benchtime 5x ./runtime/kernels/
func BenchmarkMatMulPrefill(b *testing.B) {
	const n = 128
	cases := []struct {
		dt         ir.DType
		rows, cols int
	}{{ir.LUT4, 2048, 2048}, {ir.LUT4, 5632, 2048}, {ir.LUT4, 2048, 5632}, {ir.LUT3, 2048, 2048}, {ir.LUT2, 2048, 2048}}
	for _, c := range cases {
		s := [2]int{c.rows, c.cols}
		for _, m := range []string{"int8", "int8-pertoken", "float"} {
			b.Run(fmt.Sprintf("%s/%dx%dx%d/%v", ir.Encodings[c.dt].Name, s[0], s[1], n, m), func(b *testing.B) {
				md := ModeInt8
				if m == "float" {
					md = ModeFloat
				}
				defer SetMode(SetMode(md))
				i8NoTile = m == "int8-pertoken"
				defer func() { i8NoTile = false }()
				rng := rand.New(rand.NewSource(1))
				w := benchTensor(rng, c.dt, s[0], s[1])
				x := make([]float32, n*s[1])
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				out := make([]float32, n*s[0])
				MatMul(w, x, out, n, 0, s[0]) // build the int8 tables, fill the pools
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					MatMul(w, x, out, n, 0, s[0])
				}
				sec := b.Elapsed().Seconds()
				macs := float64(s[0]*s[1]*n) * float64(b.N)
				b.ReportMetric(float64(n*b.N)/sec, "tok/s")
				b.ReportMetric(macs/sec/1e9, "G-MAC/s")
				b.ReportMetric(macs/sec/tinyLlamaMACs, "model-tok/s")
			})
		}
	}
}

// BenchmarkAxpy64 compares Axpy with the scalar loop attention runs per
// (query, key) pair at head dim 64.
func BenchmarkAxpy64(b *testing.B) {
	x, y := make([]float32, 64), make([]float32, 64)
	for i := range x {
		x[i] = float32(i)
	}
	b.Run("kernels.Axpy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Axpy(1e-9, x, y)
		}
	})
	b.Run("go-loop", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			a := float32(1e-9)
			for j := range y {
				y[j] += a * x[j]
			}
		}
	})
}
