package analytics_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/shards"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// noticeStack is one shard written the way its ingester writes (a batch, then its commit
// notice), a vehicle mapped to a meter on it, and NATS that can be restarted.
type noticeStack struct {
	now     time.Time
	nats    *localnats.Server
	writer  *nats.Conn // the ingester's connection
	top     ingester.Topology
	st      *store.Store
	dsn     string
	reg     *registry.Registry
	written int
}

const noticeVehicle, noticeMeter = "EV-N", "meter-N"

func newNoticeStack(t *testing.T) *noticeStack {
	t.Helper()
	ctx := t.Context()
	n := &noticeStack{now: time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC), top: ingester.Topology{Namespace: "test", Fleet: "notices", Shards: 1}}
	n.dsn = pgtest.Start(t).DSN("postgres")
	pool := openPool(t, n.dsn)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var err error
	if n.st, err = store.New(ctx, pool, store.Config{Now: n.clock, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	n.nats = natstest.Start(t)
	var jsc jetstream.JetStream
	n.writer, jsc = natstest.Connect(t, n.nats.URL())
	if _, err := ingester.EnsureStreams(ctx, jsc, n.top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	mappedAt := n.now.Add(-2 * time.Hour)
	if n.reg, err = registry.Open(ctx, jsc, n.top.MappingBucket(), registry.Config{Now: func() time.Time { return mappedAt }}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.reg.Run(ctx) }()
	if err := n.reg.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.reg.Set(ctx, noticeVehicle, noticeMeter); err != nil {
		t.Fatal(err)
	}
	return n
}

// clock is the stack's time in a zone other than UTC, as time.Now's is: memory keeps hours
// however the clock that names them is located.
func (n *noticeStack) clock() time.Time { return n.now.In(time.FixedZone("UTC+1", 3600)) }

// write commits one vehicle and one meter reading in the last minute and, when notify says
// so, publishes the commit notice as the ingester does.
func (n *noticeStack) write(t *testing.T, notify bool) {
	t.Helper()
	at := n.now.Add(-time.Minute + time.Duration(n.written)*time.Millisecond).UnixMicro()
	n.written++
	res, err := n.st.WriteBatch(t.Context(),
		[]*telemetrypb.MeterReading{{MeterId: noticeMeter, TimestampMicros: at, MwhConsumedAc: 500_000, Voltage: 230}},
		[]*telemetrypb.VehicleReading{{VehicleId: noticeVehicle, MeterId: noticeMeter, TimestampMicros: at, Soc: 50, MwhDeliveredDc: 400_000, BatteryTemp: 25}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || !res.Changed[0].Hour.Equal(n.now.Truncate(time.Hour)) {
		t.Fatalf("batch changed %v, want the hour being written", res.Changed)
	}
	if !notify {
		return
	}
	data, err := telemetry.MarshalNotice(0, res.Changed)
	if err != nil {
		t.Fatal(err)
	}
	_ = n.writer.Publish(n.top.CommitSubject(), data) // lost while NATS is down, as the ingester's
}

// replica is an analytics service on the stack with its own NATS connection, counting the
// statements it sends to the shard.
type replica struct {
	client     analyticsv1connect.AnalyticsServiceClient
	statements atomic.Int64
}

func (n *noticeStack) serve(t *testing.T, poll time.Duration) *replica {
	t.Helper()
	r := &replica{}
	nc, _ := natstest.Connect(t, n.nats.URL())
	svc, err := analytics.New(analytics.Config{
		Shards:        shards.Config{DSNs: []string{n.dsn}, MaxConns: 4, MinConns: 1, Tracer: countStatements{&r.statements}},
		ShardMap:      placement.Fixed{Map: placement.MustShardMap(1)},
		Registry:      n.reg,
		Memory:        read.Config{Poll: poll},
		NATS:          nc,
		CommitSubject: n.top.CommitSubject(),
		Now:           n.clock,
		Registerer:    prometheus.NewRegistry(),
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(ctx) }()
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { srv.Close(); stop(); <-done; svc.Close() })
	for svc.Ready(ctx) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	r.client = analyticsv1connect.NewAnalyticsServiceClient(srv.Client(), srv.URL)
	return r
}

// readings is the vehicle's readings in the last 24 hours, as the replica answers.
func (r *replica) readings(t *testing.T) int {
	t.Helper()
	res, err := r.client.GetVehiclePerformance(t.Context(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: noticeVehicle}))
	if err != nil {
		t.Fatal(err)
	}
	return int(res.Msg.VehicleReadings)
}

// answer is the vehicle's performance over the last 24 hours, as the replica answers.
func (r *replica) answer(t *testing.T) *analyticsv1.GetVehiclePerformanceResponse {
	t.Helper()
	res, err := r.client.GetVehiclePerformance(t.Context(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: noticeVehicle}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

// waitFor asks until the replica counts want readings, for at most bound.
func (r *replica) waitFor(t *testing.T, want int, bound time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		got := r.readings(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d readings after %s, want %d", what, got, bound, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// warm asks until a question sends no statement: the hours it needs are in memory.
func (r *replica) warm(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := r.statements.Load()
		r.readings(t)
		if r.statements.Load() == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("questions still read Postgres after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMemoryFollowsCommitNoticesAndPollsRepairWhatTheyMiss(t *testing.T) {
	n := newNoticeStack(t)
	// One replica polls once an hour, so only notices can bring it a write; the other polls
	// every second.
	notices, polls := n.serve(t, time.Hour), n.serve(t, time.Second)
	notices.warm(t)
	polls.warm(t)

	t.Run("a notice brings a batch into memory within a second", func(t *testing.T) {
		for range 5 {
			n.write(t, true)
			notices.waitFor(t, n.written, time.Second, "notified batch")
		}
		// What memory holds after reading only the changed rows, batch after batch, is what a
		// replica that read the hour whole holds.
		fresh := n.serve(t, time.Hour)
		fresh.warm(t)
		got, want := notices.answer(t), fresh.answer(t)
		if !proto.Equal(got, want) {
			t.Fatalf("after %d notified batches: %v, a fresh replica: %v", n.written, got, want)
		}
	})

	t.Run("a notice for an hour not held, or for the version held, reads nothing", func(t *testing.T) {
		publish := func(changed ...telemetry.HourVersion) {
			data, err := telemetry.MarshalNotice(0, changed)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.writer.Publish(n.top.CommitSubject(), data); err != nil {
				t.Fatal(err)
			}
		}
		// What one batch's notice reads, alone and after two notices for hours not held.
		before := notices.statements.Load()
		n.write(t, true)
		notices.waitFor(t, n.written, time.Second, "notified batch")
		alone := notices.statements.Load() - before
		before = notices.statements.Load()
		publish(telemetry.HourVersion{Hour: n.now.Add(-72 * time.Hour).Truncate(time.Hour), Version: 99}) // before the hours held
		publish(telemetry.HourVersion{Hour: n.now.Add(72 * time.Hour).Truncate(time.Hour), Version: 99})  // after any accepted reading's
		n.write(t, true)
		notices.waitFor(t, n.written, time.Second, "notified batch")
		if got := notices.statements.Load() - before; got != alone {
			t.Fatalf("a batch's notice after two for hours not held sent %d statements, alone %d", got, alone)
		}
		// A notice repeated: the version of the hour being written, as held.
		held := notices.statements.Load()
		publish(telemetry.HourVersion{Hour: n.now.Truncate(time.Hour), Version: heldVersion(t, n)})
		if err := n.writer.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if got := notices.statements.Load(); got != held {
			t.Fatalf("a repeated notice sent %d statements", got-held)
		}
	})

	t.Run("a lost notice is repaired by the poll", func(t *testing.T) {
		n.write(t, false)
		polls.waitFor(t, n.written, time.Second+time.Second, "batch without a notice")
	})

	t.Run("while NATS restarts, no answer is stale past the poll interval", func(t *testing.T) {
		n.nats.Stop()
		n.write(t, true)
		polls.waitFor(t, n.written, time.Second+time.Second, "batch committed while NATS was down")
		var err error
		if n.nats, err = n.nats.Restart(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.nats.Stop)
		// Once reconnected, notices flow again: the replica that never polls follows them.
		deadline := time.Now().Add(10 * time.Second)
		for !n.writer.IsConnected() {
			if time.Now().After(deadline) {
				t.Fatal("the writer did not reconnect")
			}
			time.Sleep(10 * time.Millisecond)
		}
		want := n.written + 1
		for {
			n.write(t, true)
			if notices.readings(t) >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("notices did not resume after NATS restarted")
			}
			time.Sleep(200 * time.Millisecond)
		}
		n.write(t, true)
		notices.waitFor(t, n.written, time.Second, "notified batch after the restart")
		polls.waitFor(t, n.written, time.Second, "notified batch after the restart")
	})
}

// heldVersion is the version of the hour being written, as Postgres has it.
func heldVersion(t *testing.T, n *noticeStack) int64 {
	t.Helper()
	var v int64
	if err := n.st.Pool().QueryRow(t.Context(), "SELECT version FROM rollup_hours WHERE hour = $1", n.now.Truncate(time.Hour)).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// commit writes a batch the way the ingester does and publishes its commit notice.
func (n *noticeStack) commit(t *testing.T, meters []*telemetrypb.MeterReading, vehicles []*telemetrypb.VehicleReading) {
	t.Helper()
	res, err := n.st.WriteBatch(t.Context(), meters, vehicles)
	if err != nil {
		t.Fatal(err)
	}
	data, err := telemetry.MarshalNotice(0, res.Changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.writer.Publish(n.top.CommitSubject(), data); err != nil {
		t.Fatal(err)
	}
}

// alertsUntil asks the replica for the last day's alerts until ok holds, for at most bound.
func (r *replica) alertsUntil(t *testing.T, bound time.Duration, what string, ok func(*analyticsv1.ListAlertsResponse) bool) *analyticsv1.ListAlertsResponse {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		res, err := r.client.ListAlerts(t.Context(), connect.NewRequest(&analyticsv1.ListAlertsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if ok(res.Msg) {
			return res.Msg
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; the last answer: %v", what, bound, res.Msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAnAlertAnswerIsMadeAgainWhenAnHourOrAMappingInItChanges(t *testing.T) {
	n := newNoticeStack(t)
	r := n.serve(t, time.Hour)                        // only notices bring writes
	hour := n.now.Truncate(time.Hour).Add(-time.Hour) // the alert window's last whole hour
	at := func(m time.Duration) int64 { return hour.Add(m).UnixMicro() }
	vehicle := func(id string) func(*analyticsv1.ListAlertsResponse) *analyticsv1.VehicleAlert {
		return func(a *analyticsv1.ListAlertsResponse) *analyticsv1.VehicleAlert {
			for _, v := range a.Vehicles {
				if v.VehicleId == id {
					return v
				}
			}
			return nil
		}
	}
	ev := vehicle(noticeVehicle)

	n.commit(t, []*telemetrypb.MeterReading{{MeterId: noticeMeter, TimestampMicros: at(10 * time.Minute), MwhConsumedAc: 1_000_000, Voltage: 230}},
		[]*telemetrypb.VehicleReading{{VehicleId: noticeVehicle, MeterId: noticeMeter, TimestampMicros: at(10 * time.Minute), Soc: 50, MwhDeliveredDc: 400_000, BatteryTemp: 25}})
	first := r.alertsUntil(t, time.Second, "a vehicle at 0.4", func(a *analyticsv1.ListAlertsResponse) bool {
		return ev(a) != nil && ev(a).EfficiencyRatio == 0.4
	})
	before := r.statements.Load()
	if again := r.alertsUntil(t, 0, "the same answer", func(*analyticsv1.ListAlertsResponse) bool { return true }); !proto.Equal(again, first) {
		t.Fatalf("asked again: %v, first: %v", again, first)
	}
	if sent := r.statements.Load() - before; sent != 0 {
		t.Fatalf("asked again, the answer sent %d statements", sent)
	}
	// Another window is another answer: the hour before holds nothing.
	earlier, err := r.client.ListAlerts(t.Context(), connect.NewRequest(&analyticsv1.ListAlertsRequest{Window: "1h", End: hour.Format(time.RFC3339)}))
	if err != nil {
		t.Fatal(err)
	}
	if len(earlier.Msg.Vehicles) != 0 || len(earlier.Msg.Sites) != 0 {
		t.Fatalf("the hour before the readings: %v", earlier.Msg)
	}

	// A late reading in the hour: the sums are made again.
	n.commit(t, nil, []*telemetrypb.VehicleReading{{VehicleId: noticeVehicle, MeterId: noticeMeter, TimestampMicros: at(20 * time.Minute), Soc: 60, MwhDeliveredDc: 400_000, BatteryTemp: 25}})
	r.alertsUntil(t, time.Second, "a late reading counted", func(a *analyticsv1.ListAlertsResponse) bool {
		return ev(a) != nil && ev(a).EfficiencyRatio == 0.8
	})

	// A meter's AC with no DC goes to the vehicles mapped to it then: a mapping set since
	// changes the answer though no hour did.
	n.commit(t, []*telemetrypb.MeterReading{{MeterId: "meter-U", TimestampMicros: at(30 * time.Minute), MwhConsumedAc: 300_000, Voltage: 230}}, nil)
	r.alertsUntil(t, time.Second, "the unshared meter as a site", func(a *analyticsv1.ListAlertsResponse) bool {
		return slices.ContainsFunc(a.Sites, func(s *analyticsv1.SiteAlert) bool { return s.MeterId == "meter-U" })
	})
	if _, err := n.reg.Set(t.Context(), "EV-U", "meter-U"); err != nil {
		t.Fatal(err)
	}
	evU := vehicle("EV-U")
	r.alertsUntil(t, 2*time.Second, "the meter's AC given to the vehicle mapped since", func(a *analyticsv1.ListAlertsResponse) bool {
		return evU(a) != nil && evU(a).AcConsumed == 0.3
	})
}

func TestALateReadingInAHeldRawHourIsAnsweredWithinASecond(t *testing.T) {
	n := newNoticeStack(t)
	r := n.serve(t, time.Hour) // only notices bring writes
	settled := n.now.Truncate(time.Hour).Add(-time.Hour)
	end := settled.Add(30 * time.Minute) // the window's last edge is in the settled hour
	req := &analyticsv1.GetVehiclePerformanceRequest{VehicleId: noticeVehicle, Window: "1h", End: end.Format(time.RFC3339)}
	readings := func() int {
		res, err := r.client.GetVehiclePerformance(t.Context(), connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		return int(res.Msg.VehicleReadings)
	}
	write := func(at time.Duration) {
		ts := settled.Add(at).UnixMicro()
		n.commit(t, []*telemetrypb.MeterReading{{MeterId: noticeMeter, TimestampMicros: ts, MwhConsumedAc: 500_000, Voltage: 230}},
			[]*telemetrypb.VehicleReading{{VehicleId: noticeVehicle, MeterId: noticeMeter, TimestampMicros: ts, Soc: 50, MwhDeliveredDc: 400_000, BatteryTemp: 25}})
	}
	write(10 * time.Minute)
	write(45 * time.Minute) // after the window's end: the hour's rollups do not serve its edge
	// Ask until the hour's raw readings are held: a question then sends nothing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := r.statements.Load()
		if readings() == 1 && r.statements.Load() == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the settled hour's raw readings were not held after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	write(20 * time.Minute) // late, within the window
	deadline = time.Now().Add(time.Second)
	for got := readings(); got != 2; got = readings() {
		if time.Now().After(deadline) {
			t.Fatalf("a late reading in a held raw hour: %d readings after 1 s, want 2", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
