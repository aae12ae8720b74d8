package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
)

// TestReadingsArePlacedByTheShardMapInForceAtTheirTime grows a running gateway's fleet from
// two shards to three: a reading stamped before the new version's from stays on the shard
// that held its key, one stamped after lands on the new shard, and a gateway that has not
// seen the new version (held back) places the readings stamped before from alike.
func TestReadingsArePlacedByTheShardMapInForceAtTheirTime(t *testing.T) {
	e := newEnv(t, envOptions{shards: 2})
	e.waitReady()
	ctx := context.Background()
	old := e.maps.Current()

	// A gateway that keeps the first map: held back from the new version.
	held, err := gateway.New(e.nc, gateway.Config{
		Topology: e.topo, ShardMap: placement.Fixed{Map: old}, Placement: e.reg,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = held.Run(hctx) }()
	defer func() { stop(); <-done }()
	heldSrv := httptest.NewServer(held.Handler())
	defer heldSrv.Close()

	// The new shard's stream first, then the version, 3 s ahead.
	e.topo.Shards = 3
	if _, err := ingester.EnsureStreams(ctx, e.js, e.topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	grown, err := ingester.GrowShardMap(ctx, e.js, e.topo, 3, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	from := grown.Versions[1].From
	deadline := time.Now().Add(time.Second)
	for e.maps.Current().Shards() != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway's copy did not see the grown map within a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var moved string
	for i := 0; moved == ""; i++ {
		if id := fmt.Sprintf("mv-%d", i); grown.ShardOf(id, from) == 2 {
			moved = id
		}
	}
	before := old.ShardOf(moved, from)

	post := func(url string, ts time.Time) {
		t.Helper()
		res, err := http.Post(url+gateway.PathTelemetry, "application/json", strings.NewReader(meterJSON(moved, ts)))
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("reading at %s: %d", ts, res.StatusCode)
		}
	}
	post(e.http.URL, from.Add(-time.Second))
	post(heldSrv.URL, from.Add(-2*time.Second))
	post(e.http.URL, from.Add(time.Second))
	count := func(shard int) (n int) {
		for _, b := range e.messages(shard) {
			for _, m := range b.GetMeters() {
				if m.GetMeterId() == moved {
					n++
				}
			}
		}
		return n
	}
	if got := [3]int{count(0), count(1), count(2)}; got[before] != 2 || got[2] != 1 {
		t.Fatalf("readings of %s per shard %v: want the two stamped before %s on shard %d, the one after on shard 2", moved, got, from, before)
	}
}
