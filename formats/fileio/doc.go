// Package fileio holds the file helpers every format shares: read-only
// memory mapping and atomic (temp file + rename) writes.
package fileio
