// Package reports renders what the other stages computed: terminal tables
// (tablewriter), progress bars that appear only on a terminal, and, as the
// later stages land, plots and HTML/Markdown/JUnit reports. It computes
// nothing the CLI cannot; it only presents values.
package reports
