package talaria

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
)

// TableOptions control the table view of a Result.
type TableOptions struct {
	SortBy  string // "latency" (default), "energy" or "bytes"; largest first
	GroupBy string // "op" (default), "layer" or "type"
	Top     int    // show only the first Top rows (0: all); totals still cover every op
}

// Row is one line of the table view: an op, or the sum over a layer or an
// op type, in the phase the Result reports.
type Row struct {
	Key         string  `json:"key"`
	Kind        string  `json:"kind"`
	Ops         int     `json:"ops"`
	Bits        float64 `json:"bits"` // element-weighted over the row's weights
	WeightBytes int64   `json:"weight_bytes"`
	Bytes       int64   `json:"bytes"`
	FLOPs       float64 `json:"flops"`
	LatencyUs   float64 `json:"latency_us"`
	EnergyUJ    float64 `json:"energy_uj"`
	Bound       string  `json:"bound"` // of a single op; "mixed" for groups that differ
	elems       int64
}

// Rows groups and sorts the per-op results, hot spots first.
func Rows(r *Result, opt TableOptions) ([]Row, error) {
	key := func(o OpResult) string { return o.Name }
	switch opt.GroupBy {
	case "", "op":
	case "layer":
		key = func(o OpResult) string {
			if o.Layer < 0 {
				return "global:" + o.Name
			}
			return fmt.Sprintf("blk.%d", o.Layer)
		}
	case "type":
		key = func(o OpResult) string {
			if o.Layer < 0 {
				return o.Name
			}
			return strings.TrimPrefix(o.Name, fmt.Sprintf("blk.%d.", o.Layer))
		}
	default:
		return nil, fmt.Errorf("table: group by %q, expected op, layer or type", opt.GroupBy)
	}
	var rows []Row
	at := map[string]int{}
	for _, o := range r.Ops {
		k := key(o)
		i, ok := at[k]
		if !ok {
			i = len(rows)
			at[k] = i
			rows = append(rows, Row{Key: k, Kind: o.Kind, Bound: o.Bound})
		}
		w := &rows[i]
		w.Ops++
		if w.Kind != o.Kind {
			w.Kind = "mixed"
		}
		if w.Bound != o.Bound {
			w.Bound = "mixed"
		}
		w.WeightBytes += o.WeightBytes
		w.Bytes += o.Bytes
		w.FLOPs += o.FLOPs
		w.LatencyUs += o.LatencyUs
		w.EnergyUJ += o.EnergyUJ
		if o.WeightElems > 0 {
			w.Bits = (w.Bits*float64(w.elems) + o.Bits*float64(o.WeightElems)) / float64(w.elems+o.WeightElems)
			w.elems += o.WeightElems
		}
	}
	var less func(a, b Row) bool
	switch opt.SortBy {
	case "", "latency":
		less = func(a, b Row) bool { return a.LatencyUs > b.LatencyUs }
	case "energy":
		less = func(a, b Row) bool { return a.EnergyUJ > b.EnergyUJ }
	case "bytes":
		less = func(a, b Row) bool { return a.Bytes > b.Bytes }
	default:
		return nil, fmt.Errorf("table: sort by %q, expected latency, energy or bytes", opt.SortBy)
	}
	sort.SliceStable(rows, func(i, j int) bool { return less(rows[i], rows[j]) })
	return rows, nil
}

// RenderTable writes the per-op table (tablewriter) with totals at the foot
// and the whole-model figures below it.
func RenderTable(w io.Writer, r *Result, opt TableOptions) error {
	rows, err := Rows(r, opt)
	if err != nil {
		return err
	}
	var sumLat, sumE, sumF float64
	var sumB int64
	for _, x := range rows {
		sumLat += x.LatencyUs
		sumE += x.EnergyUJ
		sumF += x.FLOPs
		sumB += x.Bytes
	}
	shown := rows
	if opt.Top > 0 && opt.Top < len(rows) {
		shown = rows[:opt.Top]
	}
	fmt.Fprintf(w, "%s on %s (%s), %s: prefill %d tokens, decode at context %d; per-op figures are %s\n",
		r.Model, r.Device, r.DeviceClass, planSummary(r), r.PrefillTokens, r.DecodeContext, phaseLabel(r))
	t := tablewriter.NewTable(w,
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithFooterAutoFormat(tw.Off),
		tablewriter.WithRowAlignmentConfig(tw.CellAlignment{PerColumn: []tw.Align{tw.AlignLeft, tw.AlignLeft, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignLeft}}),
		tablewriter.WithFooterAlignmentConfig(tw.CellAlignment{PerColumn: []tw.Align{tw.AlignLeft, tw.AlignLeft, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignRight, tw.AlignLeft}}),
	)
	t.Header("op", "kind", "bits", "weights", "moved", "MFLOP", "latency µs", "time %", "energy µJ", "bound")
	for _, x := range shown {
		bits := "-"
		if x.elems > 0 {
			bits = fmt.Sprintf("%.2f", x.Bits)
		}
		if err := t.Append(x.Key, x.Kind, bits, human(x.WeightBytes), human(x.Bytes), fmt.Sprintf("%.1f", x.FLOPs/1e6),
			fmt.Sprintf("%.1f", x.LatencyUs), fmt.Sprintf("%.1f", 100*x.LatencyUs/sumLat), fmt.Sprintf("%.1f", x.EnergyUJ), x.Bound); err != nil {
			return err
		}
	}
	label := "TOTAL"
	if len(shown) < len(rows) {
		label = fmt.Sprintf("TOTAL (%d rows, top %d shown)", len(rows), len(shown))
	}
	t.Footer(label, "", fmt.Sprintf("%.2f", r.Totals.BitsPerWeight), human(r.Totals.WeightBytes), human(sumB),
		fmt.Sprintf("%.1f", sumF/1e6), fmt.Sprintf("%.1f", sumLat), "100.0", fmt.Sprintf("%.1f", sumE), "")
	if err := t.Render(); err != nil {
		return err
	}
	T := r.Totals
	fmt.Fprintf(w, "time to first token %.1f ms (%.3f ms per prompt token, %.0f tokens/s); decode %.2f ms/token = %.1f tokens/s\n",
		T.TTFTMs, T.MsPerPromptToken, T.PrefillTokensPerS, T.DecodeMsPerToken, T.DecodeTokensPerS)
	fmt.Fprintf(w, "energy %.2f mJ per decoded token (%.2f W), %.3f mJ per prompt token (%.2f W)\n",
		T.EnergyMJPerToken, T.DecodePowerW, T.PrefillEnergyMJPerToken, T.PrefillPowerW)
	fit := "fits"
	if !T.FitsInMemory {
		fit = "DOES NOT FIT"
	}
	_, err = fmt.Fprintf(w, "peak memory %s = weights %s + KV cache %s + activations %s (%s in the device's memory)\n",
		human(T.PeakMemoryBytes), human(T.WeightBytes), human(T.KVCacheBytes), human(T.ActivationBytes), fit)
	return err
}

func phaseLabel(r *Result) string {
	if r.Phase == "prefill" {
		return fmt.Sprintf("for the whole prefill of %d tokens", r.PrefillTokens)
	}
	return fmt.Sprintf("for one decode step at context %d", r.DecodeContext)
}

func planSummary(r *Result) string {
	return fmt.Sprintf("%.2f bits/weight", r.Totals.BitsPerWeight)
}

// WriteJSON writes any talaria result (Result, WhatIfResult, BudgetResult)
// as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// human formats a byte count with binary prefixes.
func human(b int64) string {
	f := float64(b)
	neg := ""
	if f < 0 {
		neg, f = "-", -f
	}
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if f < 1024 || u == "GiB" {
			if u == "B" {
				return fmt.Sprintf("%s%.0f B", neg, f)
			}
			return fmt.Sprintf("%s%.2f %s", neg, f, u)
		}
		f /= 1024
	}
	return ""
}
