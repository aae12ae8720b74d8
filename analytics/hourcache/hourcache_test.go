package hourcache_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetingest/fleetingest/analytics/fleetload"
	"github.com/fleetingest/fleetingest/analytics/hourcache"
	"github.com/fleetingest/fleetingest/analytics/query"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

var start = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// shard is a migrated shard with 12 hours of readings: 12 meters; 30 vehicles, three per
// meter on the first ten meters (shared meters), some readings unmapped, two meters with AC
// and no vehicle (AC split by the mapping, not by DC), one vehicle moving meters mid-way.
func shard(t *testing.T) *fleetload.Shard {
	t.Helper()
	ctx := t.Context()
	pool, err := store.OpenPool(ctx, pgtest.NewDatabase(t, cluster), store.PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := fleetload.Prepare(ctx, pool, start, start.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var vs []fleetload.VehicleReading
	var ms []fleetload.MeterReading
	for m := range 12 {
		for ts := start.Add(time.Duration(m) * time.Second); ts.Before(start.Add(12 * time.Hour)); ts = ts.Add(5 * time.Minute) {
			ms = append(ms, fleetload.MeterReading{MeterID: fmt.Sprintf("m%02d", m), TS: ts, AC: rng.Float64(), Voltage: 230})
		}
	}
	for v := range 30 {
		for ts := start.Add(time.Duration(v) * time.Second); ts.Before(start.Add(12 * time.Hour)); ts = ts.Add(5 * time.Minute) {
			meter := fmt.Sprintf("m%02d", v%10)
			switch {
			case v == 7 && ts.After(start.Add(6*time.Hour)):
				meter = "m03"
			case v%9 == 0 && ts.Minute() < 10:
				meter = ""
			}
			vs = append(vs, fleetload.VehicleReading{VehicleID: fmt.Sprintf("v%02d", v), TS: ts, SOC: 50, DC: 0.8 * rng.Float64(), Temp: 25, MeterID: meter})
		}
	}
	if _, err := s.Write(ctx, vs, ms, 500); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSums compares the cache's sums with the same sums computed by Postgres.
func checkSums(t *testing.T, c *hourcache.Cache, pool *pgxpool.Pool, hours window.Range) {
	t.Helper()
	ctx := t.Context()
	got, ok, err := c.AlertSums(ctx, pool, hours)
	if err != nil || !ok {
		t.Fatalf("AlertSums(%v) = ok %t, %v", hours, ok, err)
	}
	want, err := query.AlertTotals(ctx, pool, hours)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	if len(got.MeterAC) != len(want.MeterAC) {
		t.Errorf("%d meters with AC, want %d", len(got.MeterAC), len(want.MeterAC))
	}
	for m, ac := range want.MeterAC {
		if !near(got.MeterAC[m], ac) {
			t.Errorf("meter %s AC %v, want %v", m, got.MeterAC[m], ac)
		}
	}
	key := func(v query.VehicleMeter) string { return v.VehicleID + "/" + v.MeterID }
	gv := map[string]query.VehicleMeter{}
	for _, v := range got.VehicleMeters {
		gv[key(v)] = v
	}
	if len(gv) != len(want.VehicleMeters) {
		t.Errorf("%d (vehicle, meter) pairs, want %d", len(gv), len(want.VehicleMeters))
	}
	for _, w := range want.VehicleMeters {
		g, ok := gv[key(w)]
		if !ok || !near(g.AC, w.AC) || !near(g.DC, w.DC) {
			t.Errorf("%s: got %+v, want %+v", key(w), g, w)
		}
	}
	us := func(xs []query.MeterHour) []string {
		var out []string
		for _, x := range xs {
			out = append(out, fmt.Sprintf("%s@%s=%.12g", x.MeterID, x.Hour.Format(time.TimeOnly), x.AC))
		}
		sort.Strings(out)
		return out
	}
	if g, w := fmt.Sprint(us(got.Unshared)), fmt.Sprint(us(want.Unshared)); g != w {
		t.Errorf("unshared meter hours %s, want %s", g, w)
	}
	if len(want.MeterAC) == 0 || len(want.VehicleMeters) == 0 || len(want.Unshared) == 0 {
		t.Fatalf("fixture too thin: %d meters, %d pairs, %d unshared hours", len(want.MeterAC), len(want.VehicleMeters), len(want.Unshared))
	}
}

func loaded(c prometheus.Counter) int { return int(testutil.ToFloat64(c)) }

func TestSumsEqualPostgresAndOnlyChangedHoursAreReadAgain(t *testing.T) {
	s := shard(t)
	ctx := t.Context()
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "loaded"})
	c := hourcache.New(hourcache.Config{Loaded: counter})
	hours := window.Range{From: start.Add(time.Hour), To: start.Add(11 * time.Hour)}

	checkSums(t, c, s.Pool, hours)
	if n := loaded(counter); n != 10 {
		t.Fatalf("first read loaded %d hours, want the 10 of the range", n)
	}
	checkSums(t, c, s.Pool, hours)
	if n := loaded(counter); n != 10 {
		t.Fatalf("a read with nothing changed loaded %d more hours, want none", n-10)
	}

	// A late reading in hour 3 (a vehicle drawing from a shared meter) and new AC in hour 5:
	// those two hours are read again and the sums follow.
	if _, err := s.Write(ctx,
		[]fleetload.VehicleReading{{VehicleID: "v04", TS: start.Add(3*time.Hour + 7*time.Second), SOC: 50, DC: 3, Temp: 25, MeterID: "m04"}},
		[]fleetload.MeterReading{{MeterID: "m11", TS: start.Add(5*time.Hour + 1*time.Second), AC: 2, Voltage: 230}}, 10); err != nil {
		t.Fatal(err)
	}
	checkSums(t, c, s.Pool, hours)
	if n := loaded(counter); n != 12 {
		t.Fatalf("after writes to 2 hours, %d hours were loaded again, want 2", n-10)
	}

	// A range sharing hours with the first reads only its new hours.
	checkSums(t, c, s.Pool, window.Range{From: start.Add(2 * time.Hour), To: start.Add(12 * time.Hour)})
	if n := loaded(counter); n != 13 {
		t.Fatalf("a range one hour later loaded %d hours, want 1", n-12)
	}
}

func TestHoursExpiredByRetentionLeaveTheSums(t *testing.T) {
	s := shard(t)
	ctx := t.Context()
	c := hourcache.New(hourcache.Config{})
	hours := window.Range{From: start, To: start.Add(12 * time.Hour)}
	checkSums(t, c, s.Pool, hours)
	// Keep rollups newer than hour 4 only: hours 0-3 go, with their versions.
	st, err := store.New(ctx, s.Pool, store.Config{Now: func() time.Time { return start.Add(4*time.Hour + 100*24*time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DropExpired(ctx, store.Retention{History: 365 * 24 * time.Hour, Rollup: 100 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	checkSums(t, c, s.Pool, hours)
	if n := c.Len(); n != 8 {
		t.Errorf("cache holds %d hours, want the 8 that still have rollups", n)
	}
}

func TestTheCacheHoldsAtMostMaxHours(t *testing.T) {
	s := shard(t)
	c := hourcache.New(hourcache.Config{MaxHours: 4})
	if _, ok, err := c.AlertSums(t.Context(), s.Pool, window.Range{From: start, To: start.Add(5 * time.Hour)}); err != nil || ok {
		t.Fatalf("5 hours with room for 4: ok %t, %v; want not answered", ok, err)
	}
	for h := range 9 {
		checkSums(t, c, s.Pool, window.Range{From: start.Add(time.Duration(h) * time.Hour), To: start.Add(time.Duration(h+3) * time.Hour)})
		if n := c.Len(); n > 4 {
			t.Fatalf("cache holds %d hours, at most 4 allowed", n)
		}
	}
}
