package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAnAcceptedReadingIsInTheAnswerWithinASecond posts, while a fleet of 200 other devices
// writes, one reading at a time for a vehicle and asks for its performance until the answer
// counts it: every reading answered 202 is there within 1 s.
func TestAnAcceptedReadingIsInTheAnswerWithinASecond(t *testing.T) {
	const bound = time.Second
	s := startStack(t, nil)
	if r := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": "fresh-ev", "meterId": "fresh-m"}); r.Code != http.StatusOK {
		t.Fatalf("mapping: %d %s", r.Code, r.Body)
	}

	// The rest of the fleet: a batch of 200 readings every 50 ms on both shards.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ctx.Err() == nil; n++ {
			var lines []string
			at := time.Now().UTC().Format(time.RFC3339Nano)
			for d := range 100 {
				lines = append(lines,
					fmt.Sprintf(`{"meterId":"fresh-other-m-%d","kwhConsumedAc":0.5,"voltage":230,"timestamp":%q}`, d, at),
					fmt.Sprintf(`{"vehicleId":"fresh-other-ev-%d","soc":50,"kwhDeliveredDc":0.4,"batteryTemp":25,"timestamp":%q}`, d, at))
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/telemetry/batch", bytes.NewReader([]byte(strings.Join(lines, "\n"))))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/x-ndjson")
			res, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("the other writes: %v", err)
				}
				return
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Errorf("the other writes: %d", res.StatusCode)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	defer func() { cancel(); wg.Wait() }()

	readings := func() int {
		var v struct {
			VehicleReadings int `json:"vehicleReadings"`
		}
		get(t, s, "/v1/analytics/performance/fresh-ev").json(t, &v)
		return v.VehicleReadings
	}
	if n := readings(); n != 0 {
		t.Fatalf("%d readings before the first was posted", n)
	}
	var worst time.Duration
	for i := range 20 {
		r := postJSON(t, s.URL()+"/v1/telemetry", map[string]any{
			"vehicleId": "fresh-ev", "soc": 50, "kwhDeliveredDc": 0.1, "batteryTemp": 25,
			"timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		})
		accepted := time.Now()
		if r.Code != http.StatusAccepted {
			t.Fatalf("reading %d: %d %s", i, r.Code, r.Body)
		}
		for readings() != i+1 {
			if time.Since(accepted) > bound {
				t.Fatalf("reading %d is not in the answer %s after its 202", i, bound)
			}
			time.Sleep(10 * time.Millisecond)
		}
		worst = max(worst, time.Since(accepted))
	}
	t.Logf("slowest reading to show: %s", worst)
}
