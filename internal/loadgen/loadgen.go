// Package loadgen posts synthetic fleet telemetry to a gateway, as devices would: a fixed set
// of meters and vehicles, one reading a minute each, through the single-reading or the batch
// endpoint, and measures what it saw (accepted readings, accept latency).
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config of a load run.
type Config struct {
	// URL of the gateway, e.g. http://127.0.0.1:8080.
	URL string
	// Meters and Vehicles are the device counts. Default 1,000 each.
	Meters, Vehicles int
	// Readings is how many readings to send in all. Default 100,000.
	Readings int
	// Concurrency is the number of concurrent requests in flight. Default 64.
	Concurrency int
	// BatchSize > 0 posts to /v1/telemetry/batch with that many readings a request (NDJSON);
	// 0 posts one reading a request to /v1/telemetry.
	BatchSize int
	// Start is the timestamp of every device's first reading; reading k of a device is at
	// Start + k×Step. Default: now minus the span the run needs, so nothing is in the future.
	Start time.Time
	// Step between a device's readings. Default 1 minute.
	Step time.Duration
	// Prefix of the device ids, so separate runs do not collide. Default "lg".
	Prefix string
	// Token is the device token every request carries (one that covers every generated id:
	// an every-device or Prefix token). Empty sends none.
	Token string
	// Client to post with. Default: keep-alive client sized for Concurrency.
	Client *http.Client
}

func (c Config) withDefaults() Config {
	if c.Meters == 0 && c.Vehicles == 0 {
		c.Meters, c.Vehicles = 1000, 1000
	}
	if c.Readings == 0 {
		c.Readings = 100_000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	if c.Step == 0 {
		c.Step = time.Minute
	}
	if c.Prefix == "" {
		c.Prefix = "lg"
	}
	if c.Start.IsZero() {
		perDevice := c.Readings/(c.Meters+c.Vehicles) + 1
		c.Start = time.Now().Add(-time.Duration(perDevice+1) * c.Step).Truncate(time.Second)
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        c.Concurrency,
				MaxIdleConnsPerHost: c.Concurrency,
				MaxConnsPerHost:     c.Concurrency,
				IdleConnTimeout:     time.Minute,
			},
		}
	}
	return c
}

// Result of a load run.
type Result struct {
	Requests int
	Accepted int
	Rejected int
	// Failed counts requests that got no 2xx answer (transport errors and 5xx).
	Failed   int
	Duration time.Duration
	// Latencies of successful requests, sorted.
	Latencies []time.Duration
	// FirstError is the first failure seen, for the report.
	FirstError string
}

// Percentile returns the p-th percentile (0–100) of the request latencies.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// ReadingsPerSecond is accepted readings over the run's wall time.
func (r Result) ReadingsPerSecond() float64 {
	return float64(r.Accepted) / r.Duration.Seconds()
}

// Reading returns the n-th reading of a run as JSON, and whether it is a meter reading. Reading
// n belongs to device n mod (meters+vehicles), as that device's (n div devices)-th reading.
func (c Config) Reading(dst []byte, n int) []byte {
	devices := c.Meters + c.Vehicles
	dev, k := n%devices, n/devices
	ts := c.Start.Add(time.Duration(k) * c.Step).UTC()
	if dev < c.Meters {
		dst = append(dst, `{"meterId":"`...)
		dst = append(dst, c.Prefix...)
		dst = append(dst, "-m-"...)
		dst = strconv.AppendInt(dst, int64(dev), 10)
		dst = append(dst, `","kwhConsumedAc":`...)
		dst = strconv.AppendFloat(dst, 0.5+float64((n*7)%100)/100, 'f', 3, 64)
		dst = append(dst, `,"voltage":`...)
		dst = strconv.AppendFloat(dst, 230+float64(n%10), 'f', 1, 64)
	} else {
		dst = append(dst, `{"vehicleId":"`...)
		dst = append(dst, c.Prefix...)
		dst = append(dst, "-v-"...)
		dst = strconv.AppendInt(dst, int64(dev-c.Meters), 10)
		dst = append(dst, `","soc":`...)
		dst = strconv.AppendFloat(dst, float64(n%100), 'f', 1, 64)
		dst = append(dst, `,"kwhDeliveredDc":`...)
		dst = strconv.AppendFloat(dst, 0.4+float64((n*3)%100)/100, 'f', 3, 64)
		dst = append(dst, `,"batteryTemp":`...)
		dst = strconv.AppendFloat(dst, 20+float64(n%15), 'f', 1, 64)
	}
	dst = append(dst, `,"timestamp":"`...)
	dst = ts.AppendFormat(dst, time.RFC3339)
	return append(dst, `"}`...)
}

// Run sends cfg.Readings readings and returns what happened. It stops early when ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return Result{}, fmt.Errorf("loadgen needs a gateway URL")
	}
	per := 1
	path := "/v1/telemetry"
	contentType := "application/json"
	if cfg.BatchSize > 0 {
		per, path, contentType = cfg.BatchSize, "/v1/telemetry/batch", "application/x-ndjson"
	}
	var next atomic.Int64
	var mu sync.Mutex
	var res Result
	lat := make([][]time.Duration, cfg.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var body []byte
			for ctx.Err() == nil {
				first := int(next.Add(int64(per))) - per
				if first >= cfg.Readings {
					return
				}
				n := min(per, cfg.Readings-first)
				body = body[:0]
				for i := 0; i < n; i++ {
					body = cfg.Reading(body, first+i)
					if per > 1 {
						body = append(body, '\n')
					}
				}
				t0 := time.Now()
				acc, rej, err := post(ctx, cfg.Client, cfg.Token, cfg.URL+path, contentType, body, n, per > 1)
				d := time.Since(t0)
				mu.Lock()
				res.Requests++
				res.Accepted += acc
				res.Rejected += rej
				if err != nil {
					res.Failed++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					lat[w] = append(lat[w], d)
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	res.Duration = time.Since(start)
	for _, l := range lat {
		res.Latencies = append(res.Latencies, l...)
	}
	slices.Sort(res.Latencies)
	return res, ctx.Err()
}

func post(ctx context.Context, c *http.Client, token, url, contentType string, body []byte, n int, batch bool) (accepted, rejected int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read to the end or failed: closing only frees the connection
	if err != nil {
		return 0, 0, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		if resp.StatusCode/100 == 4 {
			return 0, n, nil
		}
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if !batch {
		return 1, 0, nil
	}
	var br struct {
		Accepted int               `json:"accepted"`
		Rejected []json.RawMessage `json:"rejected"`
	}
	if err := json.Unmarshal(data, &br); err != nil {
		return 0, 0, fmt.Errorf("decoding batch answer: %w", err)
	}
	return br.Accepted, len(br.Rejected), nil
}
