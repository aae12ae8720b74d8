package ingest

import (
	"bytes"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var wrkSummary = regexp.MustCompile(`wrk-summary requests=(\d+) non2xx=(\d+) errors=(\d+) p50us=(\d+) p99us=(\d+)`)

// benchWrk drives single-reading requests with wrk (installed by `make bench`), a C load
// generator that leaves more of the two cores to the system under test than Go's HTTP client.
func benchWrk(b *testing.B, connections int, duration time.Duration) float64 {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is not installed: run the benchmarks with `make bench`, which installs it (%v)", err)
	}
	stack := startStack(b)
	base := time.Now().Add(-24 * time.Hour).Unix()
	b.ResetTimer()
	start := time.Now()
	cmd := exec.Command(wrk, "-t2", "-c"+strconv.Itoa(connections), "-d"+duration.String(), "--timeout", "10s",
		"-s", "testdata/single.lua", stack.URL(), "--", "10000", strconv.FormatInt(base, 10), "wrk", "2")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		b.Fatalf("wrk: %v\n%s", err, out.String())
	}
	m := wrkSummary.FindStringSubmatch(out.String())
	if m == nil {
		b.Fatalf("no summary in wrk's output:\n%s", out.String())
	}
	requests, _ := strconv.Atoi(m[1])
	non2xx, _ := strconv.Atoi(m[2])
	errs, _ := strconv.Atoi(m[3])
	p50, _ := strconv.Atoi(m[4])
	p99, _ := strconv.Atoi(m[5])
	if non2xx > 0 || errs > 0 {
		b.Fatalf("%d non-2xx answers and %d socket errors:\n%s", non2xx, errs, out.String())
	}
	accepted := time.Since(start)
	if err := waitCommitted(stack, requests, 5*time.Minute); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	acceptRate := float64(requests) / accepted.Seconds()
	b.ReportMetric(acceptRate, "requests/s")
	b.ReportMetric(float64(requests)/elapsed.Seconds(), "readings/s")
	b.ReportMetric(float64(p50)/1000, "p50-ms")
	b.ReportMetric(float64(p99)/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
	return acceptRate
}
