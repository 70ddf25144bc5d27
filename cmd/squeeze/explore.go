package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/squeeze-ml/squeeze/formats/fileio"
	"github.com/squeeze-ml/squeeze/ir"
	"github.com/squeeze-ml/squeeze/palettize"
	"github.com/squeeze-ml/squeeze/reports"
	"github.com/squeeze-ml/squeeze/talaria"
)

func init() { extraCommands = append(extraCommands, newExploreCmd) }

// explore is the terminal bit-rate explorer. It computes what compile
// computes before allocating (calibration, every tensor's candidates and,
// per group of rows, its blocks' options, with their predicted damage and
// exact bytes), then lets the user move the target rate and pin tensors to
// a width, re-running compile's allocator (palettize.Allocate or
// AllocateGroups, as --granularity resolves) on every change, and write
// the plan for compile --plan. The TUI presents those values; it computes
// nothing the CLI cannot (DESIGN.md).
type exploreOptions struct {
	compileOptions
	Device  string
	Kernels kernelFlag
	Print   bool
}

func newExploreCmd(stdout, stderr io.Writer) *cobra.Command {
	o := &exploreOptions{}
	c := &cobra.Command{
		Use:   "explore MODEL [--calib FILE] [--target 3.7bpw] [--device D]",
		Short: "Interactive bit-rate explorer: move the target, pin tensors to a width, see size, predicted damage and device cost, write the plan",
		Long: `explore calibrates MODEL on --calib and computes every tensor's palettization
options as compile does, then opens a terminal view of compile's allocation at
--target (per tensor, or per group of rows as --granularity resolves, shown as
widths:rows): each tensor's bits, LUT group, bits per weight and its share of the
predicted damage (the calibrated output-sensitivity proxy), the bundle's weight
bytes, and, with --device, Talaria's predicted decode latency and energy.

Keys: up/down (k/j) select a tensor; left/right (h/l, -/+) move the target by
0.05 bpw; 1-8 pin the selected tensor to that width (0 unpins); w writes the plan
to --write-plan (default plan.json), which compile --plan MODEL ... takes; q quits.

When stdout is not a terminal, or with --print, it prints the allocation at --target
once (and writes --write-plan if given) instead.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runExplore(o, args, stdout, stderr) },
	}
	o.model.bind(c)
	o.bindPlannerFlags(c)
	f := c.Flags()
	f.StringVar(&o.Target, "target", "3.7bpw", "the starting target, bits per palettized weight")
	f.StringVar(&o.PlanOut, "write-plan", "", "where w writes the plan (default plan.json; with --print, write it there)")
	f.StringVar(&o.Device, "device", "", "Talaria device profile for predicted decode latency and energy (a built-in, host, or a JSON file)")
	o.Kernels.bind(c)
	f.BoolVar(&o.Print, "print", false, "print the allocation at --target and exit (the default when stdout is not a terminal)")
	f.BoolVar(&o.JSON, "json", false, "with --print (or a non-terminal stdout): print the plan, and with --device Talaria's predicted totals, as JSON")
	return c
}

func runExplore(o *exploreOptions, args []string, stdout, stderr io.Writer) error {
	target, err := parseBPW(o.Target)
	if err != nil {
		return err
	}
	bits, err := parseBits(o.Bits)
	if err != nil {
		return err
	}
	if o.PlanOut != "" {
		if err := checkOutDir("--write-plan", o.PlanOut); err != nil {
			return err
		}
	}
	m, err := o.model.load(args)
	if err != nil {
		return err
	}
	defer m.Close()
	if m.Format == "bundle" {
		return fmt.Errorf("%s is already a compiled bundle; explore the original model", m.Source)
	}
	var dev *talaria.Device
	if o.Device != "" {
		// the host profile is measured in the arithmetic a bundle runs
		// (--kernels), as compile --device host does; planning stays on float
		restore, err := o.Kernels.apply()
		if err != nil {
			return err
		}
		dev, err = talaria.ResolveDevice(o.Device, talaria.HostOptions{Log: stderr})
		restore()
		if err != nil {
			return err
		}
	}
	p, groups, _, err := o.preparePlanner(m, func(string) {}, stderr)
	if err != nil {
		return err
	}
	if err := p.candidates(bits, groups, o.PerRowScale, o.EmbeddingBits, stderr); err != nil {
		return err
	}
	x := newExplorer(m, p, dev, target)
	x.planPath = o.PlanOut
	if x.planPath == "" {
		x.planPath = "plan.json"
	}
	if x.plan == nil {
		return fmt.Errorf("explore: %s", x.status)
	}
	f, isFile := stdout.(*os.File)
	if o.Print || !isFile || !isatty.IsTerminal(f.Fd()) {
		if o.PlanOut != "" {
			if err := x.writePlan(); err != nil {
				return err
			}
			fmt.Fprintln(stderr, x.status)
		}
		if o.JSON {
			e := json.NewEncoder(stdout)
			e.SetIndent("", "  ")
			return e.Encode(exploreReport{Plan: x.plan, Predicted: x.pred, Device: o.Device})
		}
		x.printing = true
		_, err := io.WriteString(stdout, x.View())
		return err
	}
	_, err = tea.NewProgram(x, tea.WithAltScreen(), tea.WithOutput(stdout)).Run()
	if x.status != "" { // the last word (e.g. the plan written) outlives the alternate screen
		fmt.Fprintln(stderr, x.status)
	}
	return err
}

// exploreReport is explore --print --json.
type exploreReport struct {
	Plan      *palettize.Plan `json:"plan"`
	Device    string          `json:"device,omitempty"`
	Predicted *talaria.Totals `json:"predicted,omitempty"`
}

// explorer is the bubbletea model.
type explorer struct {
	m        *ir.Model
	p        *planner
	dev      *talaria.Device
	target   float64
	pins     map[string]int
	rows     []palettize.TensorCandidates
	plan     *palettize.Plan
	pred     *talaria.Totals
	cursor   int
	top      int // first row shown
	height   int // terminal rows (0 before the first WindowSizeMsg)
	planPath string
	status   string
	quit     bool
	printing bool // --print: no cursor, no key help
}

func newExplorer(m *ir.Model, p *planner, dev *talaria.Device, target float64) *explorer {
	x := &explorer{m: m, p: p, dev: dev, target: target, pins: map[string]int{}, rows: p.cands}
	x.replan()
	return x
}

// widths is the sorted set of widths tensor i can take.
func (x *explorer) widths(i int) []int {
	var w []int
	add := func(b int) {
		if !slices.Contains(w, b) {
			w = append(w, b)
		}
	}
	for _, o := range x.rows[i].Options {
		add(o.Bits)
	}
	for _, tb := range x.p.blocks {
		if tb.Name == x.rows[i].Name {
			for _, o := range tb.Options {
				add(o.Bits)
			}
		}
	}
	slices.Sort(w)
	return w
}

// replan runs compile's allocator (per tensor, or per group of rows as
// compile chooses) on the candidates, a pinned tensor (all its row blocks)
// offered only its pinned width. On failure (a target the pins or the
// widths cannot meet) the previous plan stays, status says why and it
// returns false, so the caller can undo the change that failed.
func (x *explorer) replan() bool {
	cands := slices.Clone(x.rows)
	for i, tc := range cands {
		if b, ok := x.pins[tc.Name]; ok {
			cands[i].Options = onlyWidth(tc.Options, func(o palettize.Candidate) int { return o.Bits }, b)
		}
	}
	blocks := slices.Clone(x.p.blocks)
	for i, tb := range blocks {
		if b, ok := x.pins[tb.Name]; ok {
			blocks[i].Options = onlyWidth(tb.Options, func(o palettize.BlockOption) int { return o.Bits }, b)
		}
	}
	plan, err := x.p.allocateFrom(cands, blocks, x.target)
	if err != nil {
		x.status = err.Error()
		return false
	}
	x.plan, x.status = plan, ""
	x.pred = nil
	if x.dev != nil {
		res, err := talaria.Profile(talaria.Options{Config: x.m.Config, Model: x.m.Source, Device: x.dev, Plan: planFromPalettize(plan)})
		if err != nil {
			x.status = "talaria: " + err.Error()
			return true // (the plan stands; only the prediction is missing)
		}
		x.pred = &res.Totals
	}
	return true
}

// onlyWidth is the options of width b (a fresh slice: the planner's own
// are left as they are).
func onlyWidth[O any](opts []O, width func(O) int, b int) []O {
	var out []O
	for _, o := range opts {
		if width(o) == b {
			out = append(out, o)
		}
	}
	return out
}

func (x *explorer) writePlan() error {
	err := fileio.WriteAtomic(x.planPath, func(f *os.File) error { return palettize.WritePlan(f, x.plan) })
	if err != nil {
		x.status = "write plan: " + err.Error()
		return err
	}
	x.status = fmt.Sprintf("wrote %s (%.3f bpw); use it with: squeeze compile %s --plan %s -o OUT.sqz", x.planPath, x.plan.AchievedBPW, x.m.Source, x.planPath)
	return nil
}

func (x *explorer) Init() tea.Cmd { return nil }

func (x *explorer) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		x.height = msg.Height
	case tea.KeyMsg:
		switch k := msg.String(); k {
		case "q", "ctrl+c", "esc":
			x.quit = true
			return x, tea.Quit
		case "up", "k":
			x.cursor = max(0, x.cursor-1)
		case "down", "j":
			x.cursor = min(len(x.rows)-1, x.cursor+1)
		case "left", "h", "-":
			x.setTarget(x.target - 0.05)
		case "right", "l", "+", "=":
			x.setTarget(x.target + 0.05)
		case "0", "backspace":
			// (freeing a pin only adds options, so the plan cannot fail)
			if name := x.rows[x.cursor].Name; x.pins[name] != 0 {
				delete(x.pins, name)
				x.replan()
			}
		case "1", "2", "3", "4", "5", "6", "7", "8":
			b := int(k[0] - '0')
			name := x.rows[x.cursor].Name
			if !slices.Contains(x.widths(x.cursor), b) {
				x.status = fmt.Sprintf("%s has no %d-bit option (widths %v; --bits chooses them)", name, b, x.widths(x.cursor))
				break
			}
			prev, had := x.pins[name]
			x.pins[name] = b
			if !x.replan() { // the pins no longer fit the target: undo, keep the status
				if had {
					x.pins[name] = prev
				} else {
					delete(x.pins, name)
				}
			}
		case "w":
			_ = x.writePlan() // (the status line shows the outcome)
		}
	}
	return x, nil
}

// setTarget moves the target and re-allocates; a target the candidates
// cannot meet is undone (the status says why).
func (x *explorer) setTarget(t float64) {
	prev := x.target
	x.target = math.Round(math.Max(t, 0.05)*100) / 100
	if !x.replan() {
		x.target = prev
	}
}

// View draws the header (rate, bytes, damage, device figures), the
// tensor table around the cursor and the key help.
func (x *explorer) View() string {
	if x.quit {
		return ""
	}
	var b strings.Builder
	pl := x.plan
	fmt.Fprintf(&b, "squeeze explore %s: target %.2f bpw, achieved %.3f bpw, %s of palettized weights, %d tensors (%d pinned)\n",
		x.m.Source, x.target, pl.AchievedBPW, reports.Bytes(pl.TotalBits/8), len(pl.Tensors), len(x.pins))
	fmt.Fprintf(&b, "predicted damage %.5g (lower bound %.5g at this size)", pl.PredictedDamage, pl.LowerBound)
	if x.pred != nil {
		fmt.Fprintf(&b, "; %s: decode %.3f ms/token (%.1f tok/s), %.3f mJ/token, weights %s",
			x.dev.Name, x.pred.DecodeMsPerToken, x.pred.DecodeTokensPerS, x.pred.EnergyMJPerToken, reports.Bytes(x.pred.WeightBytes))
	}
	b.WriteString("\n\n")
	byName := map[string]palettize.PlanEntry{}
	for _, e := range pl.Tensors {
		byName[e.Name] = e
	}
	rows := make([][]string, 0, len(x.rows))
	lo, hi := x.window()
	for i := lo; i < hi; i++ {
		tc := x.rows[i]
		e := byName[tc.Name]
		mark := "" // the cursor column, interactive only
		if !x.printing {
			mark = "  "
			if i == x.cursor {
				mark = "> "
			}
		}
		bits, group := entryCells(e) // per-group: widths with their rows ("4s:32 2:140", s = scale)
		if e.PerRowScale {
			bits += " +scale"
		}
		if _, ok := x.pins[tc.Name]; ok {
			bits += " (pinned)"
		}
		share := 0.0
		if pl.PredictedDamage > 0 {
			share = e.Damage / pl.PredictedDamage
		}
		rows = append(rows, []string{mark + tc.Name, fmt.Sprint(tc.Shape), bits, group, fmt.Sprintf("%.3f", e.BPW),
			fmt.Sprintf("%.4g", e.Damage), fmt.Sprintf("%5.1f%% %s", 100*share, strings.Repeat("#", int(math.Round(20*share))))})
	}
	_ = reports.Table(&b, []string{"tensor", "shape", "bits", "lut rows", "bpw", "damage", "share of damage"}, rows, nil)
	if hi-lo < len(x.rows) {
		fmt.Fprintf(&b, "tensors %d-%d of %d\n", lo+1, hi, len(x.rows))
	}
	if !x.printing {
		b.WriteString("up/down select · left/right target -/+0.05 bpw · 1-8 pin bits · 0 unpin · w write plan · q quit\n")
	}
	if x.status != "" {
		b.WriteString(x.status + "\n")
	}
	return b.String()
}

// window is the range of rows that fits the terminal, keeping the cursor
// in view (all rows before the terminal's size is known).
func (x *explorer) window() (int, int) {
	n := len(x.rows)
	room := x.height - 10 // header, table frame, help, status
	if x.height == 0 || room >= n {
		return 0, n
	}
	room = max(room, 3)
	if x.cursor < x.top {
		x.top = x.cursor
	}
	if x.cursor >= x.top+room {
		x.top = x.cursor - room + 1
	}
	return x.top, min(n, x.top+room)
}
