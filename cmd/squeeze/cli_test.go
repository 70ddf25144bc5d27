package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const stories = "../../testdata/stories260K/stories260K.bin"

func squeeze(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestRunGreedyPrintsRecordedText(t *testing.T) {
	out, _, err := squeeze(t, "run", stories, "--prompt", "Once upon a time", "-n", "64", "--temp", "0")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile("../../testdata/stories260K/stories260K.md")
	want := string(md)
	want = want[strings.Index(want, "-t 0.0\n")+len("-t 0.0\n"):]
	want = want[:strings.Index(want, "```")]
	out = strings.TrimSuffix(out, "\n")
	if len(out) < 150 || !strings.HasPrefix(want, out) {
		t.Fatalf("squeeze run printed %q, which is not a prefix of llama2.c's greedy text %q", out, want)
	}
}

func TestEvalJSONFields(t *testing.T) {
	out, _, err := squeeze(t, "eval", stories, "--text", "../../testdata/tinystories/calib.txt", "--ctx", "128",
		"--max-windows", "4", "--ref", stories, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval --json is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"ppl", "nll", "tokens", "kld_mean", "kld_p99", "top1_agree"} {
		if _, ok := r[k]; !ok {
			t.Errorf("eval --json lacks %q: %s", k, out)
		}
	}
	if r["tokens"].(float64) != 4*63 {
		t.Errorf("tokens = %v, want 4 windows x 63", r["tokens"])
	}
}

func TestInspectJSON(t *testing.T) {
	out, _, err := squeeze(t, "inspect", stories, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Config.Dim != 64 || r.Config.Layers != 5 || len(r.Ops) != 2+5*14+1 || r.Params != 260032 {
		t.Fatalf("inspect: dim %d layers %d ops %d params %d", r.Config.Dim, r.Config.Layers, len(r.Ops), r.Params)
	}
}

func TestBadInputErrors(t *testing.T) {
	dir := t.TempDir()
	full, _ := os.ReadFile(stories)
	trunc := filepath.Join(dir, "trunc.bin")
	os.WriteFile(trunc, full[:len(full)/2], 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", filepath.Join(dir, "nope.bin"), "--prompt", "x"}, "no such file"},
		{[]string{"run", trunc, "--prompt", "x", "--tokenizer", "../../testdata/stories260K/tok512.bin"}, "trunc.bin"},
		{[]string{"eval", stories}, "--text"},
		{[]string{"eval", stories, "--text", "../../testdata/tinystories/calib.txt", "--ctx", "100000"}, "context"},
		{[]string{"run", "--synthetic", "stories110M", "--prompt", "x"}, "no tokenizer"},
		{[]string{"inspect", "--synthetic", "nope"}, "unknown"},
	}
	for _, c := range cases {
		_, _, err := squeeze(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("squeeze %v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}
