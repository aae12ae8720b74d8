// Package ingest benchmarks ingestion end to end: readings posted over HTTP to the dev stack
// (gateway → JetStream with sync-always → ingesters → Postgres with stock durability) until
// they are committed, next to two baselines measured in the same run on the same machine —
// the seed's design in Go (one INSERT and one UPSERT per request) and raw COPY of the same
// rows.
//
//	make bench                       # or: go test -run '^$' -bench Ingest -benchtime 1x ./bench/ingest
//	FLEETINGEST_BENCH_READINGS=1000000 make bench
//	FLEETINGEST_BENCH_BATCH_SIZE=20000 go test -run '^$' -bench Ingest/batch -benchtime 1x ./bench/ingest
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/bench/report"
	"github.com/fleetingest/fleetingest/ingester/shard"
	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/internal/loadgen"
)

// readings is the size of each end-to-end run (env FLEETINGEST_BENCH_READINGS).
func readings(def int) int {
	if v, err := strconv.Atoi(os.Getenv("FLEETINGEST_BENCH_READINGS")); err == nil && v > 0 {
		return v
	}
	return def
}

// results collects the figures of one `go test -bench Ingest` run for the closing summary.
var results = map[string]float64{}

func BenchmarkIngest(b *testing.B) {
	n := readings(400_000)
	b.Run("copy-baseline", func(b *testing.B) {
		rec := report.New(b).As(report.RawCopy, "raw COPY of the same rows")
		results["copy"] = benchCopy(b, rec, n)
	})
	b.Run("seed-design-baseline", func(b *testing.B) {
		rec := report.New(b).As(report.Seed, "seed design in Go, one reading a request")
		results["seed"] = benchSeed(b, rec, min(n, 100_000))
	})
	b.Run("single", func(b *testing.B) {
		rec := report.New(b).As(report.Fleetingest, "fleetingest, one reading a request (Go client)")
		results["single"] = benchStack(b, rec, loadgen.Config{Readings: min(n, 200_000), Concurrency: 128})
	})
	b.Run("single-wrk", func(b *testing.B) {
		rec := report.New(b).As(report.Fleetingest, "fleetingest, one reading a request (wrk)")
		results["wrk"] = benchWrk(b, rec, startStack(b), 256, 10*time.Second, "wrk")
	})
	b.Run("batch", func(b *testing.B) {
		rec := report.New(b).As(report.Fleetingest, "fleetingest, batches of 500")
		results["batch"] = benchStack(b, rec, loadgen.Config{Readings: n, Concurrency: 16, BatchSize: 500})
	})
	if len(results) == 5 {
		fmt.Printf("\nsummary (readings/s, %d cores):\n", runtime.NumCPU())
		fmt.Printf("  raw COPY of the same rows            %10.0f\n", results["copy"])
		fmt.Printf("  seed design in Go (INSERT+UPSERT)    %10.0f\n", results["seed"])
		fmt.Printf("  fleetingest, one reading a request   %10.0f   %.1f× seed design (Go client)\n", results["single"], results["single"]/results["seed"])
		fmt.Printf("  fleetingest, one reading a request   %10.0f   %.1f× seed design (wrk, requests/s)\n", results["wrk"], results["wrk"]/results["seed"])
		fmt.Printf("  fleetingest, batches of 500          %10.0f   %.1f× seed design, %.2f× raw COPY\n",
			results["batch"], results["batch"]/results["seed"], results["batch"]/results["copy"])
	}
}

// benchStack posts cfg's readings to a fresh dev stack and reports readings/s from the first
// request until the last reading was committed in Postgres, and the accept latencies; it
// records the readings accepted and committed in each second.
func benchStack(b *testing.B, rec *report.Recorder, lg loadgen.Config) float64 {
	ctx := context.Background()
	stack := startStack(b)
	lg.URL, lg.Token = stack.URL(), stack.DeviceToken()
	lg.Meters, lg.Vehicles = 5000, 5000
	b.ResetTimer()
	start := time.Now()
	stopSampling := sampleStack(stack)
	res, err := loadgen.Run(ctx, lg)
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 || res.Rejected > 0 {
		b.Fatalf("%d requests failed, %d readings rejected: %s", res.Failed, res.Rejected, res.FirstError)
	}
	if err := waitCommitted(stack, res.Accepted, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stopSampling(b, rec)
	rate := float64(res.Accepted) / elapsed.Seconds()
	rec.Metric(rate, "readings/s")
	rec.Metric(float64(res.Requests)/res.Duration.Seconds(), "requests/s")
	rec.Metric(ms(res.Percentile(50)), "p50-ms")
	rec.Metric(ms(res.Percentile(99)), "p99-ms")
	rec.Latency(report.LatencyOf(res.Percentile))
	b.ReportMetric(0, "ns/op")
	return rate
}

// sampleStack samples, every second until the returned stop, the readings the stack's
// gateway accepted and those its ingesters committed; stop records both.
func sampleStack(stack *devstack.Stack) (stop func(*testing.B, *report.Recorder)) {
	accepted := report.StartSampler(func() (float64, error) {
		return counterSum(stack, "fleetingest_gateway_readings_accepted_total")
	})
	committed := report.StartSampler(func() (float64, error) {
		return counterSum(stack, "fleetingest_ingester_rows_inserted_total")
	})
	return func(b *testing.B, rec *report.Recorder) {
		a, aerr := accepted.Stop()
		c, cerr := committed.Stop()
		if err := errors.Join(aerr, cerr); err != nil {
			b.Fatalf("sampling the stack's counters: %v", err)
		}
		rec.Accepted(a)
		rec.Committed(c)
	}
}

// startStack starts a two-shard dev stack in a temp folder; it stops when the benchmark ends.
// FLEETINGEST_BENCH_BATCH_SIZE sets the ingesters' batch size (default: theirs, 5,000).
func startStack(b *testing.B, mods ...func(*devstack.Config)) *devstack.Stack {
	batchSize := 0
	if v := os.Getenv("FLEETINGEST_BENCH_BATCH_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("FLEETINGEST_BENCH_BATCH_SIZE=%q: want a positive integer", v)
		}
		batchSize = n
	}
	cfg := devstack.Config{
		DataDir:  filepath.Join(b.TempDir(), "data"),
		Shards:   2,
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Tune:     devstack.Tuning{Ingester: func(c *shard.Config) { c.BatchSize = batchSize }},
	}
	for _, m := range mods {
		m(&cfg)
	}
	stack, err := devstack.Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			b.Error(err)
		}
	})
	return stack
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// waitCommitted waits until the ingesters report want history rows inserted.
func waitCommitted(stack *devstack.Stack, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := counterSum(stack, "fleetingest_ingester_rows_inserted_total")
		if err != nil {
			return err
		}
		if int(got) >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d readings committed after %s", int(got), want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func counterSum(stack *devstack.Stack, name string) (float64, error) {
	mfs, err := stack.Metrics().Gather()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}
