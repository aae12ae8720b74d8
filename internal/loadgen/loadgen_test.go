package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
)

func TestReadingsAreValidAndDistinct(t *testing.T) {
	cfg := Config{Meters: 3, Vehicles: 4, Readings: 70}.withDefaults()
	now := time.Now()
	seen := map[string]bool{}
	for n := 0; n < cfg.Readings; n++ {
		data := cfg.Reading(nil, n)
		r, err := telemetry.DecodeReading(data, now, telemetry.DefaultLimits())
		if err != nil {
			t.Fatalf("reading %d %s: %v", n, data, err)
		}
		key := fmt.Sprintf("%s@%d", r.DeviceID(), r.TimestampMicros())
		if seen[key] {
			t.Fatalf("reading %d repeats %s", n, key)
		}
		seen[key] = true
		if wantMeter := n%7 < 3; (r.Kind() == telemetry.KindMeter) != wantMeter {
			t.Errorf("reading %d is a %s", n, r.Kind())
		}
	}
}

func TestRunSendsEveryReadingOnceAndCountsAnswers(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		n := 0
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			mu.Lock()
			got[sc.Text()]++
			mu.Unlock()
			n++
		}
		if r.URL.Path == "/v1/telemetry/batch" {
			w.WriteHeader(http.StatusAccepted)
			if _, err := fmt.Fprintf(w, `{"accepted":%d,"rejected":[{"index":0,"error":{}}]}`, n-1); err != nil {
				t.Errorf("answering a batch: %v", err)
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	res, err := Run(context.Background(), Config{URL: srv.URL, Meters: 5, Vehicles: 5, Readings: 1000, Concurrency: 8, BatchSize: 30})
	if err != nil {
		t.Fatal(err)
	}
	requests := (1000 + 29) / 30
	if res.Requests != requests || res.Failed != 0 {
		t.Errorf("requests = %d failed = %d, want %d and 0", res.Requests, res.Failed, requests)
	}
	if res.Accepted != 1000-requests || res.Rejected != requests {
		t.Errorf("accepted %d rejected %d, want %d and %d", res.Accepted, res.Rejected, 1000-requests, requests)
	}
	if len(got) != 1000 {
		t.Errorf("server saw %d distinct readings, want 1000", len(got))
	}
	for line, n := range got {
		if n != 1 {
			t.Errorf("%s sent %d times", line, n)
		}
	}
	if res.Percentile(50) <= 0 || res.Percentile(99) < res.Percentile(50) {
		t.Errorf("latencies p50 %s p99 %s", res.Percentile(50), res.Percentile(99))
	}

	single, err := Run(context.Background(), Config{URL: srv.URL, Readings: 50, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if single.Requests != 50 || single.Accepted != 50 {
		t.Errorf("single-reading run: %+v", single)
	}
}
