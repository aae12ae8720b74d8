// Package report records what the benchmarks measure so that it can be charted and kept
// beside the code: per benchmark (by its full name, e.g. "BenchmarkIngest/batch") the metrics
// it reported, its latency percentiles and, where the benchmark has them, the readings
// accepted and committed in each second of its run.
//
// A benchmark records through a Recorder. When the environment variable BENCH_RESULTS names a
// folder, each benchmark's record is merged into <folder>/results.json as the benchmark ends:
// records of other benchmarks already in the file are kept, a benchmark run again replaces its
// own. The file is indented JSON with sorted keys, so that a run changes only the lines of the
// benchmarks it ran. The command in ./cmd/charts renders the file as PNG charts.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"time"
)

// Design names the ingestion design a benchmark measures, for the charts that compare them.
type Design string

// The designs the ingest benchmark compares.
const (
	// Fleetingest is this system: gateway → JetStream → ingesters → Postgres shards.
	Fleetingest Design = "fleetingest"
	// Seed is the original system's design: one INSERT and one UPSERT per request.
	Seed Design = "seed"
	// RawCopy is COPY of the same rows straight into the seed's tables: Postgres's ceiling.
	RawCopy Design = "raw COPY"
)

// Results is the content of results.json.
type Results struct {
	// Benchmarks by full benchmark name.
	Benchmarks map[string]Benchmark `json:"benchmarks"`
}

// Benchmark is what one benchmark recorded in its last run.
type Benchmark struct {
	// Design is set on the benchmarks that compare ingestion designs.
	Design Design `json:"design,omitempty"`
	// Label names the benchmark in charts; empty means the last part of its name.
	Label string `json:"label,omitempty"`
	// Recorded is the day of the run (UTC, YYYY-MM-DD) and CPUs the cores the machine had.
	Recorded string `json:"recorded,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	// Metrics are the values the benchmark reported, by unit (as b.ReportMetric names them).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Latency holds the latency percentiles the benchmark measured, if any.
	Latency *Latency `json:"latencyMs,omitempty"`
	// Accepted[i] is the readings accepted in second i of the run, Committed[i] the readings
	// committed to Postgres in that second.
	Accepted  []float64 `json:"acceptedPerSecond,omitempty"`
	Committed []float64 `json:"committedPerSecond,omitempty"`
}

// Latency percentiles in milliseconds; a percentile the benchmark did not measure is 0.
type Latency struct {
	P50  float64 `json:"p50,omitempty"`
	P90  float64 `json:"p90,omitempty"`
	P99  float64 `json:"p99,omitempty"`
	P999 float64 `json:"p99.9,omitempty"`
}

// LatencyOf reads the four percentiles from percentile, which takes p in 0–100.
func LatencyOf(percentile func(p float64) time.Duration) Latency {
	return Latency{P50: ms(percentile(50)), P90: ms(percentile(90)), P99: ms(percentile(99)), P999: ms(percentile(99.9))}
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

// round keeps three decimals: finer digits are noise in a benchmark's figure, and would
// change results.json on every run.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

// Merge returns the benchmarks of base with those of update added or, where base has the
// same name, replaced. Neither argument is changed.
func Merge(base, update Results) Results {
	out := Results{Benchmarks: make(map[string]Benchmark, len(base.Benchmarks)+len(update.Benchmarks))}
	maps.Copy(out.Benchmarks, base.Benchmarks)
	maps.Copy(out.Benchmarks, update.Benchmarks)
	return out
}

// Encode writes r as indented JSON (map keys sorted) ending in a newline.
func Encode(w io.Writer, r Results) error {
	if r.Benchmarks == nil {
		r.Benchmarks = map[string]Benchmark{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// Decode reads results written by Encode; an empty input is empty results.
func Decode(r io.Reader) (Results, error) {
	var out Results
	if err := json.NewDecoder(r).Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return Results{}, fmt.Errorf("decoding benchmark results: %w", err)
	}
	if out.Benchmarks == nil {
		out.Benchmarks = map[string]Benchmark{}
	}
	return out, nil
}
