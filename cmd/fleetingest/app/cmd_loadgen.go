package app

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/internal/loadgen"
)

func newLoadgenCommand() *cobra.Command {
	var cfg loadgen.Config
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Post synthetic fleet telemetry to a gateway and report throughput and latency",
		Long: `loadgen plays a fleet: --meters smart meters and --vehicles vehicles, one reading a minute
each, posted with --concurrency requests in flight, one reading a request or --batch readings
a request (NDJSON). It prints how many readings were accepted and the accept latency.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadgen.Run(cmd.Context(), cfg)
			if err != nil {
				return fmt.Errorf("load run: %w", err)
			}
			var out strings.Builder
			fmt.Fprintf(&out, "requests %d  accepted %d  rejected %d  failed %d  in %s\n",
				res.Requests, res.Accepted, res.Rejected, res.Failed, res.Duration.Round(time.Millisecond))
			fmt.Fprintf(&out, "%.0f readings/s  %.0f requests/s  latency p50 %s  p99 %s\n",
				res.ReadingsPerSecond(), float64(res.Requests)/res.Duration.Seconds(), res.Percentile(50), res.Percentile(99))
			if res.FirstError != "" {
				fmt.Fprintf(&out, "first failure: %s\n", res.FirstError)
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), out.String()); err != nil {
				return fmt.Errorf("printing the results: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "gateway base URL")
	f.IntVar(&cfg.Meters, "meters", 1000, "number of meters")
	f.IntVar(&cfg.Vehicles, "vehicles", 1000, "number of vehicles")
	f.IntVar(&cfg.Readings, "readings", 100_000, "readings to send in all")
	f.IntVar(&cfg.Concurrency, "concurrency", 64, "requests in flight")
	f.IntVar(&cfg.BatchSize, "batch", 0, "readings per request through /v1/telemetry/batch (0: one reading a request to /v1/telemetry)")
	f.StringVar(&cfg.Prefix, "prefix", "lg", "prefix of the generated device ids")
	f.StringVar(&cfg.Token, "token", os.Getenv("FLEETINGEST_DEVICE_TOKEN"), "device token covering every generated id (default $FLEETINGEST_DEVICE_TOKEN)")
	return cmd
}
