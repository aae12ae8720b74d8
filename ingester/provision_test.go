package ingester_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestTopologyNamesAreSanitisedAndDistinct(t *testing.T) {
	top := ingester.Topology{Namespace: "prod", Fleet: "fleet.a", Shards: 2}
	if got, want := top.Stream(1), "FI_prod_fleet_a_1"; got != want {
		t.Errorf("Stream(1) = %q, want %q", got, want)
	}
	if got, want := top.Subject(0), "fi.prod.fleet_a.0"; got != want {
		t.Errorf("Subject(0) = %q, want %q", got, want)
	}
	if got, want := top.MappingBucket(), "fi_prod_fleet_a_mappings"; got != want {
		t.Errorf("MappingBucket() = %q, want %q", got, want)
	}
	if got, want := top.RevocationBucket(), "fi_prod_fleet_a_revocations"; got != want {
		t.Errorf("RevocationBucket() = %q, want %q", got, want)
	}
	if err := (ingester.Topology{Namespace: "", Fleet: "x", Shards: 1}).Validate(); err == nil {
		t.Error("a topology without namespace validated")
	}
	if err := (ingester.Topology{Namespace: "a", Fleet: "x", Shards: 0}).Validate(); err == nil {
		t.Error("a topology without shards validated")
	}
}

func TestStreamConfigIsDurableAndRefusesWhenFull(t *testing.T) {
	top := ingester.Topology{Namespace: "ns", Fleet: "f", Shards: 3}
	cfg := ingester.StreamConfig(top, 2, ingester.StreamOptions{MaxBytes: 1234, Replicas: 3})
	if cfg.Name != "FI_ns_f_2" || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "fi.ns.f.2" {
		t.Errorf("name/subjects = %s %v", cfg.Name, cfg.Subjects)
	}
	if cfg.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("retention = %v, want work queue", cfg.Retention)
	}
	if cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != 1234 {
		t.Errorf("discard = %v maxBytes = %d, want DiscardNew 1234", cfg.Discard, cfg.MaxBytes)
	}
	if cfg.MaxAge != 0 || cfg.Storage != jetstream.FileStorage || cfg.Replicas != 3 {
		t.Errorf("maxAge=%v storage=%v replicas=%d", cfg.MaxAge, cfg.Storage, cfg.Replicas)
	}
	cc := ingester.ConsumerConfig(ingester.StreamOptions{})
	if cc.Durable != ingester.ConsumerName || cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxDeliver != -1 {
		t.Errorf("consumer = %+v", cc)
	}
	if cc.MaxAckPending < 2*5000 {
		t.Errorf("MaxAckPending %d holds fewer than two default batches of single-reading messages", cc.MaxAckPending)
	}
}

func TestStreamDriftNamesChangedFields(t *testing.T) {
	top := ingester.Topology{Namespace: "ns", Fleet: "f", Shards: 1}
	want := ingester.StreamConfig(top, 0, ingester.StreamOptions{})
	live := want
	if d := ingester.StreamDrift(live, want); len(d) != 0 {
		t.Errorf("identical configs drift: %v", d)
	}
	live.MaxBytes = 1
	live.Retention = jetstream.InterestPolicy
	d := ingester.StreamDrift(live, want)
	if len(d) != 2 || d[0] != "retention" || d[1] != "maxBytes" {
		t.Errorf("drift = %v, want [retention maxBytes]", d)
	}
}

func TestEnsureStreamsCreatesThenRepairs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "dev", Fleet: "local", Shards: 2}
	opts := ingester.StreamOptions{MaxBytes: 1 << 20}

	p, err := ingester.EnsureStreams(ctx, js, top, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantBuckets := []ingester.BucketState{{Name: top.MappingBucket(), Created: true}, {Name: top.RevocationBucket(), Created: true}, {Name: top.ShardMapBucket(), Created: true}}
	if len(p.Streams) != 2 || !p.Streams[0].Created || !p.Streams[1].Created || !slices.Equal(p.Buckets, wantBuckets) {
		t.Fatalf("first pass = %+v, want everything created", p)
	}
	for i := 0; i < 2; i++ {
		s, err := js.Stream(ctx, top.Stream(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Consumer(ctx, ingester.ConsumerName); err != nil {
			t.Errorf("shard %d consumer: %v", i, err)
		}
	}

	// Unchanged: nothing created or updated.
	p, err = ingester.EnsureStreams(ctx, js, top, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Streams {
		if st.Created || len(st.Updated) > 0 {
			t.Errorf("second pass touched %s: %+v", st.Name, st)
		}
	}
	for _, b := range p.Buckets {
		if b.Created {
			t.Errorf("second pass created bucket %s again", b.Name)
		}
	}

	// Drift behind our back: MaxBytes changed, bucket deleted.
	live := ingester.StreamConfig(top, 1, opts)
	live.MaxBytes = 4096
	if _, err := js.UpdateStream(ctx, live); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, top.MappingBucket()); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, top.RevocationBucket()); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, top.ShardMapBucket()); err != nil {
		t.Fatal(err)
	}
	p, err = ingester.EnsureStreams(ctx, js, top, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Streams[1].Updated; len(got) != 1 || got[0] != "maxBytes" {
		t.Errorf("repair of shard 1 = %v, want [maxBytes]", got)
	}
	if !slices.Equal(p.Buckets, wantBuckets) {
		t.Errorf("deleted buckets were not re-created: %+v", p.Buckets)
	}
	s, err := js.Stream(ctx, top.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got != 1<<20 {
		t.Errorf("MaxBytes after repair = %d, want %d", got, 1<<20)
	}
	if _, err := js.KeyValue(ctx, top.MappingBucket()); errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Error("bucket still missing after repair")
	}
}

func TestEnsureStreamsRepairsADriftedBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "dev", Fleet: "idle", Shards: 1}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	info := func() *jetstream.StreamInfo {
		s, err := js.Stream(ctx, "KV_"+top.MappingBucket())
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo()
	}
	before := info()
	// Drift: a bucket with more history is put back to one revision per key.
	cfg := before.Config
	cfg.MaxMsgsPerSubject = 5
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := info().Config.MaxMsgsPerSubject; got != 1 {
		t.Errorf("bucket history after repair = %d, want 1", got)
	}
}
