package app

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/internal/loadgen"
)

// loadgenOptions are the flags of `fleetingest loadgen`.
type loadgenOptions struct {
	cfg   loadgen.Config
	start string
	truth string
	json  bool
}

func newLoadgenCommand() *cobra.Command {
	o := &loadgenOptions{}
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Simulate a charging fleet against a gateway and report throughput, latency and the expected alerts",
		Long: `loadgen simulates a fleet: --meters chargers and --vehicles vehicles, each vehicle charging
at one charger, every device reporting every --interval. A charger turns AC into DC at an
efficiency drawn from 0.90-0.95, a --faulty fraction of them at 0.70-0.80; --seed makes a run
reproducible. Each vehicle's mapping is written through the analytics API (--admin-token)
before its readings, which go to the gateway with --token, one a request or --batch a request.

The run ends after --readings readings or --duration (live: timestamps are the wall clock),
whichever comes first; without either it sends 100,000 as fast as the gateway answers
(--rate caps readings/s). Readings are stamped from after the mappings were written and at
most 4 minutes ahead of the clock, so a long run paces itself; --start stamps them from a
time in the past instead and writes the mappings from it (the vehicles must not have been
mapped then). It prints a summary (--json: one JSON object) and, with --truth,
writes the chargers and vehicles the alerts should list at 0.85 for the readings accepted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "gateway base URL")
	f.StringVar(&c.AnalyticsURL, "analytics-url", "", "analytics API base URL the mappings are written to (default --url)")
	f.StringVar(&c.Token, "token", os.Getenv("FLEETINGEST_DEVICE_TOKEN"), "device token covering every generated id (default $FLEETINGEST_DEVICE_TOKEN)")
	f.StringVar(&c.AdminToken, "admin-token", os.Getenv("FLEETINGEST_ADMIN_TOKEN"), "admin user token the mappings are written with (default $FLEETINGEST_ADMIN_TOKEN)")
	f.BoolVar(&c.WriteMappings, "mappings", true, "map each vehicle to its charger before its readings (--mappings=false: vehicles stay unmapped)")
	f.IntVar(&c.Meters, "meters", loadgen.DefaultDevices, "number of chargers (meters)")
	f.IntVar(&c.Vehicles, "vehicles", loadgen.DefaultDevices, "number of vehicles")
	f.Float64Var(&c.Faulty, "faulty", 0, "fraction of the chargers that are faulty, 0 to 1")
	f.Uint64Var(&c.Seed, "seed", 0, "seed of the simulation (0: a random one, printed in the summary)")
	f.StringVar(&c.Prefix, "prefix", loadgen.DefaultPrefix, "prefix of the generated device ids")
	f.IntVar(&c.Readings, "readings", 0, "readings to send in all (0: 100,000, or no limit with --duration)")
	f.DurationVar(&c.Duration, "duration", 0, "run live for this long, timestamps being the wall clock (0: as fast as possible)")
	f.DurationVar(&c.Interval, "interval", loadgen.DefaultInterval, "time between a device's readings")
	f.StringVar(&o.start, "start", "", "start of the first interval: an RFC 3339 time or a negative duration from now such as -2h (default: now, or the run's span before now without mappings)")
	f.Float64Var(&c.Rate, "rate", 0, "readings per second at most (0: as fast as the gateway answers)")
	f.IntVar(&c.Concurrency, "concurrency", loadgen.DefaultConcurrency, "requests in flight")
	f.IntVar(&c.BatchSize, "batch", 0, "readings per request through /v1/telemetry/batch, NDJSON (0: one reading a request to /v1/telemetry)")
	f.StringVar(&o.truth, "truth", "", `write {"faultyMeters":[…],"faultyVehicles":[…]} for the accepted readings to this file`)
	f.BoolVar(&o.json, "json", false, "print the summary as one JSON object")
	return cmd
}

// run validates the options, runs the simulation and reports it. An error means the run
// could not happen; rejected readings are reported, not fatal.
func (o *loadgenOptions) run(cmd *cobra.Command) error {
	if o.start != "" {
		start, err := parseLoadgenStart(o.start, time.Now())
		if err != nil {
			return fmt.Errorf("loadgen: --start: %w", err)
		}
		o.cfg.Start = start
	}
	if err := o.cfg.Validate(); err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	cfg := o.cfg
	p := newProgressLine(cmd.ErrOrStderr())
	if p != nil {
		cfg.Progress = p.show
	}
	res, err := loadgen.Run(cmd.Context(), cfg)
	p.clear() // before the summary, which may go to the same terminal
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if o.truth != "" {
		if err := writeLoadgenTruth(o.truth, res.Truth); err != nil {
			return err
		}
	}
	var out string
	if o.json {
		data, err := json.Marshal(newLoadgenReport(o.cfg, res))
		if err != nil {
			return err
		}
		out = string(data) + "\n"
	} else {
		out = loadgenSummary(o.cfg, res, o.truth)
	}
	if _, err := io.WriteString(cmd.OutOrStdout(), out); err != nil {
		return fmt.Errorf("printing the results: %w", err)
	}
	if res.Requests > 0 && res.Failed == res.Requests {
		return fmt.Errorf("loadgen: no request was answered: %s", res.FirstError)
	}
	return nil
}

// parseLoadgenStart reads --start: an RFC 3339 time, or a negative duration before now.
func parseLoadgenStart(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d >= 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a negative duration such as -2h", s)
	}
	return now.Add(d).Truncate(time.Second), nil
}

func writeLoadgenTruth(path string, t loadgen.Truth) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the truth: %w", err)
	}
	return nil
}

// loadgenReport is the --json summary.
type loadgenReport struct {
	Seed              uint64  `json:"seed"`
	Chargers          int     `json:"chargers"`
	FaultyChargers    int     `json:"faultyChargers"`
	Vehicles          int     `json:"vehicles"`
	Mappings          int     `json:"mappings"`
	Requests          int     `json:"requests"`
	Sent              int     `json:"sent"`
	Accepted          int     `json:"accepted"`
	Rejected          int     `json:"rejected"`
	Failed            int     `json:"failed"`
	DurationSeconds   float64 `json:"durationSeconds"`
	ReadingsPerSecond float64 `json:"readingsPerSecond"`
	RequestsPerSecond float64 `json:"requestsPerSecond"`
	LatencyP50Ms      float64 `json:"latencyP50Ms"`
	LatencyP99Ms      float64 `json:"latencyP99Ms"`
	FirstReading      string  `json:"firstReading,omitempty"`
	LastReading       string  `json:"lastReading,omitempty"`
	FaultyMeters      int     `json:"faultyMeters"`
	FaultyVehicles    int     `json:"faultyVehicles"`
	Interrupted       bool    `json:"interrupted"`
	FirstRejection    string  `json:"firstRejection,omitempty"`
	FirstError        string  `json:"firstError,omitempty"`
}

func newLoadgenReport(cfg loadgen.Config, res loadgen.Result) loadgenReport {
	r := loadgenReport{
		Seed: res.Seed, Chargers: res.Chargers, FaultyChargers: res.FaultyChargers, Vehicles: cfg.Vehicles, Mappings: res.Mappings,
		Requests: res.Requests, Sent: res.Sent, Accepted: res.Accepted, Rejected: res.Rejected, Failed: res.Failed,
		DurationSeconds:   res.Duration.Seconds(),
		ReadingsPerSecond: res.ReadingsPerSecond(), RequestsPerSecond: res.RequestsPerSecond(),
		LatencyP50Ms: fractionalMillis(res.Percentile(50)), LatencyP99Ms: fractionalMillis(res.Percentile(99)),
		FaultyMeters: len(res.Truth.FaultyMeters), FaultyVehicles: len(res.Truth.FaultyVehicles),
		Interrupted: res.Interrupted, FirstRejection: res.FirstRejection, FirstError: res.FirstError,
	}
	if !res.FirstReading.IsZero() {
		r.FirstReading = res.FirstReading.UTC().Format(time.RFC3339Nano)
		r.LastReading = res.LastReading.UTC().Format(time.RFC3339Nano)
	}
	return r
}

func fractionalMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// loadgenSummary is the run's report for people.
func loadgenSummary(cfg loadgen.Config, res loadgen.Result, truthFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet       %d chargers (%d faulty), %d vehicles, seed %d", res.Chargers, res.FaultyChargers, cfg.Vehicles, res.Seed)
	if cfg.WriteMappings {
		fmt.Fprintf(&b, ", %d mappings written", res.Mappings)
	}
	fmt.Fprintf(&b, "\nreadings    %d sent in %d requests: %d accepted, %d rejected; %d requests failed; in %s",
		res.Sent, res.Requests, res.Accepted, res.Rejected, res.Failed, res.Duration.Round(time.Millisecond))
	if res.Interrupted {
		b.WriteString(" (interrupted)")
	}
	if !res.FirstReading.IsZero() {
		fmt.Fprintf(&b, "\ntimestamps  %s to %s", res.FirstReading.UTC().Format(time.RFC3339), res.LastReading.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "\nthroughput  %.0f readings/s, %.0f requests/s; accept latency p50 %s, p99 %s",
		res.ReadingsPerSecond(), res.RequestsPerSecond(), roundLatency(res.Percentile(50)), roundLatency(res.Percentile(99)))
	fmt.Fprintf(&b, "\nexpected    %d chargers and %d vehicles below %.2f", len(res.Truth.FaultyMeters), len(res.Truth.FaultyVehicles), loadgen.FaultThreshold)
	if truthFile != "" {
		fmt.Fprintf(&b, " (listed in %s)", truthFile)
	}
	b.WriteByte('\n')
	if res.FirstRejection != "" {
		fmt.Fprintf(&b, "first rejection: %s\n", res.FirstRejection)
	}
	if res.FirstError != "" {
		fmt.Fprintf(&b, "first failure: %s\n", res.FirstError)
	}
	return b.String()
}

func roundLatency(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// progressLine redraws one line on a terminal with a run's figures.
type progressLine struct {
	w    io.Writer
	last loadgen.Progress
}

// newProgressLine returns a progress line on w when w is a terminal, else nil.
func newProgressLine(w io.Writer) *progressLine {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	info, err := f.Stat()
	if err != nil || info.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return &progressLine{w: w}
}

func (p *progressLine) show(now loadgen.Progress) {
	rate := 0.0
	if d := now.Elapsed - p.last.Elapsed; d > 0 {
		rate = float64(now.Accepted-p.last.Accepted) / d.Seconds()
	}
	p.last = now
	// A lost progress line is no reason to stop a run.
	_, _ = fmt.Fprintf(p.w, "\r\033[Ksent %d  accepted %d  rejected %d  failed %d  %.0f readings/s  p50 %s  p99 %s",
		now.Sent, now.Accepted, now.Rejected, now.Failed, rate, roundLatency(now.P50), roundLatency(now.P99))
}

// clear erases the line; nothing without one.
func (p *progressLine) clear() {
	if p == nil {
		return
	}
	_, _ = io.WriteString(p.w, "\r\033[K")
}
