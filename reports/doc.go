// Package reports renders what the other stages computed: terminal tables
// (tablewriter), progress bars that appear only on a terminal, JUnit XML
// (squeeze gate --junit), Markdown tables (gate --markdown) and
// rate-quality plots (gonum/plot; squeeze sweep --plot). HTML reports are
// not built yet. It computes nothing the CLI cannot; it only presents
// values.
package reports
