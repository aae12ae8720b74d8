package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// BenchmarkWriteBatch writes batches of 5,000 new readings (half meters, half vehicles, from
// 2,500 devices of each kind, one reading per device a minute) with stock durability, and
// reports rows per second.
func BenchmarkWriteBatch(b *testing.B) {
	const perKind = 2500
	pool := migratedPool(b)
	start := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Minute)
	s := newStore(b, pool, start)
	if _, err := s.EnsurePartitions(b.Context(), start, start.AddDate(0, 0, 1), start.AddDate(0, 0, 2)); err != nil {
		b.Fatal(err)
	}
	meterIDs, vehicleIDs := make([]string, perKind), make([]string, perKind)
	for i := range perKind {
		meterIDs[i], vehicleIDs[i] = fmt.Sprintf("meter-%05d", i), fmt.Sprintf("EV-%05d", i)
	}
	ms := make([]*telemetrypb.MeterReading, perKind)
	vs := make([]*telemetrypb.VehicleReading, perKind)
	i := 0
	for ; b.Loop(); i++ {
		ts := start.Add(time.Duration(i) * time.Minute)
		for j := range perKind {
			ms[j] = meter(meterIDs[j], ts, 0.25, 230)
			vs[j] = vehicle(vehicleIDs[j], ts, 50, 0.2, 30, meterIDs[j])
		}
		res, err := s.WriteBatch(b.Context(), ms, vs)
		if err != nil {
			b.Fatal(err)
		}
		if res.Meters.Inserted != perKind || res.Vehicles.Inserted != perKind {
			b.Fatalf("batch %d inserted %+v", i, res)
		}
	}
	b.ReportMetric(float64(2*perKind*i)/b.Elapsed().Seconds(), "rows/s")
}
