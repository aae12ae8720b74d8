package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/devstack"
)

// TestTheDevStackKeepsItsDataAcrossRestarts stops a dev stack and starts another on the same
// data folder: readings, mappings and the shard schema are all still there.
func TestTheDevStackKeepsItsDataAcrossRestarts(t *testing.T) {
	cfg := devstack.Config{
		DataDir:  filepath.Join(t.TempDir(), "data"),
		Shards:   2,
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	start := func() *devstack.Stack {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		s, err := devstack.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("starting dev stack: %v", err)
		}
		trust(s)
		return s
	}

	first := start()
	if resp := postJSON(t, first.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": "EV-keep", "meterId": "m-keep"}); resp.Code != http.StatusOK {
		t.Fatalf("mapping: %d %s", resp.Code, resp.Body)
	}
	ts := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if resp := postJSON(t, first.URL()+"/v1/telemetry", map[string]any{"meterId": "m-keep", "kwhConsumedAc": 2.5, "voltage": 230, "timestamp": ts}); resp.Code != http.StatusAccepted {
		t.Fatalf("reading: %d %s", resp.Code, resp.Body)
	}
	waitForRows(t, shardPools(t, first), 1)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := start()
	t.Cleanup(func() {
		if err := second.Stop(); err != nil {
			t.Errorf("stopping dev stack: %v", err)
		}
	})
	if got := sum(historyRows(t, shardPools(t, second))); got != 1 {
		t.Errorf("after a restart the shards hold %d readings, want 1", got)
	}
	resp := do(t, http.MethodGet, second.URL()+"/v1/analytics/mappings/EV-keep", "", nil)
	var m struct {
		MeterID string `json:"meterId"`
	}
	resp.json(t, &m)
	if resp.Code != http.StatusOK || m.MeterID != "m-keep" {
		t.Errorf("mapping after a restart: %d %s", resp.Code, resp.Body)
	}
}
