package reports

import (
	"fmt"
	"io"
	"strings"
)

// MarkdownTable writes a GitHub-flavoured Markdown table (pipes in cells
// escaped, newlines folded to spaces), e.g. for a CI job summary.
func MarkdownTable(w io.Writer, header []string, rows [][]string) error {
	cell := func(s string) string {
		return strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ").Replace(s)
	}
	line := func(cells []string) string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = cell(c)
		}
		return "| " + strings.Join(out, " | ") + " |\n"
	}
	var b strings.Builder
	b.WriteString(line(header))
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	b.WriteString("|" + strings.Join(seps, "|") + "|\n")
	for i, r := range rows {
		if len(r) != len(header) {
			return fmt.Errorf("markdown table: row %d has %d cells, the header %d", i, len(r), len(header))
		}
		b.WriteString(line(r))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
