package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester/deadletter"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// records keeps the log records of a test's ingester.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// with returns the records whose message contains msg.
func (r *records) with(msg string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for i := range r.recs {
		if strings.Contains(r.recs[i].Message, msg) {
			out = append(out, r.recs[i])
		}
	}
	return out
}

// TestIngesterParksWhatTheDatabaseRefusesForGoodAndWritesTheRest adds a CHECK constraint
// to the shard's meter history that three readings of a stream of 500 break: the ingester
// writes the others, parks the three with the constraint named as the reason, and does not
// stall; once the constraint is dropped, a replay stores the three once.
func TestIngesterParksWhatTheDatabaseRefusesForGoodAndWritesTheRest(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	ctx := t.Context()
	if _, err := e.pool.Exec(ctx, `ALTER TABLE meter_telemetry_history ADD CONSTRAINT voltage_plausible CHECK (voltage >= 180)`); err != nil {
		t.Fatal(err)
	}
	const msgs, perKind = 25, 10
	poison := map[string]bool{}
	for i := range msgs {
		b := readings(i, perKind)
		if i == 0 || i == 12 || i == 24 {
			b.Meters[i%perKind].Voltage = 150
			poison[fmt.Sprintf("%s@%d", b.Meters[i%perKind].MeterId, b.Meters[i%perKind].TimestampMicros)] = true
		}
		publishBatch(t, e.js, b)
	}
	logs := &records{}
	cfg := e.config()
	cfg.Logger = slog.New(logs)
	in, _ := start(t, cfg)

	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != msgs*perKind-3 || v != msgs*perKind {
		t.Errorf("stored %d meter and %d vehicle rows, want %d and %d", m, v, msgs*perKind-3, msgs*perKind)
	}
	if got := value(t, in.metrics.parked.WithLabelValues("meter")); got != 3 {
		t.Errorf("parked metric = %v, want 3", got)
	}
	if got := value(t, in.metrics.batchesSplit); got < 1 {
		t.Errorf("batches split = %v", got)
	}
	if got := value(t, in.metrics.acked); got != msgs {
		t.Errorf("acked metric = %v, want %d", got, msgs)
	}
	parked, err := deadletter.List(ctx, e.js, topo, deadletter.Filter{Shard: deadletter.AnyShard})
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 3 {
		t.Fatalf("%d readings parked, want 3: %+v", len(parked), parked)
	}
	for _, p := range parked {
		key := fmt.Sprintf("%s@%d", p.Reading.DeviceID(), p.Reading.TimestampMicros())
		if p.Err != nil || p.Shard != shardIdx || !poison[key] || !strings.Contains(p.Reason, "voltage_plausible") ||
			!strings.Contains(p.Reason, "23514") || time.Since(p.PublishedAt) > time.Minute {
			t.Errorf("parked %s on shard %d (%v), published %s, reason %q", key, p.Shard, p.Err, p.PublishedAt, p.Reason)
		}
	}
	lines, count := logs.with("parked readings"), 0
	for _, rec := range lines {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "parked" {
				count += int(a.Value.Int64())
			}
			return true
		})
	}
	if len(lines) == 0 || count != 3 {
		t.Errorf("%d log lines tell of %d parked readings, want one a batch, 3 in all", len(lines), count)
	}
	if err := in.Ready(ctx); err != nil {
		t.Errorf("not ready after parking: %v", err)
	}

	// Fixed: the constraint goes, the replay lands every parked reading once.
	if _, err := e.pool.Exec(ctx, `ALTER TABLE meter_telemetry_history DROP CONSTRAINT voltage_plausible`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second replay finds nothing
		if _, err := deadletter.Replay(ctx, e.js, topo, deadletter.Filter{Shard: deadletter.AnyShard}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "replayed readings stored", func() bool { m, _ := rows(t, e.pool); return m == msgs*perKind })
	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	var hourly int
	if err := e.pool.QueryRow(ctx, "SELECT sum(readings) FROM meter_hourly").Scan(&hourly); err != nil {
		t.Fatal(err)
	}
	if m, _ := rows(t, e.pool); m != msgs*perKind || hourly != msgs*perKind {
		t.Errorf("%d meter rows, rollups count %d, want %d each", m, hourly, msgs*perKind)
	}
	if left, err := deadletter.List(ctx, e.js, topo, deadletter.Filter{Shard: deadletter.AnyShard}); err != nil || len(left) != 0 {
		t.Errorf("dead-letter stream after the replay: %+v %v", left, err)
	}
}

// slowStore makes the first write take longer than the consumer's AckWait.
type slowStore struct {
	*store.Store
	delay time.Duration
	once  sync.Once
}

func (s *slowStore) WriteBatch(ctx context.Context, m []*telemetrypb.MeterReading, v []*telemetrypb.VehicleReading) (store.Result, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	return s.Store.WriteBatch(ctx, m, v)
}

// TestABatchWrittenLongerThanAckWaitIsNotRedelivered keeps a write going for one and a half
// AckWaits: the messages, marked in progress meanwhile, are delivered once.
func TestABatchWrittenLongerThanAckWaitIsNotRedelivered(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	for i := range 3 {
		publishBatch(t, e.js, readings(i, 5))
	}
	cfg := e.config()
	cfg.BatchWait = 200 * time.Millisecond
	cfg.ProgressInterval = time.Minute // capped at a quarter of the 2 s AckWait
	cfg.Store = &slowStore{Store: e.store, delay: 3 * time.Second}
	in, _ := start(t, cfg)
	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	if got := value(t, in.metrics.redelivered); got != 0 {
		t.Errorf("%v messages redelivered during a write of 3 s with an AckWait of 2 s", got)
	}
	if got := value(t, in.metrics.duplicates.WithLabelValues("meter")); got != 0 {
		t.Errorf("%v duplicates skipped", got)
	}
}

func TestOnlyDataErrorsAreRefusalsForGood(t *testing.T) {
	for _, c := range []struct {
		err  error
		good bool
	}{
		{&pgconn.PgError{Code: "23514"}, true}, // check_violation
		{&pgconn.PgError{Code: "23502"}, true}, // not_null_violation
		{&pgconn.PgError{Code: "22003"}, true}, // numeric_value_out_of_range
		{&pgconn.PgError{Code: "P0001"}, true}, // raise_exception in a trigger
		{fmt.Errorf("writing batch: %w", &pgconn.PgError{Code: "22008"}), true},
		{&pgconn.PgError{Code: "40001"}, false}, // serialization_failure
		{&pgconn.PgError{Code: "40P01"}, false}, // deadlock_detected
		{&pgconn.PgError{Code: "57014"}, false}, // query_canceled (statement timeout)
		{&pgconn.PgError{Code: "57P01"}, false}, // admin_shutdown
		{&pgconn.PgError{Code: "08006"}, false}, // connection_failure
		{&pgconn.PgError{Code: "53100"}, false}, // disk_full
		{&pgconn.PgError{Code: "42703"}, false}, // undefined_column: a migration under way
		{context.DeadlineExceeded, false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := refusedForGood(c.err); got != c.good {
			t.Errorf("refusedForGood(%v) = %v, want %v", c.err, got, c.good)
		}
	}
}
