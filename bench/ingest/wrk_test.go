package ingest

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/bench/report"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

var wrkSummary = regexp.MustCompile(`wrk-summary requests=(\d+) non2xx=(\d+) errors=(\d+) p50us=(\d+) p90us=(\d+) p99us=(\d+) p999us=(\d+)`)

// benchWrk drives single-reading requests with wrk (installed by `make bench`), a C load
// generator that leaves more of the two cores to the system under test than Go's HTTP client.
// It records the readings accepted and committed in each second and wrk's latency
// percentiles.
func benchWrk(b *testing.B, rec *report.Recorder, stack *devstack.Stack, connections int, duration time.Duration, prefix string) float64 {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is not installed: run the benchmarks with `make bench`, which installs it (%v)", err)
	}
	before, err := counterSum(stack, "fleetingest_ingester_rows_inserted_total")
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Add(-24 * time.Hour).Unix()
	b.ResetTimer()
	start := time.Now()
	stopSampling := sampleStack(stack)
	cmd := exec.Command(wrk, "-t2", "-c"+strconv.Itoa(connections), "-d"+duration.String(), "--timeout", "10s",
		"-s", "testdata/single.lua", stack.URL(), "--", "10000", strconv.FormatInt(base, 10), prefix, "2", stack.DeviceToken())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("wrk: %v\n%s", err, out.String())
	}
	m := wrkSummary.FindStringSubmatch(out.String())
	if m == nil {
		b.Fatalf("no summary in wrk's output:\n%s", out.String())
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	requests, non2xx, errs := n(1), n(2), n(3)
	us := func(i int) time.Duration { return time.Duration(n(i)) * time.Microsecond }
	lat := report.Latency{P50: ms(us(4)), P90: ms(us(5)), P99: ms(us(6)), P999: ms(us(7))}
	if non2xx > 0 || errs > 0 {
		b.Fatalf("%d non-2xx answers and %d socket errors:\n%s", non2xx, errs, out.String())
	}
	accepted := time.Since(start)
	if err := waitCommitted(stack, int(before)+requests, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stopSampling(b, rec)
	acceptRate := float64(requests) / accepted.Seconds()
	rec.Metric(acceptRate, "requests/s")
	rec.Metric(float64(requests)/elapsed.Seconds(), "readings/s")
	rec.Metric(lat.P50, "p50-ms")
	rec.Metric(lat.P99, "p99-ms")
	rec.Latency(lat)
	b.ReportMetric(0, "ns/op")
	return acceptRate
}

// BenchmarkIngestAuth compares single-reading ingest with device tokens (the default) and
// without (--insecure-no-auth): wrk, 64 connections, on two stacks served at once and asked
// in alternating rounds, so the machine's drift weighs on both alike.
func BenchmarkIngestAuth(b *testing.B) {
	secured, open := startStack(b), startStack(b, func(c *devstack.Config) { c.InsecureNoAuth = true })
	rounds := 3
	var withAuth, without []float64
	for r := range rounds {
		b.Run(fmt.Sprintf("auth/round-%d", r), func(b *testing.B) {
			withAuth = append(withAuth, benchWrk(b, report.New(b), secured, 64, 10*time.Second, fmt.Sprintf("auth%d", r)))
		})
		b.Run(fmt.Sprintf("no-auth/round-%d", r), func(b *testing.B) {
			without = append(without, benchWrk(b, report.New(b), open, 64, 10*time.Second, fmt.Sprintf("open%d", r)))
		})
	}
	fmt.Printf("\nsingle readings, wrk 64 connections, requests/s by round:\n  with tokens %v\n  without     %v\n", round(withAuth), round(without))
}

func round(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}
