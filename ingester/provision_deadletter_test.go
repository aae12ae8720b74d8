package ingester_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestDeadLetterNamesAreTheFleetsAndApartFromTheShards(t *testing.T) {
	top := ingester.Topology{Namespace: "prod", Fleet: "fleet.a", Shards: 2}
	for _, c := range []struct{ got, want string }{
		{top.DeadLetterStream(), "FI_prod_fleet_a_deadletter"},
		{top.DeadLetterSubject(1), "fi.prod.fleet_a.deadletter.1"},
		{top.DeadLetterSubjects(), "fi.prod.fleet_a.deadletter.*"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	cfg := ingester.DeadLetterStreamConfig(top, ingester.StreamOptions{Replicas: 3, MaxAge: time.Hour})
	if cfg.Retention != jetstream.LimitsPolicy || cfg.Discard != jetstream.DiscardNew || cfg.MaxAge != 0 ||
		cfg.Storage != jetstream.FileStorage || cfg.Replicas != 3 || cfg.MaxBytes != ingester.DefaultMaxBytes || cfg.Duplicates < time.Minute {
		t.Errorf("dead-letter stream config %+v: want limits retention, DiscardNew, no MaxAge, file storage, 3 replicas, duplicate window", cfg)
	}
	if !slices.Equal(cfg.Subjects, []string{"fi.prod.fleet_a.deadletter.*"}) {
		t.Errorf("subjects %v", cfg.Subjects)
	}
	long := ingester.Topology{Namespace: string(make([]byte, 95)), Fleet: string(make([]byte, 95)), Shards: 1}
	if err := long.Validate(); err == nil {
		t.Errorf("a topology whose dead-letter stream name has %d characters validated", len(long.DeadLetterStream()))
	}
}

// TestEnsureStreamsMakesTheDeadLetterStreamAndShortensAnOldAckWait provisions a fleet as an
// earlier version did (a durable consumer with a 60 s AckWait, no dead-letter stream): one
// pass puts the consumer's AckWait to the default and creates the dead-letter stream; the
// next pass finds nothing to do.
func TestEnsureStreamsMakesTheDeadLetterStreamAndShortensAnOldAckWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "dev", Fleet: "upgrade", Shards: 2}
	old := ingester.StreamOptions{AckWait: time.Minute}
	for i := range top.Shards {
		s, err := js.CreateStream(ctx, ingester.StreamConfig(top, i, old))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateOrUpdateConsumer(ctx, ingester.ConsumerConfig(old)); err != nil {
			t.Fatal(err)
		}
	}

	p, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range p.Streams {
		if !slices.Equal(st.Updated, []string{"consumer ackWait"}) {
			t.Errorf("shard %d: updated %v, want [consumer ackWait]", i, st.Updated)
		}
		c, err := js.Consumer(ctx, top.Stream(i), ingester.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.CachedInfo().Config.AckWait; got != ingester.DefaultAckWait {
			t.Errorf("shard %d: AckWait %s after the pass, want %s", i, got, ingester.DefaultAckWait)
		}
	}
	if dl := p.DeadLetter; !dl.Created || dl.Name != top.DeadLetterStream() || dl.Shard != -1 {
		t.Errorf("dead-letter stream %+v, want created", dl)
	}
	if _, err := js.Stream(ctx, top.DeadLetterStream()); err != nil {
		t.Fatalf("dead-letter stream: %v", err)
	}

	p, err = ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range append(p.Streams, p.DeadLetter) {
		if st.Created || len(st.Updated) > 0 {
			t.Errorf("second pass touched %s: %+v", st.Name, st)
		}
	}

	// Drift of the dead-letter stream is put back like a shard stream's.
	live := ingester.DeadLetterStreamConfig(top, ingester.StreamOptions{})
	live.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, live); err != nil {
		t.Fatal(err)
	}
	if p, err = ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.DeadLetter.Updated, []string{"maxAge"}) {
		t.Errorf("dead-letter repair %v, want [maxAge]", p.DeadLetter.Updated)
	}
}

func TestConsumerDriftNamesChangedFields(t *testing.T) {
	want := ingester.ConsumerConfig(ingester.StreamOptions{})
	if d := ingester.ConsumerDrift(want, want); len(d) != 0 {
		t.Errorf("identical configs drift: %v", d)
	}
	live := want
	live.AckWait, live.MaxDeliver = time.Minute, 5
	if d := ingester.ConsumerDrift(live, want); !slices.Equal(d, []string{"consumer ackWait", "consumer maxDeliver"}) {
		t.Errorf("drift = %v", d)
	}
	if ingester.DefaultAckWait > 10*time.Second {
		t.Errorf("default AckWait %s: a dead ingester's messages would wait longer than 10 s", ingester.DefaultAckWait)
	}
}
