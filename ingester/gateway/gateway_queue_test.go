package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

type fixedPlacement struct{}

func (fixedPlacement) PlacementKey(vehicleID string, _ time.Time) string { return vehicleID }
func (fixedPlacement) Ready() bool                                       { return true }

func TestFullShardQueueAnswers503AndQueuesNothingMore(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.URL())
	topo := ingester.Topology{Namespace: "test", Fleet: "queue", Shards: 1}
	if _, err := ingester.EnsureStreams(context.Background(), js, topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	g, err := New(nc, Config{
		Topology: topo, ShardMap: placement.Fixed{Map: placement.MustShardMap(1)}, Placement: fixedPlacement{},
		MaxBatchReadings: 2, QueueSize: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Accepting, but with no publisher taking readings off the queue.
	g.running.Store(true)
	h := g.Handler()
	post := func(path, body string) *httptest.ResponseRecorder {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	reading := `{"meterId":"m-1","kwhConsumedAc":1,"voltage":230,"timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	// Two readings fill the queue; their clients give up waiting.
	for range 2 {
		if rec := post(PathTelemetry, reading); rec.Code != statusClientClosed {
			t.Fatalf("queued reading answered %d %s", rec.Code, rec.Body)
		}
	}
	if d := g.shards[0].depth.Load(); d != 2 {
		t.Fatalf("queue depth %d, want 2", d)
	}
	for _, path := range []string{PathTelemetry, PathTelemetryBatch} {
		body := reading
		if path == PathTelemetryBatch {
			body = "[" + reading + "]"
		}
		rec := post(path, body)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("%s with a full queue: %d %v %s", path, rec.Code, rec.Header(), rec.Body)
		}
		var s struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.Code != codeUnavailable || !strings.Contains(s.Message, "queue") {
			t.Fatalf("%s body %s (%v)", path, rec.Body, err)
		}
	}
	if d := g.shards[0].depth.Load(); d != 2 {
		t.Fatalf("queue depth %d after refusals, want 2", d)
	}
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	topo := ingester.Topology{Namespace: "ns", Fleet: "f", Shards: 2}
	base := Config{Topology: topo, ShardMap: placement.Fixed{Map: placement.MustShardMap(2)}, Placement: fixedPlacement{}}
	c := base.withDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Linger != time.Millisecond || c.MaxReadingsPerMessage != 256 || c.MaxBodyBytes != 1<<20 ||
		c.MaxBatchBodyBytes != 16<<20 || c.MaxBatchReadings != 10_000 || c.QueueSize != 20_000 ||
		c.Limits.MaxLateness != 7*24*time.Hour || c.Limits.MaxFutureSkew != 5*time.Minute {
		t.Fatalf("defaults %+v", c)
	}
	for name, mod := range map[string]func(*Config){
		"no shard map":       func(c *Config) { c.ShardMap = nil },
		"no placement":       func(c *Config) { c.Placement = nil },
		"a linger above 2ms": func(c *Config) { c.Linger = 3 * time.Millisecond },
		"a queue smaller than a batch": func(c *Config) {
			c.MaxBatchReadings = 100
			c.QueueSize = 50
		},
		"too many readings per message": func(c *Config) { c.MaxReadingsPerMessage = 20_000 },
	} {
		c := base
		mod(&c)
		if err := c.withDefaults().validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
