// Package analytics_test benchmarks the analytics read path on real Postgres shards loaded
// with COPY: per-vehicle latency and throughput over REST, the fleet alert query, and
// independence from history size. Sizes come from the environment, small by default so
// `make bench` stays quick; see docs/benchmarks.md for the full-size command and figures.
package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/bench/report"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/httpserver"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/fleetload"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// size is one benchmark data set: devices, days of one reading a minute, shards.
type size struct {
	vehicles, meters, days, shards int
}

// stack is a loaded fleet served by the analytics service.
type stack struct {
	url    string
	dsns   []string
	end    time.Time
	size   size
	client *http.Client
	prom   *prometheus.Registry
	// live starts a service on the same data with its clock in the windows' last hour.
	live func() *stack
	// fresh starts another service on the same data.
	fresh func() *stack
	// secured starts another service on the same data that asks for user tokens.
	secured func() *stack
	// token is the viewer token every question carries ("" for a service without
	// authentication).
	token string
	// close stops a service started by fresh, live or secured.
	close func()
	// from is the data set's first hour.
	from  time.Time
	slots *placement.SlotMap
	// nc carries the commit notices ingest publishes on the topology's subject.
	nc  *nats.Conn
	top ingester.Topology
}

var dataEnd = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// benchDir is where the data set lives: a temporary folder removed afterwards, or a folder
// per size under ANALYTICS_BENCH_DIR, kept and reused by the next run of the same size (reuse
// reports that it holds a complete data set), so that the query path can be measured again
// and again without loading the data set each time.
func benchDir(b *testing.B, sz size) (dir string, reuse bool) {
	b.Helper()
	root := os.Getenv("ANALYTICS_BENCH_DIR")
	if root == "" {
		dir, err := os.MkdirTemp("", "analytics-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
		return dir, false
	}
	dir = filepath.Join(root, fmt.Sprintf("v%d-m%d-d%d-s%d", sz.vehicles, sz.meters, sz.days, sz.shards))
	if _, err := os.Stat(filepath.Join(dir, "loaded")); err == nil {
		return dir, true
	}
	// A folder without the mark holds nothing or a load that did not finish.
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir, false
}

// runCopy copies database name for one run (dropped when the run ends) and returns the
// copy's DSN.
func runCopy(ctx context.Context, b *testing.B, cluster *localpg.Cluster, name string) (string, error) {
	run := "run_" + name
	if err := cluster.DropDatabase(ctx, run); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, cluster.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{run}.Sanitize()+" TEMPLATE "+pgx.Identifier{name}.Sanitize()+" STRATEGY FILE_COPY"); err != nil {
		return "", fmt.Errorf("copying the data set's %s: %w", name, err)
	}
	b.Cleanup(func() { _ = cluster.DropDatabase(context.Background(), run) })
	return cluster.DSN(run), nil
}

// migrate brings a shard's schema up to date.
func migrate(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err = store.Migrate(ctx, pool); err != nil {
		return err
	}
	// Rollup rows loaded before migration 0005 do not know their latest reading; the bench's
	// data is all history, so it is computed from it once.
	for _, fill := range []string{
		`UPDATE meter_hourly h SET last_ts = x.last
		   FROM (SELECT meter_id, date_bin('1 hour', ts, '1970-01-01') AS hour, max(ts) AS last
		           FROM meter_telemetry_history GROUP BY 1, 2) x
		  WHERE h.last_ts IS NULL AND h.meter_id = x.meter_id AND h.hour = x.hour`,
		`UPDATE vehicle_hourly h SET last_ts = x.last
		   FROM (SELECT vehicle_id, meter_id, date_bin('1 hour', ts, '1970-01-01') AS hour, max(ts) AS last
		           FROM vehicle_telemetry_history GROUP BY 1, 2, 3) x
		  WHERE h.last_ts IS NULL AND h.vehicle_id = x.vehicle_id AND h.meter_id = x.meter_id AND h.hour = x.hour`,
	} {
		var unknown bool
		table := strings.Fields(fill)[1]
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+table+" WHERE last_ts IS NULL)").Scan(&unknown); err != nil {
			return err
		}
		if !unknown {
			continue
		}
		if _, err := pool.Exec(ctx, fill); err != nil {
			return fmt.Errorf("filling %s.last_ts: %w", table, err)
		}
	}
	return nil
}

// wrkSummary is the line testdata/performance.lua prints when wrk is done.
var wrkSummary = regexp.MustCompile(`wrk-summary requests=(\d+) non2xx=(\d+) errors=(\d+) p50us=(\d+) p99us=(\d+)`)

// wrk drives GET /v1/analytics/performance/{id} for random vehicles with wrk (installed by
// `make bench`), a C load generator that leaves more of the two cores to the service and
// Postgres than Go's HTTP client in the benchmark's own process.
func (s *stack) wrk(b *testing.B, conns int, d time.Duration) (requests int, p50, p99 time.Duration) {
	b.Helper()
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is not installed: run the benchmarks with `make bench`, which installs it (%v)", err)
	}
	cmd := exec.Command(wrk, "-t2", "-c"+strconv.Itoa(conns), "-d"+d.String(), "--timeout", "10s",
		"-s", "testdata/performance.lua", s.url, "--", strconv.Itoa(s.size.vehicles), s.end.Format(time.RFC3339Nano), s.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	m := wrkSummary.FindSubmatch(out)
	if m == nil {
		b.Fatalf("no summary in wrk's output:\n%s", out)
	}
	n := func(i int) int { v, _ := strconv.Atoi(string(m[i])); return v }
	if n(2) > 0 || n(3) > 0 {
		b.Fatalf("%d non-2xx answers and %d socket errors:\n%s", n(2), n(3), out)
	}
	return n(1), time.Duration(n(4)) * time.Microsecond, time.Duration(n(5)) * time.Microsecond
}

// markLoaded records in dir that it holds a complete data set of size sz.
func markLoaded(b *testing.B, dir string, sz size) {
	b.Helper()
	if err := os.WriteFile(filepath.Join(dir, "loaded"), fmt.Appendf(nil, "%+v\n", sz), 0o644); err != nil {
		b.Fatal(err)
	}
}

// startStack starts one Postgres cluster with a database per shard, loads the data set with
// COPY (vehicle i charges from meter i, mapped before the first reading), builds the rollups,
// maps the fleet in the registry on embedded NATS and serves the service.
func startStack(b *testing.B, sz size) *stack {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	dir, reuse := benchDir(b, sz)
	cluster, err := localpg.Start(ctx, localpg.Config{
		DataDir: filepath.Join(dir, "pgdata"), SharedBuffers: "1GB", MaxConnections: 200, FastInit: true,
		Settings: map[string]string{"max_wal_size": "8GB", "checkpoint_timeout": "30min", "work_mem": "64MB", "maintenance_work_mem": "512MB"},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		_ = cluster.Stop(sctx)
	})
	slots := placement.MustSlotMap(sz.shards)
	from := dataEnd.Add(-time.Duration(sz.days) * 24 * time.Hour)
	var dsns []string
	loadStart := time.Now()
	var rows int64
	for s := 0; s < sz.shards; s++ {
		name := fmt.Sprintf("shard%d", s)
		dsn := cluster.DSN(name)
		dsns = append(dsns, dsn)
		if reuse {
			// A data set kept from an earlier run gets the migrations added since.
			if err := migrate(ctx, dsn); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := cluster.CreateDatabase(ctx, name); err != nil {
			b.Fatal(err)
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := fleetload.Prepare(ctx, pool, from, dataEnd.Add(24*time.Hour)); err != nil {
			b.Fatal(err)
		}
		n, err := loadShard(ctx, pool, slots, s, sz, from)
		if err != nil {
			b.Fatal(err)
		}
		rows += n
		if err := fleetload.BuildRollups(ctx, pool); err != nil {
			b.Fatal(err)
		}
		pool.Close()
	}
	// Each run asks and writes a copy of the data set, dropped when it ends: the readings its
	// writing phases add do not pile up in the data set kept for the next run.
	for i := range dsns {
		if dsns[i], err = runCopy(ctx, b, cluster, fmt.Sprintf("shard%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if reuse {
		b.Logf("reusing the data set in %s", dir)
	} else {
		b.Logf("loaded %d history rows on %d shards with COPY and built rollups in %s", rows, sz.shards, time.Since(loadStart).Round(time.Second))
		markLoaded(b, dir, sz)
	}

	srv := natstest.Start(b)
	nc, js := natstest.Connect(b, srv.URL())
	top := ingester.Topology{Namespace: "bench", Fleet: "analytics", Shards: sz.shards}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
	mappedAt := from.Add(-time.Hour)
	reg, err := registry.Open(ctx, js, top.MappingBucket(), registry.Config{Now: func() time.Time { return mappedAt }})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = reg.Run(ctx) }()
	b.Cleanup(cancel)
	if err := mapFleet(ctx, reg, sz); err != nil {
		b.Fatal(err)
	}
	for len(mustList(reg)) < sz.vehicles {
		time.Sleep(10 * time.Millisecond)
	}
	// Twice the machine's cores: with more backends than that, the statements of windows
	// ending now only queue for the cores, and their tail latency grows tenfold (p99 120–260 ms
	// with 32 connections a shard against 14–30 ms with 4, on two cores).
	maxConns := int32(envInt(b, "ANALYTICS_BENCH_MAX_CONNS", 2*runtime.NumCPU()))
	// serve starts a service on the shards with the clock now and returns its URL, its metrics
	// and what stops it.
	serve := func(now func() time.Time, users auth.UserVerifier) (string, *prometheus.Registry, func()) {
		prom := prometheus.NewRegistry()
		svc, err := analytics.New(analytics.Config{
			Shards:        shards.Config{DSNs: dsns, MaxConns: maxConns, MinConns: min(16, maxConns)},
			ShardMap:      placement.Fixed{Map: &placement.ShardMap{Versions: []placement.Version{{SlotMap: slots}}}},
			Registry:      reg,
			Users:         users,
			NATS:          nc,
			CommitSubject: top.CommitSubject(),
			Now:           now,
			Registerer:    prom,
			Logger:        slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		ran := make(chan struct{})
		go func() { defer close(ran); _ = svc.Run(sctx) }()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = httpserver.ServeListener(sctx, l, httpserver.Config{Handler: svc.Handler(), Logger: slog.New(slog.DiscardHandler)})
		}()
		var once sync.Once
		closeSvc := func() { once.Do(func() { stop(); <-served; <-ran; svc.Close() }) }
		b.Cleanup(closeSvc)
		// Ready as a load balancer would see it, and with time for the pools to open their
		// minimum connections: the first questions measure the service, not its start.
		for svc.Ready(ctx) != nil {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
		return "http://" + l.Addr().String(), prom, closeSvc
	}
	// The services' clock runs from five minutes after the data set's last readings, so that
	// its last day is the services' last day, as for a fleet that writes now.
	started := time.Now()
	clock := func() time.Time { return dataEnd.Add(5*time.Minute + time.Since(started)) }
	url, prom, _ := serve(clock, nil)
	end := dataEnd.Add(-17 * time.Minute)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}, Timeout: 30 * time.Second}
	st := &stack{url: url, prom: prom, dsns: dsns, end: end, size: sz, client: client, from: from, slots: slots, nc: nc, top: top}
	st.fresh = func() *stack {
		// Another service on the same shards, with nothing in memory.
		fresh := *st
		fresh.url, fresh.prom, fresh.close = serve(clock, nil)
		return &fresh
	}
	st.secured = func() *stack {
		// Another service on the same shards whose callers present a viewer token.
		keys, err := auth.EnsureDevKeys(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		userKeys, err := auth.NewKeySet(auth.KeySetConfig{Dir: keys.UserKeyDir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		users, err := auth.NewLocalUserVerifier(auth.LocalUserConfig{Keys: userKeys})
		if err != nil {
			b.Fatal(err)
		}
		secured := *st
		if secured.token, _, err = keys.UserSigner.UserToken("bench", auth.RoleViewer, time.Hour, time.Now()); err != nil {
			b.Fatal(err)
		}
		secured.url, secured.prom, secured.close = serve(clock, users)
		return &secured
	}
	st.live = func() *stack {
		// A second service whose clock is just after the data set's last readings (the last at
		// 11:59:59), asked about the 24 hours ending now: for it the last hour of every window
		// is the hour being written, as for a dashboard.
		live := *st
		live.end = dataEnd.Add(-100 * time.Millisecond)
		live.url, live.prom, live.close = serve(func() time.Time { return live.end }, nil)
		return &live
	}
	return st
}

func mustList(reg *registry.Registry) []registry.Mapping {
	all, _ := reg.ListCached("", 1<<30)
	return all
}

func mapFleet(ctx context.Context, reg *registry.Registry, sz size) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := w; i < sz.vehicles; i += 8 {
				if _, err := reg.Set(ctx, vehicleID(i), meterID(i%sz.meters)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func vehicleID(i int) string { return fmt.Sprintf("EV-%05d", i) }
func meterID(i int) string   { return fmt.Sprintf("meter-%05d", i) }

// loadShard COPYs the shard's rows: one reading a minute per device over the days, each
// device with its own second offset; a vehicle's rows go where its meter is.
func loadShard(ctx context.Context, pool *pgxpool.Pool, slots *placement.SlotMap, shard int, sz size, from time.Time) (int64, error) {
	minutes := sz.days * 24 * 60
	var vehicles, meters []int
	for i := 0; i < sz.vehicles; i++ {
		if slots.ShardOf(meterID(i%sz.meters)) == shard {
			vehicles = append(vehicles, i)
		}
	}
	for j := 0; j < sz.meters; j++ {
		if slots.ShardOf(meterID(j)) == shard {
			meters = append(meters, j)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(shard), 7))
	vi, vm := 0, 0
	vsrc := copyFunc(func() ([]any, bool) {
		if vi >= len(vehicles) {
			return nil, false
		}
		i := vehicles[vi]
		ts := from.Add(time.Duration(vm)*time.Minute + time.Duration(i%60)*time.Second)
		row := []any{vehicleID(i), ts, 20 + 80*rng.Float64(), 0.1 + 0.3*rng.Float64(), 15 + 25*rng.Float64(), meterID(i % sz.meters)}
		vm++
		if vm == minutes {
			vm, vi = 0, vi+1
		}
		return row, true
	})
	n, err := fleetload.BulkCopy(ctx, pool, true, &copySource{next: vsrc})
	if err != nil {
		return n, err
	}
	mi, mm := 0, 0
	msrc := copyFunc(func() ([]any, bool) {
		if mi >= len(meters) {
			return nil, false
		}
		j := meters[mi]
		ts := from.Add(time.Duration(mm)*time.Minute + time.Duration((j*7)%60)*time.Second)
		row := []any{meterID(j), ts, 0.2 + 0.4*rng.Float64(), 220 + 20*rng.Float64()}
		mm++
		if mm == minutes {
			mm, mi = 0, mi+1
		}
		return row, true
	})
	m, err := fleetload.BulkCopy(ctx, pool, false, &copySource{next: msrc})
	return n + m, err
}

// ingest writes, until the returned stop is called, perSecond readings a second over the
// shards (0: what a fleet of the data set's size sends, a reading a minute from every
// device) the way the ingester writes them: every 100 ms one batch per shard
// (store.WriteBatch) and its commit notice, so the hour being written changes version ten
// times a second on every shard. The readings are stamped in the data set's last second, before the
// live windows' end, at random microseconds (a reused data set keeps them; a repeat is a
// duplicate, skipped). stop returns the batches written.
func (s *stack) ingest(b *testing.B, perSecond int) (stop func() int) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	batches := 0
	for shard, dsn := range s.dsns {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.New(ctx, pool, store.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		var vehicles, meters []int
		for i := range s.size.vehicles {
			if s.slots.ShardOf(meterID(i%s.size.meters)) == shard {
				vehicles = append(vehicles, i)
			}
		}
		for j := range s.size.meters {
			if s.slots.ShardOf(meterID(j)) == shard {
				meters = append(meters, j)
			}
		}
		perBatch := max(1, len(vehicles)/600) // pairs of readings
		if perSecond > 0 {
			perBatch = max(1, perSecond/10/len(s.dsns)/2)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pool.Close()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(shard)))
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			stamp := func() int64 {
				return dataEnd.Add(-time.Second + time.Duration(rng.IntN(900_000))*time.Microsecond).UnixMicro()
			}
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				var mb []*telemetrypb.MeterReading
				var vb []*telemetrypb.VehicleReading
				for k := range perBatch {
					i := vehicles[(n*perBatch+k)%len(vehicles)]
					vb = append(vb, &telemetrypb.VehicleReading{VehicleId: vehicleID(i), TimestampMicros: stamp(), Soc: 50,
						MwhDeliveredDc: telemetry.MWhFromKWh(0.1 + 0.3*rng.Float64()), BatteryTemp: 25, MeterId: meterID(i % s.size.meters)})
					j := meters[(n*perBatch+k)%len(meters)]
					mb = append(mb, &telemetrypb.MeterReading{MeterId: meterID(j), TimestampMicros: stamp(), MwhConsumedAc: telemetry.MWhFromKWh(0.2 + 0.4*rng.Float64()), Voltage: 230})
				}
				res, err := st.WriteBatch(ctx, mb, vb)
				if err != nil {
					if ctx.Err() == nil {
						b.Errorf("writing a batch to shard %d: %v", shard, err)
					}
					return
				}
				if len(res.Changed) > 0 {
					notice, err := telemetry.MarshalNotice(shard, res.Changed)
					if err != nil {
						b.Errorf("encoding a commit notice: %v", err)
						return
					}
					_ = s.nc.Publish(s.top.CommitSubject(), notice)
				}
				mu.Lock()
				batches++
				mu.Unlock()
			}
		}()
	}
	return func() int {
		cancel()
		wg.Wait()
		return batches
	}
}

// copyFunc adapts a row generator to pgx's CopyFromSource.
type copyFunc func() ([]any, bool)

type copySource struct {
	next copyFunc
	row  []any
}

func (c *copySource) Next() bool {
	var ok bool
	c.row, ok = c.next()
	return ok
}
func (c *copySource) Values() ([]any, error) { return c.row, nil }
func (c *copySource) Err() error             { return nil }

// measure issues requests for random vehicles from conns workers and returns the sorted
// latencies and the elapsed time.
func (s *stack) measure(b *testing.B, conns, requests int) ([]time.Duration, time.Duration) {
	b.Helper()
	end := s.end.Format(time.RFC3339Nano)
	lat := make([]time.Duration, requests)
	var next sync.Mutex
	k := 0
	start := time.Now()
	var wg sync.WaitGroup
	var failed error
	for w := 0; w < conns; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				next.Lock()
				i := k
				k++
				next.Unlock()
				if i >= requests {
					return
				}
				url := fmt.Sprintf("%s/v1/analytics/performance/%s?window=24h&end=%s", s.url, vehicleID(rng.IntN(s.size.vehicles)), end)
				t0 := time.Now()
				res, err := s.get(url)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					next.Lock()
					failed = err
					next.Unlock()
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, elapsed
}

// warm asks for random vehicles until a round of questions reads nothing from Postgres: the
// service then holds every hour the benchmark's window needs (it loads them in the
// background after the first questions). The figures are the service's steady state.
func (s *stack) warm(b *testing.B) {
	b.Helper()
	start := time.Now()
	for {
		before := s.postgresReads(b)
		s.measure(b, 16, 500)
		if s.postgresReads(b) == before {
			b.Logf("every hour of the window in memory after %s", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatal("the service still reads per-vehicle windows from Postgres after 5 minutes of questions")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// postgresReads is the service's count of shard reads that went to Postgres.
func (s *stack) postgresReads(b *testing.B) float64 {
	b.Helper()
	mfs, err := s.prom.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fleetingest_analytics_reads_total" {
			continue
		}
		var n float64
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == "postgres" {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	return 0
}

func pct(lat []time.Duration, p float64) time.Duration {
	return lat[min(len(lat)-1, int(float64(len(lat))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkAnalytics loads ANALYTICS_BENCH_VEHICLES + ANALYTICS_BENCH_METERS devices
// (default 200 + 200) over ANALYTICS_BENCH_DAYS days (default 1) on ANALYTICS_BENCH_SHARDS
// shards (default 2), then measures GET /v1/analytics/performance/{id} for random vehicles
// at 1 and 16 connections (ANALYTICS_BENCH_REQUESTS each, default 2000) and the fleet alert
// query. ANALYTICS_BENCH_MAX_CONNS sizes the service's pool per shard (default twice the
// machine's cores).
func BenchmarkAnalytics(b *testing.B) {
	sz := size{
		vehicles: envInt(b, "ANALYTICS_BENCH_VEHICLES", 200),
		meters:   envInt(b, "ANALYTICS_BENCH_METERS", 200),
		days:     envInt(b, "ANALYTICS_BENCH_DAYS", 1),
		shards:   envInt(b, "ANALYTICS_BENCH_SHARDS", 2),
	}
	requests := envInt(b, "ANALYTICS_BENCH_REQUESTS", 2000)
	s := startStack(b, sz)
	alertsURL := fmt.Sprintf("%s/v1/analytics/alerts?threshold=0.85&window=24h&end=%s", s.url, s.end.Format(time.RFC3339))
	// The first question of all, on a Postgres just started: every hour is read from disk or
	// the OS's cache, on backends that have not touched the tables yet.
	coldStart := s.alerts(b, alertsURL)
	// The first question of a service that holds none of the window's hours, on a Postgres
	// that has run (as it has after an hour of ingest, or when another replica asked): five
	// fresh services, one after the other, for the median and the worst.
	var cold []time.Duration
	for range 5 {
		fresh := s.fresh()
		cold = append(cold, fresh.alerts(b, strings.Replace(alertsURL, s.url, fresh.url, 1)))
		fresh.close()
	}
	slices.Sort(cold)
	s.warm(b)

	b.Run("performance/conns=1", func(b *testing.B) { s.reportClient(b, 1, requests) })
	b.Run("performance/conns=16", func(b *testing.B) { s.reportClient(b, 16, requests*4) })
	b.Run("performance/wrk-conns=16", func(b *testing.B) { s.reportWrk(b, 16) })
	// Windows ending in the hour being written: that hour's rows come from Postgres with the
	// versions, the rest from memory.
	live := s.live()
	// The first alert question of a service that just became ready, over the last 24 hours:
	// what an operator's dashboard asks of a new replica.
	firstLive := live.alerts(b, live.url+"/v1/analytics/alerts?threshold=0.85&window=24h")
	live.warm(b)
	b.Run("performance/ending-now/conns=1", func(b *testing.B) { live.reportClient(b, 1, requests) })
	b.Run("performance/ending-now/wrk-conns=16", func(b *testing.B) { live.reportWrk(b, 16) })
	// The same while the fleet's readings are written (a reading a minute from every device,
	// then 10,000 readings a second): the hour being written changes version with every batch.
	for _, rate := range []struct {
		name      string
		perSecond int
	}{{"fleet", 0}, {"10000/s", 10_000}} {
		b.Run("performance/ending-now/ingesting-"+rate.name+"/conns=1", func(b *testing.B) {
			stop := live.ingest(b, rate.perSecond)
			live.reportClient(b, 1, requests)
			b.ReportMetric(float64(stop()), "batches")
		})
		b.Run("performance/ending-now/ingesting-"+rate.name+"/wrk-conns=16", func(b *testing.B) {
			stop := live.ingest(b, rate.perSecond)
			live.reportWrk(b, 16)
			b.ReportMetric(float64(stop()), "batches")
		})
	}
	b.Run("alerts", func(b *testing.B) {
		rec := report.New(b)
		for range b.N {
			var lat []time.Duration
			for range 5 {
				lat = append(lat, s.alerts(b, alertsURL))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			rec.Metric(ms(cold[len(cold)/2]), "cold-p50-ms")
			rec.Metric(ms(cold[len(cold)-1]), "cold-max-ms")
			rec.Metric(ms(coldStart), "cold-start-ms")
			rec.Metric(ms(firstLive), "new-replica-ms")
			rec.Metric(ms(lat[len(lat)/2]), "p50-ms")
			rec.Metric(ms(lat[len(lat)-1]), "max-ms")
		}
	})
}

// reportClient measures requests questions on conns connections with Go's HTTP client and
// reports p50, p99 and requests per second.
func (s *stack) reportClient(b *testing.B, conns, requests int) {
	rec := report.New(b)
	for range b.N {
		lat, elapsed := s.measure(b, conns, requests)
		rec.Metric(ms(pct(lat, 0.5)), "p50-ms")
		rec.Metric(ms(pct(lat, 0.99)), "p99-ms")
		rec.Metric(float64(requests)/elapsed.Seconds(), "req/s")
		rec.Latency(report.LatencyOf(func(p float64) time.Duration { return pct(lat, p/100) }))
	}
}

// get asks one question, with the stack's token if it has one.
func (s *stack) get(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	return s.client.Do(req)
}

// reportWrk measures 10 s of questions on conns connections with wrk and reports p50, p99 and
// requests per second.
func (s *stack) reportWrk(b *testing.B, conns int) {
	const d = 10 * time.Second
	rec := report.New(b)
	for range b.N {
		n, p50, p99 := s.wrk(b, conns, d)
		rec.Metric(ms(p50), "p50-ms")
		rec.Metric(ms(p99), "p99-ms")
		rec.Metric(float64(n)/d.Seconds(), "req/s")
		rec.Latency(report.Latency{P50: ms(p50), P99: ms(p99)})
	}
}

// alerts asks the fleet alert question once and returns how long the answer took.
func (s *stack) alerts(b *testing.B, url string) time.Duration {
	b.Helper()
	t0 := time.Now()
	res, err := s.get(url)
	if err != nil {
		b.Fatal(err)
	}
	var body struct {
		MissingShards []int `json:"missingShards"`
	}
	err = json.NewDecoder(res.Body).Decode(&body)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != 200 || len(body.MissingShards) > 0 {
		b.Fatalf("alerts: status %d, missing shards %v, %v", res.StatusCode, body.MissingShards, err)
	}
	return time.Since(t0)
}

// BenchmarkAnalyticsAuth compares per-vehicle questions to a service that asks for user
// tokens with the same questions to one that does not, on the same data: both served at
// once, warmed, and asked in alternating rounds (1 connection, then 16 with wrk).
func BenchmarkAnalyticsAuth(b *testing.B) {
	sz := size{
		vehicles: envInt(b, "ANALYTICS_BENCH_VEHICLES", 200),
		meters:   envInt(b, "ANALYTICS_BENCH_METERS", 200),
		days:     envInt(b, "ANALYTICS_BENCH_DAYS", 1),
		shards:   envInt(b, "ANALYTICS_BENCH_SHARDS", 2),
	}
	requests := envInt(b, "ANALYTICS_BENCH_REQUESTS", 2000)
	open := startStack(b, sz)
	secured := open.secured()
	open.warm(b)
	secured.warm(b)
	for r := range 3 {
		for _, s := range []struct {
			name string
			st   *stack
		}{{"auth", secured}, {"no-auth", open}} {
			b.Run(fmt.Sprintf("%s/round-%d/conns=1", s.name, r), func(b *testing.B) { s.st.reportClient(b, 1, requests) })
			b.Run(fmt.Sprintf("%s/round-%d/wrk-conns=16", s.name, r), func(b *testing.B) { s.st.reportWrk(b, 16) })
		}
	}
}

// BenchmarkHistorySize measures per-vehicle latency on two data sets that differ only in
// history length (1 and 7 days; ANALYTICS_BENCH_HISTORY_DEVICES vehicles and as many meters,
// default 100), both served at once and asked ANALYTICS_BENCH_REQUESTS questions in
// alternating rounds, and reports p50/p99 of each and their ratio.
func BenchmarkHistorySize(b *testing.B) {
	n := envInt(b, "ANALYTICS_BENCH_HISTORY_DEVICES", 100)
	requests := envInt(b, "ANALYTICS_BENCH_REQUESTS", 2000)
	var stacks [2]*stack
	for k, days := range []int{1, 7} {
		stacks[k] = startStack(b, size{vehicles: n, meters: n, days: days, shards: 1})
	}
	for _, s := range stacks {
		s.warm(b)
	}
	// Short rounds on each in turn, so that the machine's speed, which drifts with its other
	// work, weighs on both data sets alike.
	const rounds = 10
	var lat [2][]time.Duration
	for range rounds {
		for k, s := range stacks {
			l, _ := s.measure(b, 1, max(requests/rounds, 1))
			lat[k] = append(lat[k], l...)
		}
	}
	var p50, p99 [2]time.Duration
	for k := range lat {
		slices.Sort(lat[k])
		p50[k], p99[k] = pct(lat[k], 0.5), pct(lat[k], 0.99)
	}
	rec := report.New(b)
	for range b.N {
		rec.Metric(ms(p50[0]), "p50-1d-ms")
		rec.Metric(ms(p50[1]), "p50-7d-ms")
		rec.Metric(ms(p99[0]), "p99-1d-ms")
		rec.Metric(ms(p99[1]), "p99-7d-ms")
		rec.Metric(float64(p50[1])/float64(p50[0]), "p50-7d/1d")
		rec.Metric(float64(p99[1])/float64(p99[0]), "p99-7d/1d")
	}
}
