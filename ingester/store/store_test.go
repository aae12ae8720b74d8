package store

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

// fixedNow is the clock of most tests: mid-day, so "today" is unambiguous.
var fixedNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func migratedPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	pool, err := OpenPool(ctx, pgtest.NewDatabase(tb, cluster), PoolConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	return pool
}

func newStore(tb testing.TB, pool *pgxpool.Pool, now time.Time) *Store {
	tb.Helper()
	s, err := New(context.Background(), pool, Config{Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func meter(id string, ts time.Time, kwh, volt float64) *telemetrypb.MeterReading {
	return &telemetrypb.MeterReading{MeterId: id, TimestampMicros: ts.UnixMicro(), MwhConsumedAc: telemetry.MWhFromKWh(kwh), Voltage: volt}
}

func vehicle(id string, ts time.Time, soc, kwh, temp float64, meterID string) *telemetrypb.VehicleReading {
	return &telemetrypb.VehicleReading{VehicleId: id, TimestampMicros: ts.UnixMicro(), Soc: soc, MwhDeliveredDc: telemetry.MWhFromKWh(kwh), BatteryTemp: temp, MeterId: meterID}
}

func count(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}

// checkRollups compares each rollup table with the same aggregate computed over history.
func checkRollups(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	for name, sql := range map[string]string{
		"meter_hourly": `
			WITH want AS (
				SELECT meter_id, date_bin('1 hour', ts, '1970-01-01 00:00:00+00') AS hour,
					sum(mwh_consumed_ac) AS mwh, sum(voltage) AS volt, count(*)::int AS n, max(ts) AS last
				FROM meter_telemetry_history GROUP BY 1, 2)
			SELECT count(*) FROM want FULL JOIN meter_hourly h USING (meter_id, hour)
			WHERE want.n IS DISTINCT FROM h.readings OR want.last IS DISTINCT FROM h.last_ts
				OR want.mwh <> h.mwh_consumed_ac OR abs(want.volt - h.voltage_sum) > 1e-6
				OR want.n IS NULL OR h.readings IS NULL`,
		"vehicle_hourly": `
			WITH want AS (
				SELECT vehicle_id, meter_id, date_bin('1 hour', ts, '1970-01-01 00:00:00+00') AS hour,
					sum(mwh_delivered_dc) AS mwh, sum(battery_temp) AS temp, min(soc) AS lo, max(soc) AS hi, count(*)::int AS n,
					max(ts) AS last
				FROM vehicle_telemetry_history GROUP BY 1, 2, 3)
			SELECT count(*) FROM want FULL JOIN vehicle_hourly h USING (vehicle_id, meter_id, hour)
			WHERE want.n IS DISTINCT FROM h.readings OR want.last IS DISTINCT FROM h.last_ts
				OR want.mwh <> h.mwh_delivered_dc OR abs(want.temp - h.battery_temp_sum) > 1e-6
				OR want.lo IS DISTINCT FROM h.soc_min OR want.hi IS DISTINCT FROM h.soc_max
				OR want.n IS NULL OR h.readings IS NULL`,
	} {
		if bad := count(tb, pool, sql); bad != 0 {
			tb.Errorf("%s differs from the aggregate over history in %d rows", name, bad)
		}
	}
	checkRollupHours(tb, pool)
}

// checkRollupHours checks that every hour with rollup rows has a version, and no other hour.
func checkRollupHours(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	if bad := count(tb, pool, `
		SELECT count(*) FROM (SELECT hour FROM meter_hourly UNION SELECT hour FROM vehicle_hourly) h
		FULL JOIN rollup_hours r USING (hour) WHERE h.hour IS NULL OR r.version IS NULL`); bad != 0 {
		tb.Errorf("%d hours have rollup rows without a version or a version without rollup rows", bad)
	}
}

func TestMigrateIsIdempotentAndSafeToRunConcurrently(t *testing.T) {
	ctx := t.Context()
	pool, err := OpenPool(ctx, pgtest.NewDatabase(t, cluster), PoolConfig{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	const callers = 6
	applied := make([][]int, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { applied[i], errs[i] = Migrate(ctx, pool) })
	}
	wg.Wait()
	total := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(ms) {
		t.Errorf("concurrent callers applied %d migrations in all, want %d (each exactly once)", total, len(ms))
	}
	if n := count(t, pool, "SELECT count(*) FROM schema_migrations"); n != len(ms) {
		t.Errorf("schema_migrations holds %d rows, want %d", n, len(ms))
	}
	again, err := Migrate(ctx, pool)
	if err != nil || len(again) != 0 {
		t.Errorf("second Migrate applied %v, %v; want nothing", again, err)
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid WHERE c.relname LIKE '%_telemetry_history'"); n != 2 {
		t.Errorf("%d partitioned history tables, want 2", n)
	}
}

func TestWriteBatchCountsDuplicatesWithinAndAcrossBatches(t *testing.T) {
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	ctx := t.Context()
	t0 := fixedNow.Add(-3 * time.Hour).Truncate(time.Hour)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)

	res, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{
			meter("m1", t1, 1.5, 230), meter("m1", t1, 1.5, 230), // repeated inside the batch
			meter("m1", t0, 2, 231), meter("m2", t1, 0.5, 229),
		},
		[]*telemetrypb.VehicleReading{
			vehicle("v1", t1, 50, 1.25, 30, "m1"), vehicle("v1", t1, 50, 1.25, 30, "m1"),
			vehicle("v1", t2, 51, 1, 31, "m2"),
		})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Meters: KindResult{Inserted: 3, Duplicates: 1}, Vehicles: KindResult{Inserted: 2, Duplicates: 1}}
	if res.Meters != want.Meters || res.Vehicles != want.Vehicles {
		t.Errorf("first batch = %+v, want %+v", res, want)
	}

	res, err = s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", t1, 1.5, 230), meter("m1", t2, 3, 232)},
		[]*telemetrypb.VehicleReading{vehicle("v1", t1, 50, 1.25, 30, "m1"), vehicle("v2", t0, 10, 4, 25, "")})
	if err != nil {
		t.Fatal(err)
	}
	want = Result{Meters: KindResult{Inserted: 1, Duplicates: 1}, Vehicles: KindResult{Inserted: 1, Duplicates: 1}}
	if res.Meters != want.Meters || res.Vehicles != want.Vehicles {
		t.Errorf("second batch = %+v, want %+v", res, want)
	}
	if n := count(t, pool, "SELECT count(*) FROM meter_telemetry_history"); n != 4 {
		t.Errorf("%d meter history rows, want 4", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM vehicle_telemetry_history"); n != 3 {
		t.Errorf("%d vehicle history rows, want 3", n)
	}
	var mwh int64
	var readings int
	if err := pool.QueryRow(ctx, "SELECT mwh_consumed_ac, readings FROM meter_hourly WHERE meter_id = 'm1' AND hour = $1", t0).Scan(&mwh, &readings); err != nil {
		t.Fatal(err)
	}
	if mwh != 6_500_000 || readings != 3 {
		t.Errorf("m1 hour rollup = %d mWh over %d readings, want 6,500,000 over 3", mwh, readings)
	}
	// v1 drew from two meters within the hour: one rollup row per attributed meter.
	if n := count(t, pool, "SELECT count(*) FROM vehicle_hourly WHERE vehicle_id = 'v1' AND hour = $1", t0); n != 2 {
		t.Errorf("v1 has %d rollup rows in the hour, want 2 (one per meter)", n)
	}
	checkRollups(t, pool)
}

func TestWriteBatchStatusNeverMovesBackwards(t *testing.T) {
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	ctx := t.Context()
	base := fixedNow.Add(-time.Hour)
	at := func(minute int) time.Time { return base.Add(time.Duration(minute) * time.Minute) }

	steps := []struct {
		name     string
		meters   []*telemetrypb.MeterReading
		vehicles []*telemetrypb.VehicleReading
		wantTS   time.Time
		wantKWh  float64
		wantSoC  float64
	}{
		{"out-of-order readings in one batch keep the newest",
			[]*telemetrypb.MeterReading{meter("m", at(5), 5, 230), meter("m", at(9), 9, 230), meter("m", at(7), 7, 230)},
			[]*telemetrypb.VehicleReading{vehicle("v", at(9), 90, 9, 30, "m"), vehicle("v", at(5), 50, 5, 30, "m")},
			at(9), 9, 90},
		{"an older batch does not move status back",
			[]*telemetrypb.MeterReading{meter("m", at(1), 1, 230)},
			[]*telemetrypb.VehicleReading{vehicle("v", at(2), 20, 2, 30, "m")},
			at(9), 9, 90},
		{"a redelivered newest reading changes nothing",
			[]*telemetrypb.MeterReading{meter("m", at(9), 9, 230)},
			[]*telemetrypb.VehicleReading{vehicle("v", at(9), 90, 9, 30, "m")},
			at(9), 9, 90},
		{"a newer batch moves status forward",
			[]*telemetrypb.MeterReading{meter("m", at(12), 12, 231)},
			[]*telemetrypb.VehicleReading{vehicle("v", at(11), 95, 11, 31, "m")},
			at(12), 12, 95},
	}
	for _, st := range steps {
		if _, err := s.WriteBatch(ctx, st.meters, st.vehicles); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		var mts time.Time
		var mwh int64
		var soc float64
		if err := pool.QueryRow(ctx, "SELECT last_updated_at, last_mwh_consumed_ac FROM current_meter_status WHERE meter_id = 'm'").Scan(&mts, &mwh); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, "SELECT soc FROM current_vehicle_status WHERE vehicle_id = 'v'").Scan(&soc); err != nil {
			t.Fatal(err)
		}
		if !mts.Equal(st.wantTS) || mwh != telemetry.MWhFromKWh(st.wantKWh) || soc != st.wantSoC {
			t.Errorf("%s: meter status at %v with %v mWh, vehicle soc %v; want %v, %v kWh, %v", st.name, mts, mwh, soc, st.wantTS, st.wantKWh, st.wantSoC)
		}
	}
	checkRollups(t, pool)
}

func TestWriteBatchKeepsMicrosecondTimestampsExact(t *testing.T) {
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	ts := time.UnixMicro(fixedNow.UnixMicro() + 123457)
	if _, err := s.WriteBatch(t.Context(), []*telemetrypb.MeterReading{meter("m", ts, 1, 230)}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := s.WriteBatch(t.Context(), []*telemetrypb.MeterReading{meter("m", ts, 1, 230)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Meters.Duplicates != 1 {
		t.Errorf("retried reading not recognised as a duplicate: %+v", res)
	}
	var micros int64
	if err := pool.QueryRow(t.Context(), "SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM meter_telemetry_history").Scan(&micros); err != nil {
		t.Fatal(err)
	}
	if micros != ts.UnixMicro() {
		t.Errorf("stored %d µs, want %d", micros, ts.UnixMicro())
	}
}

// TestWriteBatchMatchesAModelOverManyBatches writes random batches with duplicates within
// and across batches and out-of-order timestamps, then checks history, rollups and status
// against what the same readings must produce.
func TestWriteBatchMatchesAModelOverManyBatches(t *testing.T) {
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	rng := rand.New(rand.NewPCG(1, 2))
	type key struct {
		id string
		ts int64
	}
	meters, vehicles := map[key]bool{}, map[key]bool{}
	newestMeter, newestVehicle := map[string]int64{}, map[string]int64{}
	start := fixedNow.Add(-36 * time.Hour) // spans three UTC days
	var wantInserted, wantDup int
	for range 30 {
		var ms []*telemetrypb.MeterReading
		var vs []*telemetrypb.VehicleReading
		for range 200 {
			ts := start.Add(time.Duration(rng.IntN(36*60)) * time.Minute)
			if rng.IntN(2) == 0 {
				id := fmt.Sprintf("m%d", rng.IntN(8))
				k := key{id, ts.UnixMicro()}
				// The same (meter, ts) always carries the same values, as a retry would.
				ms = append(ms, meter(id, ts, float64(k.ts%7)/2, 220+float64(k.ts%5)))
				if meters[k] || slices.ContainsFunc(ms[:len(ms)-1], func(r *telemetrypb.MeterReading) bool { return r.MeterId == id && r.TimestampMicros == k.ts }) {
					wantDup++
				} else {
					wantInserted++
				}
			} else {
				id := fmt.Sprintf("v%d", rng.IntN(8))
				k := key{id, ts.UnixMicro()}
				vs = append(vs, vehicle(id, ts, float64(k.ts%101), float64(k.ts%9)/4, 20+float64(k.ts%3), fmt.Sprintf("m%d", k.ts%3)))
				if vehicles[k] || slices.ContainsFunc(vs[:len(vs)-1], func(r *telemetrypb.VehicleReading) bool { return r.VehicleId == id && r.TimestampMicros == k.ts }) {
					wantDup++
				} else {
					wantInserted++
				}
			}
		}
		res, err := s.WriteBatch(t.Context(), ms, vs)
		if err != nil {
			t.Fatal(err)
		}
		if res.Readings() != len(ms)+len(vs) {
			t.Fatalf("result accounts for %d readings, batch had %d", res.Readings(), len(ms)+len(vs))
		}
		for _, r := range ms {
			meters[key{r.MeterId, r.TimestampMicros}] = true
			newestMeter[r.MeterId] = max(newestMeter[r.MeterId], r.TimestampMicros)
		}
		for _, r := range vs {
			vehicles[key{r.VehicleId, r.TimestampMicros}] = true
			newestVehicle[r.VehicleId] = max(newestVehicle[r.VehicleId], r.TimestampMicros)
		}
		wantInserted -= res.Meters.Inserted + res.Vehicles.Inserted
		wantDup -= res.Meters.Duplicates + res.Vehicles.Duplicates
		if wantInserted != 0 || wantDup != 0 {
			t.Fatalf("batch result %+v is off from the model by %d inserted, %d duplicates", res, -wantInserted, -wantDup)
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM meter_telemetry_history"); n != len(meters) {
		t.Errorf("%d meter history rows, want %d", n, len(meters))
	}
	if n := count(t, pool, "SELECT count(*) FROM vehicle_telemetry_history"); n != len(vehicles) {
		t.Errorf("%d vehicle history rows, want %d", n, len(vehicles))
	}
	for id, ts := range newestMeter {
		if n := count(t, pool, "SELECT count(*) FROM current_meter_status WHERE meter_id = $1 AND last_updated_at = $2", id, time.UnixMicro(ts)); n != 1 {
			t.Errorf("status of %s is not its newest reading", id)
		}
	}
	for id, ts := range newestVehicle {
		if n := count(t, pool, "SELECT count(*) FROM current_vehicle_status WHERE vehicle_id = $1 AND last_updated_at = $2", id, time.UnixMicro(ts)); n != 1 {
			t.Errorf("status of %s is not its newest reading", id)
		}
	}
	checkRollups(t, pool)
}

// hourVersions reads every hour's rollup version.
func hourVersions(tb testing.TB, pool *pgxpool.Pool) map[time.Time]int64 {
	tb.Helper()
	return versionsIn(tb, pool, "rollup_hours")
}

// versionsIn reads the (hour, version) rows of table.
func versionsIn(tb testing.TB, pool *pgxpool.Pool, table string) map[time.Time]int64 {
	tb.Helper()
	rows, err := pool.Query(context.Background(), "SELECT hour, version FROM "+table)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[time.Time]int64{}
	for rows.Next() {
		var h time.Time
		var v int64
		if err := rows.Scan(&h, &v); err != nil {
			tb.Fatal(err)
		}
		out[h.UTC()] = v
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestWriteBatchChangesTheVersionOfExactlyTheHoursItChanges(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	h0, h1, h2 := fixedNow.Add(-3*time.Hour), fixedNow.Add(-2*time.Hour), fixedNow.Add(-time.Hour)
	if _, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", h0.Add(time.Minute), 1, 230), meter("m1", h1.Add(time.Minute), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", h2.Add(time.Minute), 50, 1, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	first := hourVersions(t, pool)
	if len(first) != 3 {
		t.Fatalf("versions after the first batch = %v, want one for each of the 3 hours written", first)
	}

	// A late vehicle reading in h0 and a meter reading in h2: those two hours change, h1 not.
	res, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", h2.Add(2*time.Minute), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", h0.Add(5*time.Minute), 50, 1, 20, "m1")})
	if err != nil {
		t.Fatal(err)
	}
	second := hourVersions(t, pool)
	// What the batch reports changing is exactly that, with the new versions (for its notice).
	wantChanged := []telemetry.HourVersion{
		{Hour: h0.Truncate(time.Hour), Version: second[h0.Truncate(time.Hour)]},
		{Hour: h2.Truncate(time.Hour), Version: second[h2.Truncate(time.Hour)]},
	}
	if !slices.Equal(res.Changed, wantChanged) {
		t.Errorf("the batch reports changing %v, want %v", res.Changed, wantChanged)
	}
	for h, changed := range map[time.Time]bool{h0: true, h1: false, h2: true} {
		if got := second[h] != first[h]; got != changed {
			t.Errorf("hour %s: version %d -> %d, changed = %t, want %t", h.Format(time.TimeOnly), first[h], second[h], got, changed)
		}
	}

	// Only duplicates: nothing changes, so no version moves.
	if _, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", h0.Add(time.Minute), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", h2.Add(time.Minute), 50, 1, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	if third := hourVersions(t, pool); !maps.Equal(third, second) {
		t.Errorf("a batch of duplicates moved versions: %v -> %v", second, third)
	}
	checkRollups(t, pool)
}

func TestTheRollupHoursMigrationVersionsTheHoursAlreadyStored(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	if _, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", fixedNow.Add(-3*time.Hour), 1, 230), meter("m1", fixedNow.Add(-2*time.Hour), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", fixedNow.Add(-time.Hour), 50, 1, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	// The database as it was before the migration: rollups without versions.
	if _, err := pool.Exec(ctx, `DROP TABLE rollup_hours; DROP SEQUENCE rollup_version; DELETE FROM schema_migrations WHERE version = 4`); err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, pool)
	if err != nil || !slices.Equal(applied, []int{4}) {
		t.Fatalf("Migrate applied %v, %v; want [4]", applied, err)
	}
	if n := len(hourVersions(t, pool)); n != 3 {
		t.Errorf("%d hours have versions after the migration, want the 3 with rollups", n)
	}
	checkRollups(t, pool)
}

func TestARollupRowsLatestReadingIsUnknownWhenWrittenBeforeItWasKept(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	h := fixedNow.Truncate(time.Hour).Add(-2 * time.Hour)
	if _, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", h.Add(10*time.Minute), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", h.Add(10*time.Minute), 50, 1, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	// The database as it was before migration 0005.
	if _, err := pool.Exec(ctx, `ALTER TABLE meter_hourly DROP COLUMN last_ts; ALTER TABLE vehicle_hourly DROP COLUMN last_ts;
		DELETE FROM schema_migrations WHERE version = 5`); err != nil {
		t.Fatal(err)
	}
	if applied, err := Migrate(ctx, pool); err != nil || !slices.Equal(applied, []int{5}) {
		t.Fatalf("Migrate applied %v, %v; want [5]", applied, err)
	}
	// A later reading of the same hour (an earlier one too) leaves the rows' latest reading
	// unknown; the rows of a new hour know theirs.
	if _, err := s.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{meter("m1", h.Add(20*time.Minute), 1, 230), meter("m1", h.Add(70*time.Minute), 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v1", h.Add(5*time.Minute), 50, 1, 20, "m1"), vehicle("v1", h.Add(75*time.Minute), 50, 1, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	last := func(table, device string, hour time.Time) *time.Time {
		t.Helper()
		var ts *time.Time
		col := map[string]string{"meter_hourly": "meter_id", "vehicle_hourly": "vehicle_id"}[table]
		if err := pool.QueryRow(ctx, "SELECT last_ts FROM "+table+" WHERE "+col+" = $1 AND hour = $2", device, hour).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	if ts := last("meter_hourly", "m1", h); ts != nil {
		t.Errorf("meter row written before the migration: latest reading %v, want unknown", ts)
	}
	if ts := last("vehicle_hourly", "v1", h); ts != nil {
		t.Errorf("vehicle row written before the migration: latest reading %v, want unknown", ts)
	}
	if ts := last("meter_hourly", "m1", h.Add(time.Hour)); ts == nil || !ts.Equal(h.Add(70*time.Minute)) {
		t.Errorf("new meter row: latest reading %v, want %v", ts, h.Add(70*time.Minute))
	}
	if ts := last("vehicle_hourly", "v1", h.Add(time.Hour)); ts == nil || !ts.Equal(h.Add(75*time.Minute)) {
		t.Errorf("new vehicle row: latest reading %v, want %v", ts, h.Add(75*time.Minute))
	}
}

// TestTheEnergyMigrationConvertsStoredKWhToWholeMilliwattHours applies the migrations before
// 0007 to a fresh database, stores float kWh as the previous version did, and checks 0007
// converts history, rollups and status in place (rounding half away from zero at the sixth
// decimal), drops the packed hours and gives every hour a new version.
func TestTheEnergyMigrationConvertsStoredKWhToWholeMilliwattHours(t *testing.T) {
	ctx := t.Context()
	pool, err := OpenPool(ctx, pgtest.NewDatabase(t, cluster), PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= 7 {
			break
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("migration %d: %v", m.Version, err)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `
		CREATE TABLE meter_telemetry_history_p20261203 PARTITION OF meter_telemetry_history FOR VALUES FROM ('2026-12-03') TO ('2026-12-04');
		CREATE TABLE vehicle_telemetry_history_p20261203 PARTITION OF vehicle_telemetry_history FOR VALUES FROM ('2026-12-03') TO ('2026-12-04');
		INSERT INTO meter_telemetry_history VALUES
			('m1', '2026-12-03 10:01:00+00', 0.30000000000000004, 230), ('m1', '2026-12-03 10:02:00+00', 1.25, 231),
			('m2', '2026-12-03 10:01:00+00', 0.0000005, 230), ('m2', '2026-12-03 10:02:00+00', 0.0000004, 230);
		INSERT INTO vehicle_telemetry_history VALUES ('v1', '2026-12-03 10:01:00+00', 50, 17.999999999999996, 20, 'm1');
		INSERT INTO meter_hourly VALUES ('m1', '2026-12-03 10:00:00+00', 1.55, 461, 2, '2026-12-03 10:02:00+00');
		INSERT INTO vehicle_hourly VALUES ('v1', 'm1', '2026-12-03 10:00:00+00', 17.999999999999996, 20, 50, 50, 1, '2026-12-03 10:01:00+00');
		INSERT INTO current_meter_status VALUES ('m1', 1.25, 231, '2026-12-03 10:02:00+00');
		INSERT INTO current_vehicle_status VALUES ('v1', 50, 17.999999999999996, 20, 'm1', '2026-12-03 10:01:00+00');
		INSERT INTO rollup_hours VALUES ('2026-12-03 10:00:00+00', nextval('rollup_version'));
		INSERT INTO rollup_sealed VALUES ('2026-12-03 10:00:00+00', 1, '\x00', '\x00');`); err != nil {
		t.Fatal(err)
	}
	var before int64
	if err := pool.QueryRow(ctx, "SELECT version FROM rollup_hours").Scan(&before); err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, pool)
	if err != nil || len(applied) == 0 || applied[0] != 7 {
		t.Fatalf("Migrate applied %v, %v; want 7 and those after it", applied, err)
	}
	for _, c := range []struct {
		query string
		want  []int64
	}{
		{"SELECT mwh_consumed_ac FROM meter_telemetry_history ORDER BY meter_id, ts", []int64{300_000, 1_250_000, 1, 0}},
		{"SELECT mwh_delivered_dc FROM vehicle_telemetry_history", []int64{18_000_000}},
		{"SELECT mwh_consumed_ac FROM meter_hourly", []int64{1_550_000}},
		{"SELECT mwh_delivered_dc FROM vehicle_hourly", []int64{18_000_000}},
		{"SELECT last_mwh_consumed_ac FROM current_meter_status", []int64{1_250_000}},
		{"SELECT last_mwh_delivered_dc FROM current_vehicle_status", []int64{18_000_000}},
	} {
		rows, err := pool.Query(ctx, c.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s = %v, %v; want %v", c.query, got, err, c.want)
		}
	}
	var after int64
	if err := pool.QueryRow(ctx, "SELECT version FROM rollup_hours").Scan(&after); err != nil || after <= before {
		t.Errorf("the hour's version went from %d to %d (%v): readers would keep its float rows", before, after, err)
	}
	// The store writes into the converted tables.
	s := newStore(t, pool, time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC))
	if _, err := s.WriteBatch(ctx, []*telemetrypb.MeterReading{meter("m1", time.Date(2026, 12, 3, 10, 3, 0, 0, time.UTC), 0.45, 230)}, nil); err != nil {
		t.Fatal(err)
	}
	var total int64
	if err := pool.QueryRow(ctx, "SELECT mwh_consumed_ac FROM meter_hourly WHERE meter_id = 'm1'").Scan(&total); err != nil || total != 2_000_000 {
		t.Errorf("m1's hour after one more reading of 0.45 kWh: %d mWh (%v), want 2,000,000", total, err)
	}
}
