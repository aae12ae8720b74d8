package shard

import (
	"context"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// sealed reports whether exactly the hours want are packed, each at its current version.
func sealed(t *testing.T, e *env, want ...time.Time) bool {
	t.Helper()
	var n, current int
	err := e.pool.QueryRow(context.Background(), `
		SELECT count(*), count(*) FILTER (WHERE s.version = r.version AND s.hour = ANY($1))
		  FROM rollup_sealed s LEFT JOIN rollup_hours r USING (hour)`, want).Scan(&n, &current)
	if err != nil {
		t.Fatal(err)
	}
	return n == len(want) && current == len(want)
}

func TestIngesterPacksSettledHoursAndPacksAgainAHourALateReadingChanges(t *testing.T) {
	e := newEnv(t, pgtest.NewDatabase(t, cluster))
	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	reading := func(ts time.Time, kwh float64) *telemetrypb.ReadingBatch {
		return &telemetrypb.ReadingBatch{
			Meters:   []*telemetrypb.MeterReading{{MeterId: "meter-1", MwhConsumedAc: telemetry.MWhFromKWh(kwh), Voltage: 230, TimestampMicros: ts.UnixMicro()}},
			Vehicles: []*telemetrypb.VehicleReading{{VehicleId: "EV-1", Soc: 50, MwhDeliveredDc: telemetry.MWhFromKWh(kwh), BatteryTemp: 30, TimestampMicros: ts.UnixMicro(), MeterId: "meter-1"}},
		}
	}
	// Two settled hours, the hour being written, and one from beyond the horizon.
	for _, ts := range []time.Time{hour.Add(-3*time.Hour + time.Minute), hour.Add(-2*time.Hour + time.Minute), now, hour.Add(-30 * time.Hour)} {
		publishBatch(t, e.js, reading(ts, 1))
	}
	cfg := e.config()
	cfg.SealInterval = 50 * time.Millisecond
	cfg.SealAfter = time.Minute
	cfg.SealHorizon = 24 * time.Hour
	cfg.Now = func() time.Time { return hour.Add(2 * time.Minute) } // the last hour settled too
	in, _ := start(t, cfg)

	settled := []time.Time{hour.Add(-3 * time.Hour), hour.Add(-2 * time.Hour)}
	eventually(t, 20*time.Second, "the settled hours in the horizon packed", func() bool { return sealed(t, e, settled...) })
	// A late reading changes the first hour: packed again, at its new version.
	publishBatch(t, e.js, reading(hour.Add(-3*time.Hour+30*time.Minute), 2))
	eventually(t, 20*time.Second, "the changed hour packed again", func() bool {
		var readings int
		if err := e.pool.QueryRow(t.Context(), "SELECT sum(readings) FROM meter_hourly WHERE hour = $1", settled[0]).Scan(&readings); err != nil {
			t.Fatal(err)
		}
		return readings == 2 && sealed(t, e, settled...)
	})
	if got := value(t, in.metrics.hoursSealed); got != 3 {
		t.Errorf("hours sealed metric = %v, want 3 (two hours, one of them twice)", got)
	}
}
