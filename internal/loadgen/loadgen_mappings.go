package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// mappingWriters bounds the mapping writes in flight.
const mappingWriters = 16

// writeMappings maps every vehicle to its charger through the analytics API, from
// Config.Start or from now, and returns the latest time one of the mappings starts from:
// readings after it are placed by them.
func writeMappings(ctx context.Context, cfg Config, f *fleet) (time.Time, error) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(min(cfg.Concurrency, mappingWriters))
	var mu sync.Mutex
	var latest time.Time
	for i := range f.vehicles {
		g.Go(func() error {
			from, err := writeMapping(ctx, cfg, cfg.vehicleID(i), cfg.meterID(f.vehicles[i].charger))
			if err != nil {
				return err
			}
			mu.Lock()
			latest = later(latest, from)
			mu.Unlock()
			return nil
		})
	}
	return latest, g.Wait()
}

// mappingAnswer is the part of the analytics API's mapping answer a run needs.
type mappingAnswer struct {
	Intervals []struct {
		MeterID string    `json:"meterId"`
		From    time.Time `json:"from"`
	} `json:"intervals"`
}

// writeMapping maps vehicle to meter from cfg.Start, or from now on, and returns when that
// mapping starts.
func writeMapping(ctx context.Context, cfg Config, vehicle, meter string) (time.Time, error) {
	m := map[string]string{"vehicleId": vehicle, "meterId": meter}
	if !cfg.Start.IsZero() {
		m["from"] = cfg.Start.UTC().Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return time.Time{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.AnalyticsURL+"/v1/analytics/mappings", bytes.NewReader(body))
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.AdminToken)
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("mapping %s to %s: %w", vehicle, meter, err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end or failed: closing only frees the connection
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return time.Time{}, fmt.Errorf("mapping %s to %s: reading the answer: %w", vehicle, meter, err)
	}
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, fmt.Errorf("mapping %s to %s: %s: %s", vehicle, meter, resp.Status, clip(string(bytes.TrimSpace(data))))
	}
	var answer mappingAnswer
	if err := json.Unmarshal(data, &answer); err != nil {
		return time.Time{}, fmt.Errorf("mapping %s to %s: decoding the answer: %w", vehicle, meter, err)
	}
	for i := len(answer.Intervals) - 1; i >= 0; i-- {
		if iv := answer.Intervals[i]; iv.MeterID == meter {
			return iv.From, nil
		}
	}
	return time.Time{}, fmt.Errorf("mapping %s to %s: the answer holds no interval at %s: %s", vehicle, meter, meter, clip(string(data)))
}
