package hourcache

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
)

// TestTheSameRowsGiveTheSameSumsWhateverTheirOrder reads the same hours twice, with the rows
// and the device ids in different orders (as two heap scans or two services may see them):
// energy is whole mWh, so the sums and shares are equal whatever the order.
func TestTheSameRowsGiveTheSameSumsWhateverTheirOrder(t *testing.T) {
	from := time.Date(2026, 11, 19, 12, 0, 0, 0, time.UTC)
	const vehicles, meters = 60, 7
	read := func(seed uint64) query.AlertSums {
		rng := rand.New(rand.NewPCG(seed, 1))
		rs := &query.Rollups{Names: []string{""}}
		id := map[string]int32{}
		name := func(s string) int32 {
			if i, ok := id[s]; ok {
				return i
			}
			id[s] = int32(len(rs.Names))
			rs.Names = append(rs.Names, s)
			return id[s]
		}
		for _, k := range rng.Perm(vehicles + meters) { // ids interned in the seed's order
			if k < vehicles {
				name(fmt.Sprintf("EV-%02d", k))
			} else {
				name(fmt.Sprintf("meter-%d", k-vehicles))
			}
		}
		for h := range 3 {
			at := from.Add(time.Duration(h) * time.Hour)
			rs.Versions = append(rs.Versions, query.HourVersion{Hour: at, Version: int64(1 + h)})
			hr := query.HourRollups{Hour: at, Version: int64(1 + h)}
			for _, m := range rng.Perm(meters) {
				hr.Meters.Append(query.MeterAC{Meter: name(fmt.Sprintf("meter-%d", m)), Readings: 60, AC: 100_000 + 370_001*int64(m)})
			}
			// Several vehicles to a meter, shares that do not divide evenly, and some vehicles on
			// two meters in the hour; rows in the seed's order.
			var rows []query.VehicleDC
			for v := range vehicles {
				rows = append(rows, query.VehicleDC{Vehicle: name(fmt.Sprintf("EV-%02d", v)), Meter: name(fmt.Sprintf("meter-%d", v%meters)), Readings: 30, DC: 33_333 * int64(v+h+1)})
				if v%11 == 0 {
					rows = append(rows, query.VehicleDC{Vehicle: name(fmt.Sprintf("EV-%02d", v)), Meter: name(fmt.Sprintf("meter-%d", (v+1)%meters)), Readings: 30, DC: 233_333})
				}
			}
			for _, k := range rng.Perm(len(rows)) {
				hr.Vehicles.Append(rows[k])
			}
			rs.Changed = append(rs.Changed, hr)
		}
		c := New(Config{})
		return c.sum(c.store(rs, nil))
	}
	key := func(s query.AlertSums) map[string][2]int64 {
		out := map[string][2]int64{}
		for _, v := range s.VehicleMeters {
			out[v.VehicleID+"/"+v.MeterID] = [2]int64{v.AC, v.DC}
		}
		return out
	}
	a, b := key(read(1)), key(read(2))
	if len(a) != vehicles+6 || len(a) != len(b) {
		t.Fatalf("%d and %d (vehicle, meter) pairs, want %d", len(a), len(b), vehicles+6)
	}
	for k, x := range a {
		if b[k] != x {
			t.Errorf("%s: %v in one order, %v in the other", k, x, b[k])
		}
	}
}
