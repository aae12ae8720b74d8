package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/bench/report"
)

// BenchmarkGrowOnline grows a two-shard dev stack to three while 8 clients post batches of
// 100 readings as fast as it takes them (5,000 meters and 5,000 vehicles, each vehicle mapped
// to one meter): it reports the accepted readings/s of the two shards before the growth, of
// the three after it and in the minute around its cutover, and the answers that were not
// 202, and records the readings accepted in each second (bench/report charts them). On one
// machine the third shard's Postgres and ingester share the same cores, so the two layouts
// sustain different rates; the cutover minute, half in each, is set against their mean. Then
// it asks the per-vehicle question over the minute that spans the cutover and over the minute
// before it, for vehicles whose meter moved to the new shard, alternating, and reports both
// p50 and p99. About five minutes.
//
//	go test -run '^$' -bench GrowOnline -benchtime 1x -timeout 20m ./bench/ingest
func BenchmarkGrowOnline(b *testing.B) {
	const devices, clients, batch = 5000, 8, 100
	rec := report.New(b)
	stack := startStack(b)
	ctx := context.Background()
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(method, url, token string, body []byte) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if bytes.Contains(body, []byte("\n")) {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer func() { _ = res.Body.Close() }()
		data, err := io.ReadAll(res.Body)
		return res.StatusCode, data, err
	}
	for i := range devices {
		body := fmt.Appendf(nil, `{"vehicleId":"gb-v-%d","meterId":"gb-m-%d"}`, i, i)
		if code, data, err := do(http.MethodPost, stack.URL()+"/v1/analytics/mappings", stack.AdminToken(), body); err != nil || code != http.StatusOK {
			b.Fatalf("mapping: %d %s %v", code, data, err)
		}
	}
	start := time.Now()
	// accepted[s] counts the readings accepted in second s of the run.
	var mu sync.Mutex
	accepted := map[int]int{}
	var refused atomic.Int64
	loadCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for n := c; loadCtx.Err() == nil; n += clients {
				var lines []string
				at := time.Now().UTC()
				for k := range batch / 2 {
					d := (n*batch/2 + k) % devices
					ts := at.Add(time.Duration(k) * time.Microsecond).Format(time.RFC3339Nano)
					lines = append(lines,
						fmt.Sprintf(`{"meterId":"gb-m-%d","kwhConsumedAc":0.5,"voltage":230,"timestamp":%q}`, d, ts),
						fmt.Sprintf(`{"vehicleId":"gb-v-%d","soc":50,"kwhDeliveredDc":0.4,"batteryTemp":25,"timestamp":%q}`, d, ts))
				}
				code, data, err := do(http.MethodPost, stack.URL()+"/v1/telemetry/batch", stack.DeviceToken(), []byte(strings.Join(lines, "\n")))
				if loadCtx.Err() != nil {
					return
				}
				if err != nil || code != http.StatusAccepted || !bytes.Contains(data, fmt.Appendf(nil, `"accepted":%d`, batch)) {
					refused.Add(1)
					continue
				}
				mu.Lock()
				accepted[int(time.Since(start)/time.Second)] += batch
				mu.Unlock()
			}
		})
	}
	steadyFor := 120 * time.Second
	time.Sleep(steadyFor)
	grow := time.Since(start)
	cutover, err := stack.Grow(ctx, 3)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("grown to 3 shards %s after the start; cutover at %s", time.Since(start).Round(time.Second), cutover.Sub(start).Round(time.Second))
	time.Sleep(time.Until(cutover.Add(90 * time.Second)))
	stop()
	wg.Wait()
	rate := func(from, to time.Duration) float64 {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for s := int(from / time.Second); s < int(to/time.Second); s++ {
			n += accepted[s]
		}
		return float64(n) / (to - from).Seconds()
	}
	c := cutover.Sub(start)
	two, three := rate(30*time.Second, grow), rate(c+30*time.Second, c+90*time.Second)
	around := rate(c-30*time.Second, c+30*time.Second)
	rec.Metric(two, "two-shards-readings/s")
	rec.Metric(three, "three-shards-readings/s")
	rec.Metric(around, "cutover-minute-readings/s")
	rec.Metric(around/((two+three)/2), "cutover/mean-steady")
	rec.Metric(float64(refused.Load()), "non-202-batches")
	rec.Metric(c.Seconds(), "cutover-s")
	rec.Accepted(perSecond(accepted, &mu))

	// Vehicles whose meter moved to the new shard: their window across the cutover is asked
	// of two shards.
	m := stack.ShardMap()
	var moved []string
	for i := 0; i < devices && len(moved) < 200; i++ {
		if meter := fmt.Sprintf("gb-m-%d", i); m.ShardOf(meter, cutover) == 2 {
			moved = append(moved, fmt.Sprintf("gb-v-%d", i))
		}
	}
	window := func(end time.Time) string { return "?window=1m&end=" + end.UTC().Format(time.RFC3339Nano) }
	spanning, before := window(cutover.Add(30*time.Second)), window(cutover.Add(-30*time.Second))
	// Five passes over the vehicles, each asked both ways in turn: 1,000 questions a kind, so
	// that p99 is the tenth slowest rather than the second.
	var lat [2][]time.Duration
	for range 5 {
		for _, v := range moved {
			for k, q := range []string{spanning, before} {
				t0 := time.Now()
				code, data, err := do(http.MethodGet, stack.URL()+"/v1/analytics/performance/"+v+q, stack.AdminToken(), nil)
				if err != nil || code != http.StatusOK {
					b.Fatalf("performance: %d %s %v", code, data, err)
				}
				lat[k] = append(lat[k], time.Since(t0))
			}
		}
	}
	for k, name := range []string{"spanning", "before"} {
		slices.Sort(lat[k])
		rec.Metric(float64(lat[k][len(lat[k])/2])/1e6, name+"-p50-ms")
		rec.Metric(float64(lat[k][len(lat[k])*99/100])/1e6, name+"-p99-ms")
	}
}

// perSecond lists counts by second of the run, from the first second to the last that has
// one; a second with none is 0.
func perSecond(counts map[int]int, mu *sync.Mutex) []float64 {
	mu.Lock()
	defer mu.Unlock()
	last := -1
	for s := range counts {
		last = max(last, s)
	}
	out := make([]float64, last+1)
	for s, n := range counts {
		out[s] = float64(n)
	}
	return out
}
