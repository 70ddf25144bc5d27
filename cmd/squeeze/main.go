package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// version is the squeeze version recorded in bundles.
const version = "0.1.0-dev"

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "squeeze",
		Short:         "squeeze compiles language models into small, fast, palettized bundles",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(stdout, stderr), newEvalCmd(stdout, stderr), newInspectCmd(stdout, stderr))
	for _, extra := range extraCommands {
		root.AddCommand(extra(stdout, stderr))
	}
	return root
}

// extraCommands lets command files register themselves.
var extraCommands []func(stdout, stderr io.Writer) *cobra.Command

func main() {
	// SQUEEZE_CPUPROFILE=FILE profiles any command (bench also has
	// --cpuprofile for its timed runs alone).
	if path := os.Getenv("SQUEEZE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "squeeze: SQUEEZE_CPUPROFILE:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "squeeze: SQUEEZE_CPUPROFILE:", err)
			os.Exit(1)
		}
	}
	root := newRootCmd(os.Stdout, os.Stderr)
	err := root.Execute()
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "squeeze:", err)
		// a command may give its errors their own status (gate: 1 when a
		// check fails, 2 when it could not measure)
		var c interface{ ExitCode() int }
		if errors.As(err, &c) {
			os.Exit(c.ExitCode())
		}
		os.Exit(1)
	}
}
