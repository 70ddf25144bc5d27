package runtime

import (
	"testing"
	"time"
)

// Every op the IR lists is timed once per forward pass, under its IR name.
func TestOpTimerCoversIROps(t *testing.T) {
	m := loadStories(t)
	seen := map[string]int{}
	rt, err := New(m, Options{Threads: 1, OpTimer: func(op string, d time.Duration) { seen[op]++ }})
	if err != nil {
		t.Fatal(err)
	}
	logits := make([]float32, m.Config.Vocab)
	if err := rt.Forward(rt.NewState(0), []int{1, 403}, logits, false); err != nil {
		t.Fatal(err)
	}
	ops := m.Config.Ops()
	if len(seen) != len(ops) {
		t.Errorf("timed %d distinct ops, the IR has %d", len(seen), len(ops))
	}
	for _, o := range ops {
		if seen[o.Name] != 1 {
			t.Errorf("op %s timed %d times", o.Name, seen[o.Name])
		}
	}
}
