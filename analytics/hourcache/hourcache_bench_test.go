package hourcache

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
)

// coldRollups is what a cold read of hours hours of a shard with devices vehicles and as many
// meters (vehicle i charging from meter i) returns.
func coldRollups(from time.Time, hours, devices int) *query.Rollups {
	rs := &query.Rollups{Names: []string{""}}
	for d := range devices {
		rs.Names = append(rs.Names, fmt.Sprintf("meter-%05d", d), fmt.Sprintf("EV-%05d", d))
	}
	for h := range hours {
		at := from.Add(time.Duration(h) * time.Hour)
		rs.Versions = append(rs.Versions, query.HourVersion{Hour: at, Version: int64(1000 + h)})
		hr := query.HourRollups{Hour: at, Version: int64(1000 + h)}
		// In the order a heap scan returns them, not the ids'.
		for k := range devices {
			d := (k * 7919) % devices
			meter, vehicle := int32(1+2*d), int32(2+2*d)
			hr.Meters.Append(query.MeterAC{Meter: meter, Readings: 60, AC: 1_500_000, VoltageSum: 13800})
			hr.Vehicles.Append(query.VehicleDC{Vehicle: vehicle, Meter: meter, Readings: 60, DC: 1_250_000, TempSum: 1800})
		}
		rs.Changed = append(rs.Changed, hr)
	}
	return rs
}

// BenchmarkStoreColdHours measures building and keeping the hours of a cold read of one
// shard at the size of the analytics benchmark (5,000 vehicles and 5,000 meters, 24 hours),
// then summing them for the alert question.
func BenchmarkStoreColdHours(b *testing.B) {
	from := time.Date(2026, 11, 19, 12, 0, 0, 0, time.UTC)
	const hours, devices = 24, 5000
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		rs := coldRollups(from, hours, devices)
		c := New(Config{MaxBytes: 1 << 30})
		b.StartTimer()
		use := c.store(rs, nil)
		if len(use) != hours {
			b.Fatalf("%d hours kept", len(use))
		}
		if s := c.sum(use); len(s.VehicleMeters) != devices {
			b.Fatalf("%d pairs summed", len(s.VehicleMeters))
		}
	}
}
