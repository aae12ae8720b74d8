// Command charts renders the benchmarks' results file (bench/results.json, written by `make
// bench`) as PNG charts; see package chart for which.
//
//	go run ./bench/report/cmd/charts -in bench/results.json -out docs/bench
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fleetingest/fleetingest/bench/report"
	"github.com/fleetingest/fleetingest/bench/report/chart"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("charts", flag.ContinueOnError)
	in := fs.String("in", "bench/results.json", "results file to read")
	out := fs.String("out", "docs/bench", "folder to write the PNG charts into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, err := os.Stat(*in); err != nil {
		return err
	}
	results, err := report.ReadFile(*in)
	if err != nil {
		return err
	}
	written, err := chart.Render(results, *out)
	if err != nil {
		return err
	}
	for _, path := range written {
		if _, err := fmt.Fprintln(stdout, path); err != nil {
			return err
		}
	}
	return nil
}
