package shard

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// resumeWithin bounds how long after the operator made a deleted stream or consumer again the
// ingester stores new readings. The ingester needs at most one lookup backoff (BindRetryMax,
// 1s) after the server's deletion notice, or two missed pull heartbeats (PullHeartbeat, 2s)
// plus one backoff when no notice reached it; 10s leaves room for a loaded 2-core CI machine
// under the race detector. An ingester that kept pulling from the deleted consumer would stay
// silent until two of the pull's default 15s heartbeats were missed, about 30s.
const resumeWithin = 10 * time.Second

// remake makes the fleet's streams and consumers again, as the operator's next pass does.
func remake(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := ingester.EnsureStreams(t.Context(), js, topo, ingester.StreamOptions{AckWait: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
}

// pauseFirstCommit returns an AfterCommit hook that holds the first committed batch before
// its acknowledgements until release is called, and a channel closed once it holds it.
func pauseFirstCommit() (hook func(context.Context) error, held <-chan struct{}, release func()) {
	var first atomic.Bool
	holding, gate := make(chan struct{}), make(chan struct{})
	hook = func(ctx context.Context) error {
		if first.Swap(true) {
			return nil
		}
		close(holding)
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return hook, holding, func() { close(gate) }
}

func meterRows(t *testing.T, e *env) int {
	t.Helper()
	m, _ := rows(t, e.pool)
	return m
}

// TestIngesterResumesWithin10sOfItsDeletedStreamBeingMadeAgain deletes the stream (and with it
// the consumer) under an idle ingester, whose waiting pull the server answers with a
// deletion notice; the operator makes both again a while later.
func TestIngesterResumesWithin10sOfItsDeletedStreamBeingMadeAgain(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	in, _ := start(t, e.config())
	publishBatch(t, e.js, readings(0, 5))
	eventually(t, 20*time.Second, "first message stored", func() bool { return meterRows(t, e) == 5 })

	if err := e.js.DeleteStream(t.Context(), topo.Stream(shardIdx)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the loss is noticed", func() bool {
		return in.Ready(t.Context()) != nil && value(t, in.metrics.consumerBound) == 0
	})
	// The operator's next pass comes later than the ingester's first lookups: by then its
	// backoff has reached the cap.
	time.Sleep(2 * time.Second)
	remake(t, e.js)
	made := time.Now()
	publishBatch(t, e.js, readings(1, 5))
	eventually(t, resumeWithin, "a reading published after the stream was made again is stored", func() bool {
		return meterRows(t, e) == 10
	})
	t.Logf("stored %s after the stream was made again", time.Since(made).Round(10*time.Millisecond))

	if got := value(t, in.metrics.consumerLost); got != 1 {
		t.Errorf("consumer lost metric = %v, want 1", got)
	}
	eventually(t, 5*time.Second, "ready and bound again", func() bool {
		return in.Ready(t.Context()) == nil && value(t, in.metrics.consumerBound) == 1
	})
}

// TestIngesterResumesWithin10sWhenNoDeletionNoticeReachedIt deletes the stream while the
// ingester holds no pull on the server (its only message is being committed), so no notice
// of the deletion reaches it and its next pull is answered by no one; only the missed
// heartbeats of that pull tell.
func TestIngesterResumesWithin10sWhenNoDeletionNoticeReachedIt(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	cfg := e.config()
	// One message buffered ahead and a batch closed by a single message's 10 readings: after
	// taking the message the ingester pulls nothing more until its batch is acknowledged.
	cfg.PullMaxMessages, cfg.BatchSize = 1, 10
	hook, held, release := pauseFirstCommit()
	cfg.AfterCommit = hook
	in, _ := start(t, cfg)
	publishBatch(t, e.js, readings(0, 5))
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("first batch not committed")
	}

	if err := e.js.DeleteStream(t.Context(), topo.Stream(shardIdx)); err != nil {
		t.Fatal(err)
	}
	release()
	// Let the ingester send its next pull to the missing consumer before the operator's pass.
	time.Sleep(500 * time.Millisecond)
	remake(t, e.js)
	made := time.Now()
	publishBatch(t, e.js, readings(1, 5))
	eventually(t, resumeWithin, "a reading published after the stream was made again is stored", func() bool {
		return meterRows(t, e) == 10
	})
	t.Logf("stored %s after the stream was made again", time.Since(made).Round(10*time.Millisecond))

	if got := value(t, in.metrics.consumerLost); got != 1 {
		t.Errorf("consumer lost metric = %v, want 1", got)
	}
	if err := in.Ready(t.Context()); err != nil {
		t.Errorf("not ready after binding again: %v", err)
	}
}

// TestIngesterStoresEveryReadingOnceWhenItsConsumerIsDeletedMidBatch deletes only the
// consumer while a committed batch waits to be acknowledged: its acknowledgements reach no
// one, so the consumer made again delivers those messages anew, next to messages it never
// delivered. Every reading is stored and counted once.
func TestIngesterStoresEveryReadingOnceWhenItsConsumerIsDeletedMidBatch(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	const before, after, perKind = 4, 2, 10
	for i := range before {
		publishBatch(t, e.js, readings(i, perKind))
	}
	cfg := e.config()
	cfg.BatchWait = 300 * time.Millisecond // the four messages in one batch
	hook, held, release := pauseFirstCommit()
	cfg.AfterCommit = hook
	in, _ := start(t, cfg)
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("first batch not committed")
	}

	if err := e.js.DeleteConsumer(t.Context(), topo.Stream(shardIdx), ingester.ConsumerName); err != nil {
		t.Fatal(err)
	}
	release()
	eventually(t, 5*time.Second, "the loss is noticed", func() bool { return in.Ready(t.Context()) != nil })
	for i := before; i < before+after; i++ {
		publishBatch(t, e.js, readings(i, perKind))
	}
	remake(t, e.js)
	eventually(t, resumeWithin, "stream empties after the consumer was made again", func() bool {
		return streamMsgs(t, e.js) == 0
	})

	if m, v := rows(t, e.pool); m != (before+after)*perKind || v != (before+after)*perKind {
		t.Errorf("stored %d meter and %d vehicle rows, want %d each", m, v, (before+after)*perKind)
	}
	if got := value(t, in.metrics.duplicates.WithLabelValues("meter")); got != before*perKind {
		t.Errorf("meter duplicates = %v, want %d (the redelivered, unacknowledged batch)", got, before*perKind)
	}
	var hourly int
	if err := e.pool.QueryRow(t.Context(), "SELECT sum(readings) FROM meter_hourly").Scan(&hourly); err != nil {
		t.Fatal(err)
	}
	if hourly != (before+after)*perKind {
		t.Errorf("meter rollups count %d readings, want %d", hourly, (before+after)*perKind)
	}
	if got := value(t, in.metrics.consumerLost); got != 1 {
		t.Errorf("consumer lost metric = %v, want 1", got)
	}
}

// TestConfigRejectsAPullHeartbeatTheClientCannotAskFor checks the heartbeat at New: a pull
// lives 30s and the client refuses heartbeats longer than half of that, which would otherwise
// surface only when the ingester first pulls.
func TestConfigRejectsAPullHeartbeatTheClientCannotAskFor(t *testing.T) {
	for _, hb := range []time.Duration{-time.Second, 16 * time.Second} {
		cfg := Config{Topology: topo, Shard: shardIdx, Store: &store.Store{}, PullHeartbeat: hb}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "pull heartbeat") {
			t.Errorf("New with a pull heartbeat of %s: %v, want an error naming the pull heartbeat", hb, err)
		}
	}
}
