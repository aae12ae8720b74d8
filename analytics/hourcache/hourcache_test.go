package hourcache_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync/atomic"
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
			ms = append(ms, fleetload.MeterReading{MeterID: fmt.Sprintf("m%02d", m), TS: ts, AC: rng.Int64N(1_000_000), Voltage: 230})
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
			vs = append(vs, fleetload.VehicleReading{VehicleID: fmt.Sprintf("v%02d", v), TS: ts, SOC: 50, DC: rng.Int64N(800_000), Temp: 25, MeterID: meter})
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
	if len(got.MeterAC) != len(want.MeterAC) {
		t.Errorf("%d meters with AC, want %d", len(got.MeterAC), len(want.MeterAC))
	}
	for m, ac := range want.MeterAC {
		if got.MeterAC[m] != ac {
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
		if !ok || g.AC != w.AC || g.DC != w.DC {
			t.Errorf("%s: got %+v, want %+v", key(w), g, w)
		}
	}
	us := func(xs []query.MeterHour) []string {
		var out []string
		for _, x := range xs {
			out = append(out, fmt.Sprintf("%s@%s=%.12g", x.MeterID, x.Hour.Format(time.TimeOnly), float64(x.AC)))
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

func TestPackedHoursGiveTheSumsOfTheirRows(t *testing.T) {
	s := shard(t)
	ctx := t.Context()
	st, err := store.New(ctx, s.Pool, store.Config{Now: func() time.Time { return start.Add(24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if sealed, err := st.SealHours(ctx, start, start.Add(12*time.Hour), 24); err != nil || len(sealed) != 12 {
		t.Fatalf("packed %d hours, %v; want 12", len(sealed), err)
	}
	hours := window.Range{From: start.Add(time.Hour), To: start.Add(11 * time.Hour)}
	checkSums(t, hourcache.New(hourcache.Config{}), s.Pool, hours)

	// A late reading in hour 3: its pack is stale, and a fresh cache reads that hour's rows.
	if _, err := s.Write(ctx,
		[]fleetload.VehicleReading{{VehicleID: "v04", TS: start.Add(3*time.Hour + 7*time.Second), SOC: 50, DC: 3, Temp: 25, MeterID: "m04"}}, nil, 10); err != nil {
		t.Fatal(err)
	}
	checkSums(t, hourcache.New(hourcache.Config{}), s.Pool, hours)
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

// vehicleCache is a running cache whose background loads run on pool, by default with every
// hour settled.
func vehicleCache(t *testing.T, pool *pgxpool.Pool, cfg hourcache.Config) *hourcache.Cache {
	t.Helper()
	cfg.Do = func(ctx context.Context, fn func(ctx context.Context, db query.DBTX) error) error {
		return fn(ctx, pool)
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return start.Add(30 * 24 * time.Hour) }
	}
	c := hourcache.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// fromMemory asks until the cache answers from memory (its loads run in the background).
func fromMemory(t *testing.T, c *hourcache.Cache, pool *pgxpool.Pool, vehicle string, w window.Window, spans []query.MeterSpan) query.VehicleRows {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, ok, err := c.Vehicle(t.Context(), pool, vehicle, w, spans)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v: not answered from memory after 20 s", vehicle, w)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// likeStatement asks the cache about vehicle's window until it answers from memory, checks the
// answer against the per-vehicle statement's, and returns it in canonical form.
func likeStatement(t *testing.T, c *hourcache.Cache, pool *pgxpool.Pool, vehicle string, w window.Window) []string {
	t.Helper()
	spans := spansOf(t, pool, vehicle, w)
	got := canonical(fromMemory(t, c, pool, vehicle, w, spans))
	sql, err := query.Vehicle(t.Context(), pool, vehicle, w, spans)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(canonical(sql)) {
		t.Fatalf("%s:\nmemory:    %v\nstatement: %v", vehicle, got, canonical(sql))
	}
	return got
}

// canonical lists a shard's per-vehicle rows in one order, energy exactly and the float sums
// rounded.
func canonical(r query.VehicleRows) []string {
	var out []string
	f := func(x float64) string { return fmt.Sprintf("%.9g", x) }
	for _, o := range r.Own {
		out = append(out, fmt.Sprintf("own %s %s %s dc=%d temp=%s n=%d", o.VehicleID, o.MeterID, o.Hour.Format(time.TimeOnly), o.DC, f(o.TempSum), o.Readings))
	}
	for _, a := range r.AC {
		out = append(out, fmt.Sprintf("ac %s %s ac=%d v=%s n=%d", a.MeterID, a.Hour.Format(time.TimeOnly), a.AC, f(a.VoltageSum), a.Readings))
	}
	for _, d := range r.DC {
		out = append(out, fmt.Sprintf("dc %s %s total=%d vehicles=%d includes=%t", d.MeterID, d.Hour.Format(time.TimeOnly), d.Total, d.Vehicles, d.Includes))
	}
	sort.Strings(out)
	return out
}

// spansOf is every meter the vehicle drew from, over all of the window's hours.
func spansOf(t *testing.T, pool *pgxpool.Pool, vehicle string, w window.Window) []query.MeterSpan {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT DISTINCT meter_id FROM vehicle_hourly WHERE vehicle_id = $1 AND meter_id <> '' ORDER BY 1", vehicle)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []query.MeterSpan
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, query.MeterSpan{MeterID: m, Hours: window.Range{From: window.FloorHour(w.Start), To: window.CeilHour(w.End)}})
	}
	return out
}

func TestVehicleFromMemoryEqualsTheStatement(t *testing.T) {
	s := shard(t)
	c := vehicleCache(t, s.Pool, hourcache.Config{MaxRawHours: 64})
	windows := []window.Window{
		{Start: start.Add(-2 * time.Hour), End: start.Add(11*time.Hour + 43*time.Minute)},              // data starts inside
		{Start: start.Add(2*time.Hour + 17*time.Minute), End: start.Add(9*time.Hour + 2*time.Minute)},  // two edges, a re-mapping
		{Start: start.Add(5*time.Hour + 10*time.Minute), End: start.Add(5*time.Hour + 40*time.Minute)}, // inside one hour
		{Start: start.Add(3 * time.Hour), End: start.Add(8 * time.Hour)},                               // whole hours only
		{Start: start.Add(6*time.Hour + 1*time.Minute), End: start.Add(7 * time.Hour)},                 // one edge
	}
	compared := 0
	for v := range 30 {
		vehicle := fmt.Sprintf("v%02d", v)
		for _, w := range windows {
			spans := spansOf(t, s.Pool, vehicle, w)
			got := canonical(fromMemory(t, c, s.Pool, vehicle, w, spans))
			sql, err := query.Vehicle(t.Context(), s.Pool, vehicle, w, spans)
			if err != nil {
				t.Fatal(err)
			}
			want := canonical(sql)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s %v:\nmemory:    %v\nstatement: %v", vehicle, w, got, want)
			}
			compared += len(want)
		}
	}
	if compared < 1000 {
		t.Fatalf("only %d rows compared: the fixture is too thin", compared)
	}
	// An unknown vehicle and an unknown meter: nothing, from memory as from the statement.
	w := windows[0]
	ghost := []query.MeterSpan{{MeterID: "nowhere", Hours: window.Range{From: window.FloorHour(w.Start), To: window.CeilHour(w.End)}}}
	if got := fromMemory(t, c, s.Pool, "ghost", w, ghost); len(canonical(got)) != 0 {
		t.Errorf("unknown vehicle answered %v", canonical(got))
	}
}

func TestVehicleIsNotAnsweredFromAnHourThatChanged(t *testing.T) {
	s := shard(t)
	c := vehicleCache(t, s.Pool, hourcache.Config{})
	w := window.Window{Start: start.Add(2*time.Hour + 17*time.Minute), End: start.Add(9*time.Hour + 2*time.Minute)}
	spans := spansOf(t, s.Pool, "v04", w)
	before := canonical(fromMemory(t, c, s.Pool, "v04", w, spans))

	// A late reading in a whole hour, then one in the first (edge) hour: each time the next
	// answer from memory is the statement's, never the old one.
	for _, ts := range []time.Time{start.Add(4*time.Hour + 7*time.Second), start.Add(2*time.Hour + 30*time.Minute + 3*time.Second)} {
		if _, err := s.Write(t.Context(), []fleetload.VehicleReading{{VehicleID: "v14", TS: ts, SOC: 50, DC: 5, Temp: 25, MeterID: "m04"}}, nil, 10); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.Vehicle(t.Context(), s.Pool, "v04", w, spans); err != nil || ok {
			t.Fatalf("right after a write to one of its hours: answered from memory %t, %v", ok, err)
		}
		got := canonical(fromMemory(t, c, s.Pool, "v04", w, spans))
		sql, err := query.Vehicle(t.Context(), s.Pool, "v04", w, spans)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(canonical(sql)) {
			t.Fatalf("after a write at %s:\nmemory:    %v\nstatement: %v", ts.Format(time.TimeOnly), got, canonical(sql))
		}
		if fmt.Sprint(got) == fmt.Sprint(before) {
			t.Fatalf("the write at %s did not change the answer", ts.Format(time.TimeOnly))
		}
		before = got
	}
}

func TestTheCurrentHourIsReadWithTheVersionsNotKept(t *testing.T) {
	s := shard(t)
	ctx := t.Context()
	c := vehicleCache(t, s.Pool, hourcache.Config{Now: func() time.Time { return start.Add(11*time.Hour + 50*time.Minute) }})
	// The window ends in the clock's hour: that edge is read with the versions on every
	// question, never kept; the rest is answered from memory, with the statement's numbers.
	w := window.Window{Start: start.Add(2*time.Hour + 20*time.Minute), End: start.Add(11*time.Hour + 45*time.Minute)}
	for _, vehicle := range []string{"v04", "v07", "v14", "v27"} {
		likeStatement(t, c, s.Pool, vehicle, w)
	}
	if n := c.RawLen(); n != 1 {
		t.Errorf("%d raw hours held, want 1: the window's first hour, not the current one", n)
	}
	// A reading arriving now in the current hour is in the next answer.
	spans := spansOf(t, s.Pool, "v04", w)
	before := canonical(fromMemory(t, c, s.Pool, "v04", w, spans))
	if _, err := s.Write(ctx, []fleetload.VehicleReading{{VehicleID: "v04", TS: start.Add(11*time.Hour + 44*time.Minute), SOC: 50, DC: 7, Temp: 25, MeterID: "m04"}}, nil, 10); err != nil {
		t.Fatal(err)
	}
	after := canonical(fromMemory(t, c, s.Pool, "v04", w, spans))
	sql, err := query.Vehicle(ctx, s.Pool, "v04", w, spans)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) == fmt.Sprint(before) || fmt.Sprint(after) != fmt.Sprint(canonical(sql)) {
		t.Fatalf("after a reading in the current hour:\nbefore:    %v\nmemory:    %v\nstatement: %v", before, after, canonical(sql))
	}
	// A minute after the hour, the hour before has not settled either: a window with an edge
	// in each is the statement's, however often it is asked.
	c2 := vehicleCache(t, s.Pool, hourcache.Config{Now: func() time.Time { return start.Add(11*time.Hour + time.Minute) }})
	w2 := window.Window{Start: start.Add(10*time.Hour + 30*time.Minute), End: start.Add(11*time.Hour + 30*time.Second)}
	for range 20 {
		if _, ok, err := c2.Vehicle(ctx, s.Pool, "v04", w2, spansOf(t, s.Pool, "v04", w2)); err != nil || ok {
			t.Fatalf("two unsettled edges: answered %t, %v; want the statement's", ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := c2.RawLen(); n != 0 {
		t.Errorf("%d raw hours held for unsettled hours", n)
	}
}

// endingNow is a shard, a cache whose clock is at 11:58:30, and a window ending at 11:58. Every
// device's last reading of hour 11 is at 11:55:xx: the window ends after all of them, so the
// hour's rollup rows are its sums.
func endingNow(t *testing.T) (*fleetload.Shard, *hourcache.Cache, window.Window) {
	t.Helper()
	s := shard(t)
	now := start.Add(11*time.Hour + 58*time.Minute + 30*time.Second)
	c := vehicleCache(t, s.Pool, hourcache.Config{Now: func() time.Time { return now }})
	return s, c, window.Window{Start: start.Add(2*time.Hour + 20*time.Minute), End: start.Add(11*time.Hour + 58*time.Minute)}
}

func TestAWindowEndingNowTakesTheHourBeingWrittenFromItsRollupRows(t *testing.T) {
	s, c, w := endingNow(t)
	ctx := t.Context()
	vehicles := []string{"v04", "v07", "v09", "v14", "v27"}
	answers := map[string][]string{}
	for _, vehicle := range vehicles {
		answers[vehicle] = likeStatement(t, c, s.Pool, vehicle, w)
	}
	// Remove the hour's raw readings behind the rollups' back (no version changes): answers
	// taken from the rollup rows do not change, answers summed from raw readings would.
	for _, table := range []string{"vehicle_telemetry_history", "meter_telemetry_history"} {
		if _, err := s.Pool.Exec(ctx, "DELETE FROM "+table+" WHERE ts >= $1", start.Add(11*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for _, vehicle := range vehicles {
		got := canonical(fromMemory(t, c, s.Pool, vehicle, w, spansOf(t, s.Pool, vehicle, w)))
		if fmt.Sprint(got) != fmt.Sprint(answers[vehicle]) {
			t.Fatalf("%s was not answered from the rollup rows of the hour being written:\nnow:    %v\nbefore: %v", vehicle, got, answers[vehicle])
		}
	}
}

func TestAReadingAfterTheWindowEndSendsTheHourBeingWrittenToRawReadings(t *testing.T) {
	s, c, w := endingNow(t)
	ctx := t.Context()
	check := func(vehicle string) []string { return likeStatement(t, c, s.Pool, vehicle, w) }
	// A reading of v24 (on m04, with v04 and v14) stamped after the window's end, and a
	// meter reading of m04 too: m04's and v24's rows now hold more than the window, so v04's
	// answer must come from the raw readings before the end and stay as it was.
	before := check("v04")
	if _, err := s.Write(ctx,
		[]fleetload.VehicleReading{{VehicleID: "v24", TS: start.Add(11*time.Hour + 59*time.Minute), SOC: 50, DC: 9, Temp: 25, MeterID: "m04"}},
		[]fleetload.MeterReading{{MeterID: "m04", TS: start.Add(11*time.Hour + 59*time.Minute), AC: 11, Voltage: 230}}, 10); err != nil {
		t.Fatal(err)
	}
	if after := check("v04"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("readings after the window's end changed v04's answer:\nafter:  %v\nbefore: %v", after, before)
	}
	// Rows whose latest reading is unknown (written before the column existed) are not used
	// either: here v27's row holds a reading after the window's end that only raw readings
	// would leave out.
	before = check("v27")
	if _, err := s.Write(ctx, []fleetload.VehicleReading{{VehicleID: "v27", TS: start.Add(11*time.Hour + 59*time.Minute), SOC: 50, DC: 9, Temp: 25, MeterID: "m07"}}, nil, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool.Exec(ctx, "UPDATE vehicle_hourly SET last_ts = NULL WHERE vehicle_id = 'v27' AND hour = $1", start.Add(11*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if after := check("v27"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a reading after the window's end changed v27's answer:\nafter:  %v\nbefore: %v", after, before)
	}
}

func TestTheLastDayIsReadBeforeTheCacheIsWarm(t *testing.T) {
	s := shard(t)
	release := make(chan struct{})
	var calls atomic.Int32
	c := hourcache.New(hourcache.Config{
		// The last 24 whole hours before 13:05 hold the fixture's 12 hours of readings.
		Now: func() time.Time { return start.Add(13*time.Hour + 5*time.Minute) },
		Do: func(ctx context.Context, fn func(ctx context.Context, db query.DBTX) error) error {
			if calls.Add(1) == 1 {
				<-release
			}
			return fn(ctx, s.Pool)
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	time.Sleep(50 * time.Millisecond)
	if c.Warm() || c.Len() != 0 {
		t.Fatalf("warm %v with %d hours before the first read ended", c.Warm(), c.Len())
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for !c.Warm() {
		if time.Now().After(deadline) {
			t.Fatal("not warm 10 s after the first read was let through")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := c.Len(); n != 12 {
		t.Fatalf("warm with %d hours, want the 12 of the last day that have rollups", n)
	}
}

func TestACacheWhoseShardDoesNotAnswerStillWarms(t *testing.T) {
	c := hourcache.New(hourcache.Config{
		Do: func(context.Context, func(ctx context.Context, db query.DBTX) error) error {
			return errors.New("shard 3: connection refused")
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !c.Warm() {
		if time.Now().After(deadline) {
			t.Fatal("a cache whose shard refuses is never warm")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.Len() != 0 {
		t.Fatalf("%d hours held from a shard that refused", c.Len())
	}
}

func TestTheCacheKeepsWithinMaxBytes(t *testing.T) {
	s := shard(t)
	one := hourcache.New(hourcache.Config{})
	checkSums(t, one, s.Pool, window.Range{From: start, To: start.Add(time.Hour)})
	hourBytes := one.Bytes()
	if hourBytes <= 0 {
		t.Fatalf("an hour of rollups is estimated at %d bytes", hourBytes)
	}
	c := hourcache.New(hourcache.Config{MaxBytes: hourBytes*7/2 + 1})
	for h := range 10 {
		checkSums(t, c, s.Pool, window.Range{From: start.Add(time.Duration(h) * time.Hour), To: start.Add(time.Duration(h+2) * time.Hour)})
		if b := c.Bytes(); b > hourBytes*7/2+1 {
			t.Fatalf("cache holds %d bytes, at most %d allowed", b, hourBytes*7/2+1)
		}
	}
	if n := c.Len(); n < 2 || n > 3 {
		t.Errorf("cache holds %d hours, want the 2 or 3 that fit", n)
	}
}
