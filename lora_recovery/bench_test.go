package lorarecovery

import (
	"testing"
)

// BenchmarkSeqGradQAT times one training sequence (forward, distillation,
// backward with the palette/QAT weight sink) of stories260K with every
// palettized tensor and norm tuned, as `squeeze recover --tune-luts
// --tune-norms --qat` runs it:
//
//	go test ./lora_recovery/ -run '^$' -bench SeqGrad -benchtime 40x
func BenchmarkSeqGradQAT(b *testing.B) {
	teacher := loadLlama2c(b, stories260K, tok512)
	student := palettize2(teacher)
	tokens := calibTokens(b, teacher, 128*12)
	opt := Options{Rank: 1, SeqLen: 128, Batch: 1, Threads: 1, GradClip: -1, HeldOutFrac: 0.5}
	opt.defaults(student.Config, 1)
	tu, err := newLUTTuner(teacher, student, tokens, opt, nil, false, true)
	if err != nil {
		b.Fatal(err)
	}
	N := tu.enableQAT()
	tu.tr.cacheTeacher(opt.TeacherCacheBytes)
	g := make([]float32, len(tu.theta)+N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tu.seqGrad(0, i%tu.tr.nTrain, g, 1.0/128, 0)
	}
}

// BenchmarkForward times one forward pass of the student (held-out KL and
// the teacher cache run this).
func BenchmarkForward(b *testing.B) {
	teacher := loadLlama2c(b, stories260K, tok512)
	n, err := newNet(teacher, false)
	if err != nil {
		b.Fatal(err)
	}
	a := newActs(n, 128, 1, false)
	tokens := calibTokens(b, teacher, 128)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n.forward(a, tokens)
	}
}
