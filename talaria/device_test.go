package talaria

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltinsValidAndSourced(t *testing.T) {
	names := BuiltinNames()
	want := []string{"host", "iphone15pro-ane", "iphone15pro-cpu", "m2", "rpi5", "snapdragon8gen3"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("BuiltinNames = %v, want %v", names, want)
	}
	for _, n := range want[1:] {
		d, err := Builtin(n)
		if err != nil {
			t.Fatal(err)
		}
		if d.Name != n {
			t.Errorf("%s: name field %q", n, d.Name)
		}
		if m := d.MissingSources(); len(m) > 0 {
			t.Errorf("%s: numbers without a source: %v", n, m)
		}
		// Efficiency factors are per device class, never per profile.
		e := ClassEfficiency[d.Class]
		if d.MemEfficiency != e.Mem || d.ComputeEfficiency != e.Compute {
			t.Errorf("%s (%s): efficiencies %v/%v, class says %v/%v", n, d.Class, d.MemEfficiency, d.ComputeEfficiency, e.Mem, e.Compute)
		}
		// Round trip through the JSON writer.
		var buf bytes.Buffer
		if err := WriteDevice(&buf, d); err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDevice(&buf, "roundtrip")
		if err != nil {
			t.Fatalf("%s: round trip: %v", n, err)
		}
		if d2.MemBandwidthGBs != d.MemBandwidthGBs || d2.LUTDecodeGElemS["3"] != d.LUTDecodeGElemS["3"] {
			t.Errorf("%s: round trip changed values", n)
		}
	}
	if _, err := Builtin("iphone99"); err == nil || !strings.Contains(err.Error(), "iphone15pro-ane") {
		t.Errorf("unknown built-in error should list the built-ins, got %v", err)
	}
}

func TestUserProfileValidation(t *testing.T) {
	good, err := os.ReadFile("profiles/m2.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, from, to, wantErr string
	}{
		{"bad schema", `"squeeze.talaria.device/v1"`, `"v0"`, `field "schema": expected "squeeze.talaria.device/v1", found "v0"`},
		{"unknown field", `"class": "gpu",`, `"class": "gpu", "bandwith": 3,`, `unknown field "bandwith"`},
		{"wrong type", `"mem_bandwidth_gbs": 100,`, `"mem_bandwidth_gbs": "fast",`, `field "mem_bandwidth_gbs": expected float64, found JSON string`},
		{"efficiency > 1", `"mem_efficiency": 0.84,`, `"mem_efficiency": 1.5,`, `field "mem_efficiency": expected a fraction in (0, 1], found 1.5`},
		{"negative bandwidth", `"mem_bandwidth_gbs": 100,`, `"mem_bandwidth_gbs": -1,`, `field "mem_bandwidth_gbs": expected a finite number > 0, found -1`},
		{"missing LUT width", `"3": 337.5, `, ``, `field "lut_decode_gelem_s": expected an entry for every index width [1 2 3 4 6 8], found no entry "3"`},
		{"bad class", `"class": "gpu"`, `"class": "tpu"`, `field "class": expected "npu", "gpu" or "cpu", found "tpu"`},
		{"bad act bytes", `"act_bytes": 2`, `"act_bytes": 3`, `field "act_bytes": expected 2 (float16) or 4 (float32), found 3`},
		{"bad source key", `"sources": {`, `"sources": {"speed": "x",`, `field "sources": expected keys among`},
		{"syntax", `"name": "m2",`, `"name": "m2"`, `not valid JSON`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		s := string(good)
		if !strings.Contains(s, c.from) {
			t.Fatalf("%s: fixture lacks %q", c.name, c.from)
		}
		s = strings.Replace(s, c.from, c.to, 1)
		p := filepath.Join(dir, "dev.json")
		os.WriteFile(p, []byte(s), 0o644)
		_, err := LoadDevice(p)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want it to name %s and contain %q", c.name, err, p, c.wantErr)
		}
	}
	// A user profile need not cite sources, and ResolveDevice reads files.
	s := strings.Replace(string(good), `"name": "m2"`, `"name": "mine"`, 1)
	i := strings.Index(s, `,
  "sources"`)
	s = s[:i] + "\n}\n"
	p := filepath.Join(dir, "mine.json")
	os.WriteFile(p, []byte(s), 0o644)
	d, err := ResolveDevice(p, HostOptions{})
	if err != nil || d.Name != "mine" || len(d.MissingSources()) != len(NumericFields) {
		t.Fatalf("user profile without sources: %v %v", d, err)
	}
	if _, err := LoadDevice(filepath.Join(dir, "nope.json")); err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Errorf("missing file error: %v", err)
	}
}

func TestLUTThroughputInterpolation(t *testing.T) {
	d, _ := Builtin("m2")
	if got := d.LUTThroughput(4); got != 450e9 {
		t.Errorf("4 bits: %v", got)
	}
	// 3.7 lies between 3 (337.5) and 4 (450): 337.5 + 0.7*112.5.
	if got, want := d.LUTThroughput(3.7), (337.5+0.7*112.5)*1e9; abs(got-want) > 1 {
		t.Errorf("3.7 bits: %v, want %v", got, want)
	}
	if got := d.LUTThroughput(0.5); got != 450e9 {
		t.Errorf("clamp below: %v", got)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
