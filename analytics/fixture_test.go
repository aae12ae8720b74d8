package analytics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/httpserver"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/fleetload"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// clock is a settable clock shared by the registry (interval boundaries) and the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func vehicleID(i int) string     { return fmt.Sprintf("EV-%04d", i) }
func meterID(i int) string       { return fmt.Sprintf("meter-%04d", i) }
func ptr[T any](v T) *T          { return &v }
func hoursBefore(t time.Time, h float64) time.Time {
	return t.Add(-time.Duration(h * float64(time.Hour)))
}

const (
	nShards   = 3
	nVehicles = 240
	nMeters   = 120
	step      = 5 * time.Minute
)

// fixture is a fleet on three Postgres clusters (one shard each), an oracle database holding
// every reading unsharded with the mapping intervals, embedded NATS with the mapping bucket,
// and the service served over HTTP/1.1 and h2c.
type fixture struct {
	end      time.Time // the window end the tests use
	clk      *clock
	clusters []*localpg.Cluster
	dsns     []string
	oracle   *pgxpool.Pool
	shardDB  []*pgxpool.Pool
	shardSt  []*fleetload.Shard
	oracleSt *fleetload.Shard
	smap     *placement.ShardMap // two shards, then three from cutover on
	cutover  time.Time
	reg      *registry.Registry
	mappings map[string]registry.Mapping
	prom     *prometheus.Registry
	url      string
	http     *http.Client
	connect  analyticsv1connect.AnalyticsServiceClient
	grpc     analyticsv1connect.AnalyticsServiceClient
	grpcWeb  analyticsv1connect.AnalyticsServiceClient
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{end: time.Date(2026, 11, 20, 12, 17, 30, 0, time.UTC)}
	// The fleet grew from two shards to three mid-hour, eight hours before the data's end: an
	// hour and every window across it is held in part by two shards.
	f.cutover = hoursBefore(f.end, 8).Add(23 * time.Minute)
	var oracleCfg *pgxpool.Config
	grown, err := placement.Grow(placement.MustShardMap(nShards-1), nShards, f.cutover)
	if err != nil {
		t.Fatal(err)
	}
	f.smap = grown
	f.clk = &clock{t: hoursBefore(f.end, 40)}

	// Shards: one cluster each, so one can be stopped.
	for i := 0; i < nShards; i++ {
		c := pgtest.Start(t)
		f.clusters = append(f.clusters, c)
		// Each shard has a throwaway cluster of its own (one is stopped in a test), so
		// its default database serves.
		dsn := c.DSN("postgres")
		f.dsns = append(f.dsns, dsn)
		pool := openPool(t, dsn)
		sh, err := fleetload.Prepare(ctx, pool, hoursBefore(f.end, 48), f.end.Add(48*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		f.shardDB = append(f.shardDB, pool)
		f.shardSt = append(f.shardSt, sh)
	}
	// The oracle plans every query for its parameters (its sums are per meter and hour).
	oracleCfg, err = pgxpool.ParseConfig(pgtest.NewDatabase(t, f.clusters[0]))
	if err != nil {
		t.Fatal(err)
	}
	oracleCfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	if f.oracle, err = pgxpool.NewWithConfig(ctx, oracleCfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.oracle.Close)
	if f.oracleSt, err = fleetload.Prepare(ctx, f.oracle, hoursBefore(f.end, 48), f.end.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}

	// Mapping registry on embedded NATS, bucket made by the one provisioning function.
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "analytics", Shards: nShards}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(ctx, js, top.MappingBucket(), registry.Config{Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = reg.Run(ctx) }()
	t.Cleanup(cancel) // stop watching before the NATS server stops
	if err := reg.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	f.reg = reg
	f.mapFleet(t, ctx)
	f.loadReadings(t, ctx)
	f.clk.Set(f.end.Add(2 * time.Hour))

	f.prom = prometheus.NewRegistry()
	f.url = f.serve(t, ctx, f.prom, read.Config{})
	f.http = h2cClient()
	f.connect = analyticsv1connect.NewAnalyticsServiceClient(f.http, f.url)
	f.grpc = analyticsv1connect.NewAnalyticsServiceClient(f.http, f.url, connect.WithGRPC())
	f.grpcWeb = analyticsv1connect.NewAnalyticsServiceClient(f.http, f.url, connect.WithGRPCWeb())
	return f
}

// serve starts a service on the fixture's shards and returns its URL once it is ready.
func (f *fixture) serve(t *testing.T, ctx context.Context, prom *prometheus.Registry, memory read.Config, opts ...func(*analytics.Config)) string {
	t.Helper()
	cfg := analytics.Config{
		Shards:     shards.Config{DSNs: f.dsns, MaxConns: 8, MinConns: 1, QueryTimeout: 3 * time.Second, ConnectTimeout: time.Second},
		ShardMap:   placement.Fixed{Map: f.smap},
		Registry:   f.reg,
		Memory:     memory,
		Now:        f.clk.Now,
		Registerer: prom,
	}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := analytics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; svc.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = httpserver.ServeListener(ctx, l, httpserver.Config{Handler: svc.Handler(), Ready: []httpserver.ReadyFunc{svc.Ready}})
	}()
	url := "http://" + l.Addr().String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready after 30 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func h2cClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: protocols}, Timeout: 30 * time.Second}
}

func openPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// homeMeter is the meter vehicle i is first mapped to: several vehicles per meter (two or
// three on meters 0..99); meters 100..119 have none.
func homeMeter(i int) string { return meterID(i % 100) }

// otherShardMeter is a meter on a different shard than vehicle i's home meter.
func (f *fixture) otherShardMeter(i int) string {
	at := f.remappedAt()
	home := f.smap.ShardOf(homeMeter(i), at)
	for k := 1; ; k++ {
		m := meterID((i%100 + k) % 100)
		if f.smap.ShardOf(m, at) != home {
			return m
		}
	}
}

// remappedAt is when vehicles 10..29 are re-mapped.
func (f *fixture) remappedAt() time.Time { return hoursBefore(f.end, 10).Add(17 * time.Minute) }

// mapFleet writes the mappings through the registry with the clock at their times:
// vehicles 10.. mapped before any reading; 0..9 first mapped mid-data (readings before
// their first mapping); 10..29 re-mapped mid-window to a meter on another shard; 30..34
// unmapped mid-window (history kept).
func (f *fixture) mapFleet(t *testing.T, ctx context.Context) {
	t.Helper()
	set := func(at time.Time, from, to int, meter func(i int) string) {
		f.clk.Set(at)
		for i := from; i < to; i++ {
			if _, err := f.reg.Set(ctx, vehicleID(i), meter(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	set(hoursBefore(f.end, 40), 10, nVehicles, homeMeter)
	set(hoursBefore(f.end, 20).Add(7*time.Minute), 0, 10, homeMeter)
	set(f.remappedAt(), 10, 30, f.otherShardMeter)
	f.clk.Set(hoursBefore(f.end, 5).Add(40 * time.Minute))
	for i := 30; i < 35; i++ {
		if _, err := f.reg.Unset(ctx, vehicleID(i)); err != nil {
			t.Fatal(err)
		}
	}
	f.mappings = map[string]registry.Mapping{}
	for i := 0; i < nVehicles; i++ {
		m, err := f.reg.Get(ctx, vehicleID(i))
		if err != nil {
			t.Fatal(err)
		}
		f.mappings[vehicleID(i)] = m
	}
	// The oracle is not sharded: an index by attributed meter keeps its per-meter sums quick.
	if _, err := f.oracle.Exec(ctx, `CREATE TABLE mapping_intervals (vehicle_id text, meter_id text, f timestamptz, t timestamptz);
CREATE INDEX ON vehicle_telemetry_history (meter_id, ts)`); err != nil {
		t.Fatal(err)
	}
	for id, m := range f.mappings {
		for _, iv := range m.Intervals {
			if _, err := f.oracle.Exec(ctx, `INSERT INTO mapping_intervals VALUES ($1, $2, $3, $4)`, id, iv.MeterID, iv.From, iv.To); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// loadReadings generates readings every 5 minutes (per-device second offsets, so window
// edges cut hours) from end-30h to end+2h, and stores them in two batches per shard: the
// second holds late readings (an hour of vehicles 50..59 withheld from the first) and
// duplicates. Vehicles of meters 40..44 are silent in [end-7h, end-5h) while their meters
// keep consuming; vehicles 230..239 and meters 115..119 stop at end-1h.
func (f *fixture) loadReadings(t *testing.T, ctx context.Context) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	from, to := hoursBefore(f.end, 30), f.end.Add(2*time.Hour)
	type batch struct {
		vs []fleetload.VehicleReading
		ms []fleetload.MeterReading
	}
	batches := [2][nShards]batch{}
	var all batch
	for i := 0; i < nVehicles; i++ {
		id := vehicleID(i)
		m := f.mappings[id]
		off := time.Duration((i*37)%300) * time.Second
		for ts := from.Add(off); ts.Before(to); ts = ts.Add(step) {
			if i%100 >= 40 && i%100 < 45 && !ts.Before(hoursBefore(f.end, 7)) && ts.Before(hoursBefore(f.end, 5)) {
				continue
			}
			if i >= 230 && !ts.Before(hoursBefore(f.end, 1)) {
				continue
			}
			meter, _ := m.MeterAt(ts)
			r := fleetload.VehicleReading{VehicleID: id, TS: ts, SOC: 20 + 80*rng.Float64(), DC: 100_000 + rng.Int64N(400_000), Temp: 15 + 25*rng.Float64(), MeterID: meter}
			shard := f.smap.ShardOf(registry.PlacementKey(&m, id, ts), ts)
			late := i >= 50 && i < 60 && !ts.Before(hoursBefore(f.end, 12)) && ts.Before(hoursBefore(f.end, 11))
			b := 0
			if late || !ts.Before(hoursBefore(f.end, 1)) {
				b = 1
			}
			batches[b][shard].vs = append(batches[b][shard].vs, r)
			all.vs = append(all.vs, r)
			if i >= 60 && i < 70 && !ts.Before(hoursBefore(f.end, 15)) && ts.Before(hoursBefore(f.end, 14)) {
				batches[1][shard].vs = append(batches[1][shard].vs, r) // a retried reading
			}
		}
	}
	for j := 0; j < nMeters; j++ {
		id := meterID(j)
		off := time.Duration((j*53)%300) * time.Second
		level := 0.5 + rng.Float64()
		for ts := from.Add(off); ts.Before(to); ts = ts.Add(step) {
			if j >= 115 && !ts.Before(hoursBefore(f.end, 1)) {
				continue
			}
			r := fleetload.MeterReading{MeterID: id, TS: ts, AC: int64(level * float64(500_000+rng.Int64N(1_000_000))), Voltage: 220 + 20*rng.Float64()}
			shard := f.smap.ShardOf(id, ts)
			b := 0
			if !ts.Before(hoursBefore(f.end, 1)) {
				b = 1
			}
			batches[b][shard].ms = append(batches[b][shard].ms, r)
			all.ms = append(all.ms, r)
			if j == 70 && !ts.Before(hoursBefore(f.end, 15)) && ts.Before(hoursBefore(f.end, 14)) {
				batches[1][shard].ms = append(batches[1][shard].ms, r)
			}
		}
	}
	// Through the ingester's own write path, in batches of a few hundred readings.
	for b := range batches {
		for s := range batches[b] {
			if _, err := f.shardSt[s].Write(ctx, batches[b][s].vs, batches[b][s].ms, 500); err != nil {
				t.Fatal(err)
			}
		}
	}
	inserted, err := f.oracleSt.Write(ctx, all.vs, all.ms, 5000)
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, db := range f.shardDB {
		var n int64
		if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM vehicle_telemetry_history) + (SELECT count(*) FROM meter_telemetry_history)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		stored += n
	}
	if stored != int64(inserted) || inserted != len(all.vs)+len(all.ms) {
		t.Fatalf("shards hold %d readings, oracle %d of %d generated: duplicates were not dropped", stored, inserted, len(all.vs)+len(all.ms))
	}
	for _, db := range append(f.shardDB, f.oracle) {
		if _, err := db.Exec(ctx, "ANALYZE"); err != nil {
			t.Fatal(err)
		}
	}
}

// vehicleReads reads the service's count of per-vehicle shard reads answered from memory and
// from Postgres.
func (f *fixture) vehicleReads(t *testing.T) (memory, postgres int) {
	t.Helper()
	return reads(t, f.prom, "vehicle")
}

// reads sums a service's shard reads of one kind of question by where they were answered.
func reads(t *testing.T, prom *prometheus.Registry, kind string) (memory, postgres int) {
	t.Helper()
	mfs, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fleetingest_analytics_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] != kind {
				continue
			}
			if labels["source"] == "memory" {
				memory += int(m.GetCounter().GetValue())
			} else {
				postgres += int(m.GetCounter().GetValue())
			}
		}
	}
	return memory, postgres
}

// countStatements counts the statements sent to the shards.
type countStatements struct{ n *atomic.Int64 }

func (c countStatements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (countStatements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// heldBy reports whether shard held some of key's readings in [from, to).
func (f *fixture) heldBy(key string, shard int, from, to time.Time) bool {
	return slices.ContainsFunc(f.smap.Owners(key, from, to), func(o placement.Owner) bool { return o.Shard == shard })
}

func ptrOr(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
