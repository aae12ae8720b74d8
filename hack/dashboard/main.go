// Command dashboard writes the Grafana dashboard the Helm chart ships
// (charts/fleetingest/dashboards/fleetingest.json) from its definition in this package.
// `make generate` runs it from the repository's root; a test fails when the committed file
// differs from what it writes.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("o", "charts/fleetingest/dashboards/fleetingest.json", "file to write the dashboard to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	b, err := render()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("writing the dashboard: %w", err)
	}
	return nil
}
