package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// openWriter opens a second registry on the env's bucket, as the analytics service would to
// write mappings, with its own clock.
func openWriter(e *env, now func() time.Time) (*registry.Registry, error) {
	return registry.Open(context.Background(), e.js, e.topo.MappingBucket(), registry.Config{Now: now})
}

func TestGatewayAnswers503WhenTheStreamIsFullAndKeepsWhatItAccepted(t *testing.T) {
	e := newEnv(t, envOptions{shards: 2, streams: ingester.StreamOptions{MaxBytes: 4096}})
	now := time.Now().Add(-time.Minute)
	full := idOnShard(t, e.slots, "meter", 0)
	other := idOnShard(t, e.slots, "meter", 1)

	accepted := 0
	var last answer
	for i := 0; i < 500; i++ {
		last = e.post(gateway.PathTelemetry, "application/json", meterJSON(full, now.Add(-time.Duration(i)*time.Second)))
		if last.code != http.StatusAccepted {
			break
		}
		accepted++
	}
	if last.code != http.StatusServiceUnavailable {
		t.Fatalf("after %d readings: %d %s, want 503", accepted, last.code, last.body)
	}
	if last.retryAfter != "1" {
		t.Fatalf("Retry-After %q, want 1", last.retryAfter)
	}
	if s := parseStatus(t, last.body); s.Code != 14 || !strings.Contains(s.Message, "maximum bytes") {
		t.Fatalf("503 body %s", last.body)
	}
	if accepted == 0 {
		t.Fatal("nothing fit in the stream")
	}
	// Everything answered 202 is in the stream.
	if _, ms, _ := e.find(full); len(ms) != accepted {
		t.Fatalf("%d readings answered 202, %d in the stream", accepted, len(ms))
	}

	// A batch spanning the full shard and a healthy one: the healthy shard's items are
	// accepted, the others listed as UNAVAILABLE.
	body := "[" + meterJSON(other, now) + "," + meterJSON(full, now.Add(time.Second)) + "]"
	a := e.post(gateway.PathTelemetryBatch, "application/json", body)
	if a.code != http.StatusAccepted {
		t.Fatalf("mixed batch: %d %s", a.code, a.body)
	}
	var resp struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index int             `json:"index"`
			Error json.RawMessage `json:"error"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal(a.body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 1 || len(resp.Rejected) != 1 || resp.Rejected[0].Index != 1 {
		t.Fatalf("mixed batch answer %s", a.body)
	}
	if s := parseStatus(t, resp.Rejected[0].Error); s.Code != 14 {
		t.Fatalf("rejected item error %s", resp.Rejected[0].Error)
	}
	// A batch for the full shard only is a 503.
	a = e.post(gateway.PathTelemetryBatch, "application/x-ndjson", meterJSON(full, now.Add(2*time.Second)))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("batch to the full shard: %d %s", a.code, a.body)
	}

	// Once the ingester consumed the stream, readings are accepted again.
	if got := e.consume(0); len(got) != accepted {
		t.Fatalf("consumed %d messages, want %d", len(got), accepted)
	}
	if a := e.post(gateway.PathTelemetry, "application/json", meterJSON(full, now.Add(3*time.Second))); a.code != http.StatusAccepted {
		t.Fatalf("after the stream drained: %d %s", a.code, a.body)
	}
	if !strings.Contains(metricsText(t, e), `reason="unavailable"`) {
		t.Fatal("unavailable rejections not counted")
	}
}

func TestGatewayAnswers503WhenNATSIsDown(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now().Add(-time.Minute)
	if a := e.post(gateway.PathTelemetry, "application/json", meterJSON("m-1", now)); a.code != http.StatusAccepted {
		t.Fatalf("%d %s", a.code, a.body)
	}
	e.srv.Stop()
	waitFor(t, 5*time.Second, func() bool { return !e.nc.IsConnected() })

	start := time.Now()
	a := e.post(gateway.PathTelemetry, "application/json", meterJSON("m-2", now))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("with NATS down: %d %q %s", a.code, a.retryAfter, a.body)
	}
	if s := parseStatus(t, a.body); s.Code != 14 {
		t.Fatalf("body %s", a.body)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("503 took %s", took)
	}
	a = e.post(gateway.PathTelemetryBatch, "application/json", "["+meterJSON("m-3", now)+"]")
	if a.code != http.StatusServiceUnavailable {
		t.Fatalf("batch with NATS down: %d %s", a.code, a.body)
	}
	if err := e.gw.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Fatalf("ready with NATS down: %v", err)
	}

	// After NATS is back (same store), the gateway reconnects and accepts again.
	srv, err := e.srv.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	e.srv = srv
	waitFor(t, 10*time.Second, func() bool { return e.gw.Ready(context.Background()) == nil })
	if a := e.post(gateway.PathTelemetry, "application/json", meterJSON("m-4", now)); a.code != http.StatusAccepted {
		t.Fatalf("after NATS came back: %d %s", a.code, a.body)
	}
	if _, ms, _ := e.find("m-4"); len(ms) != 1 {
		t.Fatal("reading accepted after reconnect is not in the stream")
	}
}

func TestGatewayIsNotReadyUntilTheMappingCopyCaughtUp(t *testing.T) {
	vehicle, meter := "ev-ready", ""
	e := newEnv(t, envOptions{
		skipRegistry: true,
		before: func(js jetstream.JetStream, topo ingester.Topology) {
			// A mapping that exists before the gateway starts.
			w, err := registry.Open(context.Background(), js, topo.MappingBucket(), registry.Config{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				meter = fmt.Sprintf("site-%d", i)
				if placementShard(topo, meter) != placementShard(topo, vehicle) {
					break
				}
			}
			if _, err := w.Set(context.Background(), vehicle, meter); err != nil {
				t.Fatal(err)
			}
		},
	})
	// Wait until the publishers run, so that only the mapping copy holds readiness back.
	waitFor(t, 5*time.Second, func() bool {
		err := e.gw.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "mapping")
	})
	a := e.post(gateway.PathTelemetry, "application/json", vehicleJSON(vehicle, time.Now()))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("before the copy caught up: %d %s", a.code, a.body)
	}
	if msgs, _ := e.published(); msgs != 0 {
		t.Fatal("a reading was routed on a stale view")
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.startRegistry(ctx)
	e.waitReady()
	if a := e.post(gateway.PathTelemetry, "application/json", vehicleJSON(vehicle, time.Now())); a.code != http.StatusAccepted {
		t.Fatalf("after the copy caught up: %d %s", a.code, a.body)
	}
	shard, _, vs := e.find(vehicle)
	if shard != e.slots.ShardOf(meter) || len(vs) != 1 || vs[0].GetMeterId() != meter {
		t.Fatalf("first reading after readiness on shard %d as %v, want meter %s's shard", shard, vs, meter)
	}
}

func placementShard(topo ingester.Topology, key string) int {
	return placement.MustSlotMap(topo.Shards).ShardOf(key)
}
