package shard

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) {
	if url := os.Getenv("SHARD_HELPER_NATS"); url != "" {
		helperIngester(url, os.Getenv("SHARD_HELPER_DSN")) // the kill test's child process
	}
	pgtest.Main(m, &cluster)
}

var topo = ingester.Topology{Namespace: "test", Fleet: "fleet-a", Shards: 2}

const shardIdx = 1

// env is one test's NATS server with the fleet's streams, and a migrated shard database.
type env struct {
	js    jetstream.JetStream
	pool  *pgxpool.Pool
	store *store.Store
}

func newEnv(t testing.TB, dsn string) *env {
	t.Helper()
	ctx := t.Context()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	// A short AckWait so redelivery after a lost ack is observable within a test.
	if _, err := ingester.EnsureStreams(ctx, js, topo, ingester.StreamOptions{AckWait: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(ctx, pool, store.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &env{js: js, pool: pool, store: s}
}

var quiet = slog.New(slog.DiscardHandler)

func (e *env) config() Config {
	return Config{
		JS: e.js, Topology: topo, Shard: shardIdx, Store: e.store,
		BatchSize: 500, BatchWait: 20 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, ProgressInterval: 500 * time.Millisecond,
		LagInterval: 100 * time.Millisecond, Logger: quiet,
	}
}

// start runs an ingester until the test ends or stop is called; stop waits for Run to return.
func start(t *testing.T, cfg Config) (in *Ingester, stop func() error) {
	t.Helper()
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- in.Run(ctx) }()
	var once atomic.Bool
	stop = func() error {
		cancel()
		if once.Swap(true) {
			return nil
		}
		return <-errc
	}
	t.Cleanup(func() { _ = stop() })
	return in, stop
}

// readings builds message i of a test: n meter and n vehicle readings with timestamps unique
// to i, so every message adds 2n rows.
func readings(i, n int) *telemetrypb.ReadingBatch {
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	b := &telemetrypb.ReadingBatch{}
	for j := range n {
		ts := base.Add(time.Duration(i)*time.Second + time.Duration(j)*time.Millisecond).UnixMicro()
		b.Meters = append(b.Meters, &telemetrypb.MeterReading{MeterId: fmt.Sprintf("meter-%d", j%7), MwhConsumedAc: 500000, Voltage: 230, TimestampMicros: ts})
		b.Vehicles = append(b.Vehicles, &telemetrypb.VehicleReading{VehicleId: fmt.Sprintf("EV-%d", j%5), Soc: 50, MwhDeliveredDc: 250000, BatteryTemp: 30, TimestampMicros: ts, MeterId: fmt.Sprintf("meter-%d", j%7)})
	}
	return b
}

func publish(t *testing.T, js jetstream.JetStream, data []byte) {
	t.Helper()
	if _, err := js.Publish(t.Context(), topo.Subject(shardIdx), data); err != nil {
		t.Fatalf("publishing: %v", err)
	}
}

func publishBatch(t *testing.T, js jetstream.JetStream, b *telemetrypb.ReadingBatch) {
	t.Helper()
	data, err := telemetry.MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, data)
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), topo.Stream(shardIdx))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func rows(t *testing.T, pool *pgxpool.Pool) (meters, vehicles int) {
	t.Helper()
	if err := pool.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM meter_telemetry_history), (SELECT count(*) FROM vehicle_telemetry_history)").Scan(&meters, &vehicles); err != nil {
		t.Fatal(err)
	}
	return meters, vehicles
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatal("unsupported metric")
	return 0
}

func TestIngesterWritesBatchesAndAcksEveryMessage(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	const msgs, perKind = 30, 20
	for i := range msgs {
		publishBatch(t, e.js, readings(i, perKind))
	}
	publishBatch(t, e.js, readings(3, perKind)) // a device retry: every reading already sent
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Registerer = reg
	in, _ := start(t, cfg)

	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	m, v := rows(t, e.pool)
	if m != msgs*perKind || v != msgs*perKind {
		t.Errorf("stored %d meter and %d vehicle rows, want %d each", m, v, msgs*perKind)
	}
	if got := value(t, in.metrics.inserted.WithLabelValues("meter")); got != msgs*perKind {
		t.Errorf("meter rows inserted metric = %v, want %d", got, msgs*perKind)
	}
	if got := value(t, in.metrics.duplicates.WithLabelValues("vehicle")); got != perKind {
		t.Errorf("vehicle duplicates metric = %v, want %d", got, perKind)
	}
	if got := value(t, in.metrics.acked); got != msgs+1 {
		t.Errorf("acked metric = %v, want %d", got, msgs+1)
	}
	if got := value(t, in.metrics.batchReadings); got < 1 {
		t.Errorf("no batch observed")
	}
	eventually(t, 5*time.Second, "lag polled down to 0 and partitions ahead created", func() bool {
		return value(t, in.metrics.lag) == 0 && value(t, in.metrics.partitionsCreated) >= 6 && in.Ready(t.Context()) == nil
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != "fleetingest_ingester_rows_inserted_total" {
			continue
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			found = found || (l.GetName() == "shard" && l.GetValue() == "1")
		}
	}
	if !found {
		t.Error("fleetingest_ingester_rows_inserted_total not registered with the shard label")
	}
}

func TestIngesterTerminatesAPoisonMessageAndKeepsGoing(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	publishBatch(t, e.js, readings(0, 5))
	publish(t, e.js, []byte("not a reading batch \xff\xff"))
	bad := readings(1, 1)
	bad.Meters[0].MeterId = "bad id with spaces"
	publishBatch(t, e.js, bad)
	// A timestamp no shard can store (before Postgres's first year): the database would refuse
	// the batch on every attempt and hold up the shard.
	ancient := readings(3, 1)
	ancient.Vehicles[0].TimestampMicros = -1 << 62
	publishBatch(t, e.js, ancient)
	publishBatch(t, e.js, readings(2, 5))
	in, _ := start(t, e.config())

	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != 10 || v != 10 {
		t.Errorf("stored %d meter and %d vehicle rows, want 10 each from the two good messages", m, v)
	}
	if got := value(t, in.metrics.terminated); got != 3 {
		t.Errorf("terminated metric = %v, want 3", got)
	}
}

// TestIngesterRefusesReadingsOutsideTheWindowOfTheirPublishTime publishes straight to the
// stream, past the gateway, readings dated decades away: the ingester terminates those
// messages and creates no partition for them, while a replay that carries its original
// publish time is taken even though its readings are older than the window is now.
func TestIngesterRefusesReadingsOutsideTheWindowOfTheirPublishTime(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	far := readings(0, 2)
	far.Meters[0].TimestampMicros = time.Date(1971, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	far.Vehicles[1].TimestampMicros = time.Date(9965, 3, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	publishBatch(t, e.js, far)
	late := readings(1, 1)
	late.Meters[0].TimestampMicros = time.Now().Add(-8 * 24 * time.Hour).UnixMicro()
	publishBatch(t, e.js, late)

	// A message first published ten days ago with readings of that day, replayed now.
	tenDaysAgo := time.Now().Add(-10 * 24 * time.Hour)
	replay := readings(2, 1)
	replay.Meters[0].TimestampMicros = tenDaysAgo.Add(-time.Minute).UnixMicro()
	replay.Vehicles[0].TimestampMicros = tenDaysAgo.Add(-time.Minute).UnixMicro()
	data, err := telemetry.MarshalBatch(replay)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(topo.Subject(shardIdx))
	msg.Data = data
	msg.Header.Set(telemetry.HeaderPublishedAt, strconv.FormatInt(tenDaysAgo.UnixNano(), 10))
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	publishBatch(t, e.js, readings(3, 1))
	in, _ := start(t, e.config())

	eventually(t, 20*time.Second, "stream empties", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != 2 || v != 2 {
		t.Errorf("stored %d meter and %d vehicle rows, want 2 each (the replay and the good message)", m, v)
	}
	if got := value(t, in.metrics.terminated); got != 2 {
		t.Errorf("terminated metric = %v, want 2", got)
	}
	var far1971, far9965 int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE relname LIKE '%p1971%'), count(*) FILTER (WHERE relname LIKE '%p9965%') FROM pg_class`).Scan(&far1971, &far9965); err != nil {
		t.Fatal(err)
	}
	if far1971+far9965 != 0 {
		t.Errorf("partitions made for readings decades away: %d of 1971, %d of 9965", far1971, far9965)
	}
}

func TestIngesterHoldsMessagesWhileTheDatabaseIsDownAndRecovers(t *testing.T) {
	pg := pgtest.Start(t) // its own cluster: this test stops it
	e := newEnv(t, pg.DSN("postgres"))
	in, _ := start(t, e.config())

	publishBatch(t, e.js, readings(0, 10))
	eventually(t, 20*time.Second, "first message stored", func() bool { m, _ := rows(t, e.pool); return m == 10 })

	stopCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := pg.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		publishBatch(t, e.js, readings(i, 10))
	}
	eventually(t, 20*time.Second, "writes fail and are retried", func() bool { return value(t, in.metrics.writeErrors) >= 3 })
	if err := in.Ready(t.Context()); err == nil {
		t.Error("ready while the database is down")
	}
	// Past the consumer's 2s AckWait: held in progress, nothing acknowledged, nothing redelivered.
	time.Sleep(3 * time.Second)
	if n := streamMsgs(t, e.js); n != 5 {
		t.Errorf("stream holds %d messages while the database is down, want all 5 unacknowledged", n)
	}
	if got := value(t, in.metrics.redelivered); got != 0 {
		t.Errorf("%v messages redelivered while their batch was held in progress", got)
	}
	if got := value(t, in.metrics.acked); got != 1 {
		t.Errorf("acked metric = %v while the database is down, want 1", got)
	}
	eventually(t, 5*time.Second, "lag reported", func() bool { return in.Lag() == 5 })

	again, err := localpg.Start(t.Context(), localpg.Config{DataDir: pg.DataDir(), Port: pg.Port(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Stop(context.Background()) })
	eventually(t, 30*time.Second, "stream empties after the database is back", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != 60 || v != 60 {
		t.Errorf("stored %d meter and %d vehicle rows after recovery, want 60 each", m, v)
	}
	if err := in.Ready(t.Context()); err != nil {
		t.Errorf("not ready after recovery: %v", err)
	}
}

func TestIngesterCountsOnceWhenTheAckIsLostAfterCommit(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	for i := range 4 {
		publishBatch(t, e.js, readings(i, 10))
	}
	cfg := e.config()
	cfg.BatchWait = 300 * time.Millisecond
	committed := make(chan struct{})
	cfg.AfterCommit = func(context.Context) error {
		close(committed)
		return fmt.Errorf("simulated crash between commit and ack")
	}
	first, stopFirst := start(t, cfg)
	select {
	case <-committed:
	case <-time.After(20 * time.Second):
		t.Fatal("no batch committed")
	}
	_ = stopFirst()
	if got := value(t, first.metrics.acked); got != 0 {
		t.Fatalf("first ingester acked %v messages", got)
	}
	if m, _ := rows(t, e.pool); m != 40 {
		t.Fatalf("first ingester stored %d meter rows, want 40", m)
	}

	cfg.AfterCommit = nil
	second, _ := start(t, cfg)
	eventually(t, 20*time.Second, "stream empties after redelivery", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != 40 || v != 40 {
		t.Errorf("stored %d meter and %d vehicle rows, want 40 each", m, v)
	}
	if got := value(t, second.metrics.redelivered); got != 4 {
		t.Errorf("redelivered metric = %v, want 4", got)
	}
	if got := value(t, second.metrics.duplicates.WithLabelValues("meter")); got != 40 {
		t.Errorf("meter duplicates = %v, want 40 (every redelivered reading skipped)", got)
	}
	var hourly int
	if err := e.pool.QueryRow(t.Context(), "SELECT sum(readings) FROM meter_hourly").Scan(&hourly); err != nil {
		t.Fatal(err)
	}
	if hourly != 40 {
		t.Errorf("meter rollups count %d readings, want 40", hourly)
	}
}

func TestConfigRejectsAShardOutsideTheTopology(t *testing.T) {
	_, err := New(Config{JS: nil, Topology: topo, Shard: 2, Store: &store.Store{}})
	if err == nil {
		t.Fatal("New accepted shard 2 of 2 and a nil JetStream")
	}
}

// TestIngesterPublishesACommitNoticeForEveryBatchThatChangedHours listens on the fleet's
// commit subject: each committed batch's notice names its shard and the hours it changed
// at their new versions.
func TestIngesterPublishesACommitNoticeForEveryBatchThatChangedHours(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	notices := make(chan *nats.Msg, 16)
	sub, err := e.js.Conn().ChanSubscribe(topo.CommitSubject(), notices)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	start(t, e.config())
	publishBatch(t, e.js, readings(0, 5))
	select {
	case msg := <-notices:
		shard, changed, err := telemetry.UnmarshalNotice(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		hour := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
		if err := e.pool.QueryRow(t.Context(), "SELECT version FROM rollup_hours WHERE hour = $1", hour).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if shard != shardIdx || len(changed) != 1 || !changed[0].Hour.Equal(hour) || changed[0].Version != want {
			t.Fatalf("notice of shard %d %v, want shard %d and hour %s at version %d", shard, changed, shardIdx, hour, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no commit notice within 10 s of a batch")
	}
	// A batch of readings already stored changes nothing, and says nothing.
	publishBatch(t, e.js, readings(0, 5))
	eventually(t, 10*time.Second, "the duplicate batch is acknowledged", func() bool { return streamMsgs(t, e.js) == 0 })
	select {
	case msg := <-notices:
		t.Fatalf("a batch of duplicates published a notice: %x", msg.Data)
	case <-time.After(300 * time.Millisecond):
	}
}
