package query

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// shardStore is a migrated shard database and its store with the clock at now.
func shardStore(t *testing.T, now time.Time) (*pgxpool.Pool, *store.Store) {
	t.Helper()
	ctx := t.Context()
	pool, err := store.OpenPool(ctx, pgtest.NewDatabase(t, cluster), store.PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st, err := store.New(ctx, pool, store.Config{Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return pool, st
}

func TestWholeLiveHourReadsEveryRowOfTheHourWithItsVersionAndLatestReading(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 11, 27, 12, 30, 0, 0, time.UTC)
	pool, st := shardStore(t, now)
	hour := now.Truncate(time.Hour)
	empty, rows, err := WholeLiveHour(ctx, pool, hour, func(b []byte) string { return string(b) })
	if err != nil || empty != 0 || len(rows.Vehicles)+len(rows.Meters) != 0 {
		t.Fatalf("an hour without readings: version %d, %d rows, %v; want 0, none", empty, len(rows.Vehicles)+len(rows.Meters), err)
	}
	last := hour.Add(17*time.Minute + 123*time.Microsecond)
	if _, err := st.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{
			{MeterId: "m-é", TimestampMicros: hour.Add(time.Minute).UnixMicro(), MwhConsumedAc: 1500000, Voltage: 230},
			{MeterId: "m-é", TimestampMicros: last.UnixMicro(), MwhConsumedAc: 2250000, Voltage: 231},
		},
		[]*telemetrypb.VehicleReading{
			{VehicleId: "v1", TimestampMicros: last.UnixMicro(), Soc: 50, MwhDeliveredDc: 3000000, BatteryTemp: 20, MeterId: "m-é"},
			{VehicleId: "v2", TimestampMicros: hour.Add(time.Minute).UnixMicro(), Soc: 50, MwhDeliveredDc: 1000000, BatteryTemp: 30},
			// Another hour: not read.
			{VehicleId: "v1", TimestampMicros: hour.Add(-time.Minute).UnixMicro(), Soc: 50, MwhDeliveredDc: 9000000, BatteryTemp: 20, MeterId: "m-é"},
		}); err != nil {
		t.Fatal(err)
	}
	// A row written before last_ts was kept: its latest reading is unknown.
	if _, err := pool.Exec(ctx, "UPDATE vehicle_hourly SET last_ts = NULL WHERE vehicle_id = 'v2' AND hour = $1", hour); err != nil {
		t.Fatal(err)
	}
	var want int64
	if err := pool.QueryRow(ctx, "SELECT version FROM rollup_hours WHERE hour = $1", hour).Scan(&want); err != nil {
		t.Fatal(err)
	}
	interned := 0
	version, rows, err := WholeLiveHour(ctx, pool, hour, func(b []byte) string { interned++; return string(b) })
	if err != nil || version != want {
		t.Fatalf("version %d, %v; want %d", version, err, want)
	}
	if len(rows.Meters) != 1 || len(rows.Vehicles) != 2 || interned != 1+2*2 {
		t.Fatalf("%d meter and %d vehicle rows, %d ids interned; want 1, 2 and 5", len(rows.Meters), len(rows.Vehicles), interned)
	}
	if m := rows.Meters[0]; m.VehicleID != "" || m.MeterID != "m-é" || m.E != 3_750_000 || m.X2 != 461 || m.Readings != 2 || !m.Last.Equal(last) {
		t.Errorf("meter row %+v", m)
	}
	for _, v := range rows.Vehicles {
		switch v.VehicleID {
		case "v1":
			if v.MeterID != "m-é" || v.E != 3_000_000 || v.X2 != 20 || v.Readings != 1 || !v.Last.Equal(last) {
				t.Errorf("v1 row %+v", v)
			}
		case "v2":
			if v.MeterID != "" || v.E != 1_000_000 || !v.Last.IsZero() {
				t.Errorf("v2 row %+v, want no meter and an unknown latest reading", v)
			}
		default:
			t.Errorf("row of %q", v.VehicleID)
		}
	}
}

func TestLiveHourLeavesOutTheRowsOfAnHourHeldAtItsVersion(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 11, 27, 12, 30, 0, 0, time.UTC)
	pool, st := shardStore(t, now)
	hour := now.Truncate(time.Hour)
	if _, err := st.WriteBatch(ctx,
		[]*telemetrypb.MeterReading{{MeterId: "m1", TimestampMicros: hour.Add(time.Minute).UnixMicro(), MwhConsumedAc: 1000000, Voltage: 230}},
		[]*telemetrypb.VehicleReading{{VehicleId: "v1", TimestampMicros: hour.Add(time.Minute).UnixMicro(), Soc: 50, MwhDeliveredDc: 1000000, BatteryTemp: 20, MeterId: "m1"}}); err != nil {
		t.Fatal(err)
	}
	hours := window.Range{From: hour.Add(-24 * time.Hour), To: hour.Add(time.Hour)}
	read := func(known int64) *LiveRollups {
		t.Helper()
		lr, err := LiveHour(ctx, pool, hours, hour, known, []string{"v1"}, []string{"m1"})
		if err != nil {
			t.Fatal(err)
		}
		return lr
	}
	all := read(-1)
	current := all.Versions[hour]
	if current == 0 || len(all.Vehicles) != 1 || len(all.Meters) != 1 {
		t.Fatalf("with nothing held: version %d, %d vehicle and %d meter rows; want a version and 1 and 1", current, len(all.Vehicles), len(all.Meters))
	}
	if held := read(current); held.Versions[hour] != current || len(held.Vehicles)+len(held.Meters) != 0 {
		t.Errorf("with the hour held at its version: version %d, %d rows; want %d and none", held.Versions[hour], len(held.Vehicles)+len(held.Meters), current)
	}
	if stale := read(current - 1); len(stale.Vehicles) != 1 || len(stale.Meters) != 1 {
		t.Errorf("with the hour held at another version: %d vehicle and %d meter rows, want 1 and 1", len(stale.Vehicles), len(stale.Meters))
	}
}
