package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestShardsStatusPrintsTheVersionsAndEachShardsSlots(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	topo := ingester.Topology{Namespace: "cmd", Fleet: "grow", Shards: 2}
	if _, err := ingester.EnsureStreams(context.Background(), js, topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	grown, err := ingester.GrowShardMap(context.Background(), js, topo, 3, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cmd := newShardsCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"status", "--nats-url", srv.URL(), "--namespace", "cmd", "--fleet", "grow"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "version 0  from the beginning  2 shards  (in force)\n" +
		"  shard 0: 2048 slots (50.0%)\n" +
		"  shard 1: 2048 slots (50.0%)\n" +
		"version 1  from " + grown.Versions[1].From.UTC().Format(time.RFC3339Nano) + "  3 shards  (takes effect in 1h0m0s)\n" + // or a second less

		"  shard 0: 1366 slots (33.3%)\n" +
		"  shard 1: 1365 slots (33.3%)\n" +
		"  shard 2: 1365 slots (33.3%)\n"
	got := strings.Replace(out.String(), "(takes effect in 59m59s)", "(takes effect in 1h0m0s)", 1)
	if got != want {
		t.Fatalf("status:\n%s\nwant:\n%s", got, want)
	}
}
