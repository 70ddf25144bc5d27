package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/squeeze-ml/squeeze/formats"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/talaria"
)

const exploreCalib = "../../testdata/tinystories/calib.txt"

func readPlanFile(t *testing.T, path string) *palettize.Plan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := palettize.ReadPlan(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExplorePrintMatchesCompile: explore --print --write-plan writes the
// plan compile allocates from the same flags (it computes nothing compile
// does not), per group of rows (the default on this model) and per
// tensor, and prints it.
func TestExplorePrintMatchesCompile(t *testing.T) {
	dir := t.TempDir()
	flags := []string{"--calib", exploreCalib, "--calib-windows", "4", "--target", "3.5bpw"}
	for _, gran := range []string{"auto", "tensor"} {
		ex := filepath.Join(dir, gran+"-explore.json")
		out, _, err := squeeze(t, append(append([]string{"explore", stories, "--granularity", gran}, flags...), "--print", "--write-plan", ex)...)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(dir, gran+"-compile.json")
		if _, _, err := squeeze(t, append(append([]string{"compile", stories, "--granularity", gran}, flags...), "--write-plan", cp, "-o", filepath.Join(dir, "c.sqz"))...); err != nil {
			t.Fatal(err)
		}
		a, b := readPlanFile(t, ex), readPlanFile(t, cp)
		ja, _ := json.Marshal(a.Tensors)
		jb, _ := json.Marshal(b.Tensors)
		if !bytes.Equal(ja, jb) || a.AchievedBPW != b.AchievedBPW || a.AchievedBPW > 3.5 || a.Granularity != b.Granularity {
			t.Errorf("--granularity %s: explore's plan (%.4f bpw, %q) differs from compile's (%.4f bpw, %q)", gran, a.AchievedBPW, a.Granularity, b.AchievedBPW, b.Granularity)
		}
		if !strings.Contains(out, "target 3.50 bpw") || !strings.Contains(out, "blk.4.ffn_down") || strings.Contains(out, "q quit") {
			t.Errorf("explore --print output:\n%s", out)
		}
		if gran == "auto" && (a.Granularity != "group" || !strings.Contains(out, ":")) {
			t.Errorf("per-group plan expected on stories260K (granularity %q):\n%s", a.Granularity, out)
		}
	}
	// --json: the same plan, with the device's predicted totals
	out, _, err := squeeze(t, append(append([]string{"explore", stories}, flags...), "--print", "--json", "--device", "rpi5")...)
	if err != nil {
		t.Fatal(err)
	}
	var rep exploreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("explore --json: %v\n%s", err, out)
	}
	want := readPlanFile(t, filepath.Join(dir, "auto-compile.json"))
	if rep.Plan == nil || rep.Plan.AchievedBPW != want.AchievedBPW || rep.Device != "rpi5" || rep.Predicted == nil || !(rep.Predicted.DecodeMsPerToken > 0) {
		t.Errorf("explore --json: %+v", rep)
	}
	if _, _, err := squeeze(t, "explore", stories, "--print", "--write-plan", filepath.Join(dir, "no", "p.json")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("--write-plan into a missing directory: %v", err)
	}
}

// TestExploreKeys drives the TUI model: the target moves in 0.05 steps and
// the plan follows within it; a pin holds a tensor at its width (and the
// allocator spends the rest elsewhere); a width the tensor has no option
// for, or a target the candidates cannot meet, leaves the plan as it was
// with a status line; w writes a plan the model validates; q quits.
func TestExploreKeys(t *testing.T) {
	for _, gran := range []string{"tensor", "auto"} { // auto: per group of rows on this model
		t.Run(gran, func(t *testing.T) { exploreKeys(t, gran) })
	}
}

// entryWidths is the set of widths a plan entry uses (its parts' for a
// per-group entry).
func entryWidths(e palettize.PlanEntry) []int {
	if len(e.Parts) == 0 {
		return []int{e.Bits}
	}
	var w []int
	for _, p := range e.Parts {
		if !slices.Contains(w, p.Bits) {
			w = append(w, p.Bits)
		}
	}
	slices.Sort(w)
	return w
}

func exploreKeys(t *testing.T, gran string) {
	m, err := formats.Load(stories, formats.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// compile's flag defaults, with a short calibration
	o := &exploreOptions{}
	o.compileOptions = compileOptions{Calib: exploreCalib, CalibCtx: 256, CalibWindows: 4, GroupSize: "auto", Granularity: gran,
		Proxy: "fisher", ErrorFeedback: "auto", Fast: "auto", RefitLUT: 1, Method: "exact", Seed: 1, EmbeddingBits: "auto", PerRowScale: true}
	p, groups, _, err := o.preparePlanner(m, func(string) {}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.candidates([]int{2, 3, 4}, groups, true, "auto", &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	x := newExplorer(m, p, nil, 3.7)
	x.planPath = filepath.Join(t.TempDir(), "plan.json")
	key := func(k string) tea.Cmd {
		t.Helper()
		var msg tea.KeyMsg
		switch k {
		case "up", "down", "left", "right":
			msg = tea.KeyMsg{Type: map[string]tea.KeyType{"up": tea.KeyUp, "down": tea.KeyDown, "left": tea.KeyLeft, "right": tea.KeyRight}[k]}
		default:
			msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		_, cmd := x.Update(msg)
		return cmd
	}
	entry := func(name string) palettize.PlanEntry {
		for _, e := range x.plan.Tensors {
			if e.Name == name {
				return e
			}
		}
		t.Fatalf("%s not in the plan", name)
		return palettize.PlanEntry{}
	}
	start := x.plan.AchievedBPW
	t.Logf("3.7 bpw: achieved %.4f, damage %.4g, %d tensors", start, x.plan.PredictedDamage, len(x.plan.Tensors))
	key("right")
	key("right")
	if x.target != 3.8 || !(x.plan.AchievedBPW > start) || x.plan.AchievedBPW > 3.8 {
		t.Errorf("two steps right: target %v, achieved %v (was %v)", x.target, x.plan.AchievedBPW, start)
	}
	key("left")
	key("left")
	if x.target != 3.7 || x.plan.AchievedBPW != start {
		t.Errorf("and back: target %v, achieved %v, want %v", x.target, x.plan.AchievedBPW, start)
	}
	// pin the cursor's tensor (down 7: blk.0.ffn_down) to 2 bits
	for range 7 {
		key("down")
	}
	name := x.rows[x.cursor].Name
	if name != "blk.0.ffn_down" || slices.Equal(entryWidths(entry(name)), []int{2}) {
		t.Fatalf("cursor on %s at %v bits; the test expects blk.0.ffn_down above 2 bits at 3.7 bpw", name, entryWidths(entry(name)))
	}
	damage := x.plan.PredictedDamage
	key("2")
	if !slices.Equal(entryWidths(entry(name)), []int{2}) || x.pins[name] != 2 || x.plan.AchievedBPW > 3.7 || !(x.plan.PredictedDamage >= damage) || !strings.Contains(x.View(), "(pinned)") {
		t.Errorf("pinned to 2: %v bits, achieved %v, damage %v (unpinned %v)", entryWidths(entry(name)), x.plan.AchievedBPW, x.plan.PredictedDamage, damage)
	}
	before := x.plan
	key("8")
	if x.plan != before || !strings.Contains(x.status, "no 8-bit option") {
		t.Errorf("pin to an absent width: status %q", x.status)
	}
	key("0")
	if _, ok := x.pins[name]; ok || x.plan.AchievedBPW != start {
		t.Errorf("unpinned: pins %v, achieved %v, want %v", x.pins, x.plan.AchievedBPW, start)
	}
	// below what 2 bits everywhere can reach: the target stops at the
	// lowest one met (the view never shows a plan above its target), and
	// the status says why
	for range 40 {
		key("left")
	}
	if x.plan == nil || x.status == "" || x.plan.AchievedBPW < 1.5 || x.plan.AchievedBPW > x.target || x.target > 2.6 {
		t.Errorf("impossible target: target %v, plan %v bpw, status %q", x.target, x.plan.AchievedBPW, x.status)
	}
	// there, pinning the embedding to 4 bits cannot fit: the pin is undone
	x.cursor = 0
	before = x.plan
	if x.rows[0].Name != "token_embd" {
		t.Fatalf("row 0 is %s", x.rows[0].Name)
	}
	key("4")
	if _, ok := x.pins["token_embd"]; ok || x.plan != before || x.status == "" {
		t.Errorf("a pin that does not fit at %v bpw: pins %v, status %q", x.target, x.pins, x.status)
	}
	for x.target < 3.0 {
		key("right")
	}
	key("w")
	got := readPlanFile(t, x.planPath)
	if err := got.Validate(m); err != nil || got.AchievedBPW != x.plan.AchievedBPW || !strings.Contains(x.status, "wrote") {
		t.Errorf("written plan: %v, %v bpw (shown %v), status %q", err, got.AchievedBPW, x.plan.AchievedBPW, x.status)
	}
	// a short terminal shows a window that follows the cursor
	x.Update(tea.WindowSizeMsg{Width: 120, Height: 16})
	for range 30 {
		key("down")
	}
	v := x.View()
	if !strings.Contains(v, "> "+x.rows[x.cursor].Name) || strings.Contains(v, "token_embd") || !strings.Contains(v, "of 36") {
		t.Errorf("windowed view at row %d:\n%s", x.cursor, v)
	}
	// with a device, every plan comes with Talaria's prediction, and more
	// bits cost more predicted decode time
	dev, err := talaria.Builtin("rpi5")
	if err != nil {
		t.Fatal(err)
	}
	xd := newExplorer(m, p, dev, 3.0)
	lowMs := xd.pred.DecodeMsPerToken
	xd.setTarget(4.3)
	if xd.pred == nil || !(xd.pred.DecodeMsPerToken > lowMs) || !strings.Contains(xd.View(), dev.Name+": decode") {
		t.Errorf("device %s: decode %v ms at 3.0 bpw, %+v at 4.3", dev.Name, lowMs, xd.pred)
	}
	if cmd := key("q"); cmd == nil || !x.quit || x.View() != "" {
		t.Error("q does not quit")
	}
}
