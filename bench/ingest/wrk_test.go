package ingest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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
	before, err := counterSum(stack, "fleetingest_ingester_rows_inserted_total")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	stopSampling := sampleStack(stack)
	cpu := readCPU(b)
	requests, lat, wrkCPU := runWrk(b, stack.URL(), connections, duration, prefix, stack.DeviceToken())
	cpu.report(b, readCPU(b), wrkCPU, requests)
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

// runWrk runs wrk with testdata/single.lua against url and returns the requests it made, all
// answered 2xx, its latency percentiles and the CPU time it took.
func runWrk(b *testing.B, url string, connections int, duration time.Duration, prefix, token string) (int, report.Latency, time.Duration) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is not installed: run the benchmarks with `make bench`, which installs it (%v)", err)
	}
	base := time.Now().Add(-24 * time.Hour).Unix()
	cmd := exec.Command(wrk, "-t2", "-c"+strconv.Itoa(connections), "-d"+duration.String(), "--timeout", "10s",
		"-s", "testdata/single.lua", url, "--", "10000", strconv.FormatInt(base, 10), prefix, "2", token)
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
	if n(2) > 0 || n(3) > 0 {
		b.Fatalf("%d non-2xx answers and %d socket errors:\n%s", n(2), n(3), out.String())
	}
	us := func(i int) time.Duration { return time.Duration(n(i)) * time.Microsecond }
	lat := report.Latency{P50: ms(us(4)), P90: ms(us(5)), P99: ms(us(6)), P999: ms(us(7))}
	return n(1), lat, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// cpuTimes are the CPU time of this process (the service under test) and the machine's, from
// /proc/stat: busy (user, system, interrupts), stolen by the hypervisor, and in all.
type cpuTimes struct{ self, busy, steal, all time.Duration }

func readCPU(b *testing.B) cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	c := cpuTimes{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	// cpu user nice system idle iowait irq softirq steal …, in 1/100 s (USER_HZ)
	for i, f := range strings.Fields(strings.SplitN(string(stat), "\n", 2)[0])[1:9] {
		v, _ := strconv.ParseInt(f, 10, 64)
		d := time.Duration(v) * 10 * time.Millisecond
		c.all += d
		switch i {
		case 3, 4: // idle, waiting for I/O
		case 7:
			c.steal += d
		default:
			c.busy += d
		}
	}
	return c
}

// report records the CPU a request took from c to end: in this process, in wrk and in the rest
// of the machine (Postgres, mostly), and how much of the machine was busy or stolen.
func (c cpuTimes) report(b *testing.B, end cpuTimes, wrk time.Duration, requests int) {
	perRequest := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(requests, 1)) }
	self, busy, all := end.self-c.self, end.busy-c.busy, float64(end.all-c.all)
	b.ReportMetric(perRequest(self), "service-cpu-us/req")
	b.ReportMetric(perRequest(wrk), "wrk-cpu-us/req")
	b.ReportMetric(perRequest(busy-self-wrk), "other-cpu-us/req")
	b.ReportMetric(100*float64(busy)/all, "busy-%")
	b.ReportMetric(100*float64(end.steal-c.steal)/all, "stolen-%")
}

// BenchmarkWrkCeiling is the most single-reading requests a Go HTTP service answers on this
// machine with the load of BenchmarkIngestAuth: wrk, 64 connections, against a net/http
// handler that reads the body and answers the 202 a reading gets, and nothing else.
func BenchmarkWrkCeiling(b *testing.B) {
	body := []byte(`{"status":"meter telemetry ingested"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	b.ResetTimer()
	start := time.Now()
	cpu := readCPU(b)
	requests, lat, wrkCPU := runWrk(b, srv.URL, 64, 10*time.Second, "ceiling", "")
	cpu.report(b, readCPU(b), wrkCPU, requests)
	b.ReportMetric(float64(requests)/time.Since(start).Seconds(), "requests/s")
	b.ReportMetric(lat.P50, "p50-ms")
	b.ReportMetric(0, "ns/op")
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
