package ingester_test

import (
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestTheShardMapIsProvisionedOnceGrownByCompareAndSetAndFollowed(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "shardmap", Shards: 2}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	maps, err := ingester.OpenShardMaps(ctx, js, top, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = maps.Run(ctx) }()
	if err := maps.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if m := maps.Current(); m.Shards() != 2 || len(m.Versions) != 1 {
		t.Fatalf("first map: %+v", m)
	}
	changes, stop := maps.Changes()
	defer stop()

	written := time.Now()
	grown, err := ingester.GrowShardMap(ctx, js, top, 3, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if from := grown.Versions[1].From; from.Before(written.Add(5*time.Second)) || from.After(time.Now().Add(5*time.Second)) {
		t.Fatalf("the new version starts %s, want 5 s after it was written (%s)", from, written)
	}
	deadline := time.After(time.Second)
	for maps.Current().Shards() != 3 {
		select {
		case <-changes:
		case <-deadline:
			t.Fatal("the grown map was not seen within a second")
		}
	}
	if m := maps.Current(); !m.Versions[1].From.Equal(grown.Versions[1].From) {
		t.Fatalf("map followed: %+v", m)
	}

	// Provisioning again, with the grown topology, keeps the map as it is.
	top.Shards = 3
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	m, rev, err := ingester.ReadShardMap(ctx, js, top)
	if err != nil || len(m.Versions) != 2 {
		t.Fatalf("map after provisioning again: %+v, %v", m, err)
	}
	// Shrinking, or growing to as many shards, is refused and writes nothing.
	for _, n := range []int{2, 3} {
		if _, err := ingester.GrowShardMap(ctx, js, top, n, 5*time.Second); err == nil {
			t.Fatalf("growing to %d shards was accepted", n)
		}
	}
	if _, again, err := ingester.ReadShardMap(ctx, js, top); err != nil || again != rev {
		t.Fatalf("revision %d after refused growths, want %d (%v)", again, rev, err)
	}
}
