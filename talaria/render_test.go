package talaria

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/squeeze-ml/squeeze/ir"
)

func afmResult(t *testing.T, phase string) *Result {
	c, _ := ir.SyntheticConfig("afm-on-device")
	d, _ := Builtin("iphone15pro-ane")
	r, err := Profile(Options{Config: c, Model: "synthetic:afm-on-device", Device: d, Plan: UniformBPW(3.7), Phase: phase})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRowsSortGroup(t *testing.T) {
	r := afmResult(t, "decode")
	var total float64
	for _, o := range r.Ops {
		total += o.LatencyUs
	}
	for _, g := range []string{"op", "layer", "type"} {
		for _, s := range []string{"latency", "energy", "bytes"} {
			rows, err := Rows(r, TableOptions{GroupBy: g, SortBy: s})
			if err != nil {
				t.Fatal(err)
			}
			wantN := map[string]int{"op": len(r.Ops), "layer": 26 + 3, "type": 14 + 3}[g]
			if len(rows) != wantN {
				t.Errorf("group %s: %d rows, want %d", g, len(rows), wantN)
			}
			var sum float64
			for i, x := range rows {
				sum += x.LatencyUs
				if i == 0 {
					continue
				}
				p := rows[i-1]
				if (s == "latency" && x.LatencyUs > p.LatencyUs) || (s == "energy" && x.EnergyUJ > p.EnergyUJ) || (s == "bytes" && x.Bytes > p.Bytes) {
					t.Fatalf("group %s sort %s: row %d (%s) above its predecessor", g, s, i, x.Key)
				}
			}
			near(t, "grouped latency sum "+g, sum, total)
		}
	}
	// Grouped by type, the three FFN matrices are the hot spots of a
	// memory-bound decode, each 26 ops at 3.7 bits.
	rows, _ := Rows(r, TableOptions{GroupBy: "type"})
	for _, x := range rows[:3] {
		if !strings.HasPrefix(x.Key, "ffn_") || x.Ops != 26 || abs(x.Bits-3.7) > 1e-9 {
			t.Errorf("hot spot %+v", x)
		}
	}
	if _, err := Rows(r, TableOptions{GroupBy: "tensor"}); err == nil {
		t.Error("bad group accepted")
	}
	if _, err := Rows(r, TableOptions{SortBy: "speed"}); err == nil {
		t.Error("bad sort accepted")
	}
}

func TestRenderTable(t *testing.T) {
	r := afmResult(t, "prefill")
	var buf bytes.Buffer
	if err := RenderTable(&buf, r, TableOptions{GroupBy: "layer", SortBy: "energy", Top: 4}); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	lines := strings.Split(s, "\n")
	var body []string
	for _, l := range lines {
		if strings.HasPrefix(l, "│") {
			body = append(body, l)
		}
	}
	// header, 4 rows, footer
	if len(body) != 6 || !strings.Contains(body[0], "latency µs") || !strings.Contains(body[5], "TOTAL (29 rows, top 4 shown)") {
		t.Fatalf("table:\n%s", s)
	}
	if !strings.Contains(s, "for the whole prefill of 1024 tokens") || !strings.Contains(s, "time to first token") || !strings.Contains(s, "peak memory") {
		t.Errorf("summary lines missing:\n%s", s)
	}
}

// MUST HOLD 4: the JSON keys are stable and documented.
func TestJSONSchema(t *testing.T) {
	r := afmResult(t, "decode")
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["schema"] != ResultSchema {
		t.Errorf("schema %v", m["schema"])
	}
	tot := m["totals"].(map[string]any)
	for _, k := range []string{"ttft_ms", "ms_per_prompt_token", "decode_tokens_per_s", "energy_mj_per_token", "peak_memory_bytes"} {
		if v, ok := tot[k].(float64); !ok || !(v > 0) {
			t.Errorf("totals.%s = %v", k, tot[k])
		}
	}
	ops := m["ops"].([]any)
	if len(ops) != len(r.Ops) {
		t.Fatalf("%d ops", len(ops))
	}
	lin := ops[2].(map[string]any) // blk.0.attn_q
	for _, k := range []string{"name", "kind", "bits", "latency_us", "energy_uj", "weight_bytes", "flops"} {
		if _, ok := lin[k]; !ok {
			t.Errorf("op key %q missing", k)
		}
	}
	if lin["name"] != "blk.0.attn_q" || lin["kind"] != "linear" || lin["bits"] != 3.7 || lin["flops"] != float64(2*3072*3072) {
		t.Errorf("op: %v", lin)
	}
	// The documentation lists every key the JSON has.
	doc := readDoc(t)
	for _, k := range jsonKeys(m) {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("docs/TALARIA.md does not document key %q", k)
		}
	}
}

func jsonKeys(v any) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				seen[k] = true
				walk(e)
			}
		case []any:
			if len(x) > 0 {
				walk(x[0])
			}
		}
	}
	walk(v)
	return sortedKeys(seen)
}
