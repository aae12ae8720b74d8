package read

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// rawMeter is one raw meter reading; rawVehicle one raw vehicle reading. Energy is mWh,
// times Unix microseconds.
type rawMeter struct {
	meter   string
	ts, ac  int64
	voltage float64
}

type rawVehicle struct {
	vehicle, meter string
	ts, dc         int64
	temp           float64
}

// Raw is the raw readings of an hour of one shard (or of the devices of one question) at the
// hour's version, for the windows whose edges fall in it. Never changed once built.
type Raw struct {
	At      time.Time
	Version int64
	// meters by (meter, ts); vehicles by (vehicle, ts); byMeter indexes the vehicle readings
	// attributed to a meter by (meter, vehicle, ts).
	meters   []rawMeter
	vehicles []rawVehicle
	byMeter  []int32
	used     atomic.Int64 // as Hour.used
}

func newRaw(at time.Time, version int64, meters []rawMeter, vehicles []rawVehicle) *Raw {
	slices.SortFunc(meters, func(a, b rawMeter) int {
		return cmp.Or(strings.Compare(a.meter, b.meter), cmp.Compare(a.ts, b.ts))
	})
	slices.SortFunc(vehicles, func(a, b rawVehicle) int {
		return cmp.Or(strings.Compare(a.vehicle, b.vehicle), cmp.Compare(a.ts, b.ts))
	})
	r := &Raw{At: at, Version: version, meters: meters, vehicles: vehicles}
	for i, v := range vehicles {
		if v.meter != "" {
			r.byMeter = append(r.byMeter, int32(i))
		}
	}
	slices.SortStableFunc(r.byMeter, func(a, b int32) int { return strings.Compare(vehicles[a].meter, vehicles[b].meter) })
	return r
}

func (r *Raw) bytes() int64 {
	return int64(len(r.meters))*56 + int64(len(r.vehicles))*72 + int64(len(r.byMeter))*4 + 128
}

// edge sums the readings in [from, to) of a vehicle ("" for none) and of meters, with every
// vehicle's DC attributed to those meters, into the rows of that part of the hour.
func (r *Raw) edge(from, to time.Time, vehicle string, meters []string) *Hour {
	f, t := from.UnixMicro(), to.UnixMicro()
	in := func(ts int64) bool { return ts >= f && ts < t }
	var ms []MeterRow
	for _, m := range meters {
		i, _ := slices.BinarySearchFunc(r.meters, m, func(x rawMeter, m string) int { return strings.Compare(x.meter, m) })
		row := MeterRow{Meter: m}
		for ; i < len(r.meters) && r.meters[i].meter == m; i++ {
			if x := r.meters[i]; in(x.ts) {
				row.AC += x.ac
				row.VoltageSum += x.voltage
				row.Readings++
				row.Last = max(row.Last, x.ts)
			}
		}
		if row.Readings > 0 {
			ms = append(ms, row)
		}
	}
	sums := map[[2]string]*VehicleRow{}
	add := func(x rawVehicle) {
		if !in(x.ts) {
			return
		}
		k := [2]string{x.vehicle, x.meter}
		s := sums[k]
		if s == nil {
			s = &VehicleRow{Vehicle: x.vehicle, Meter: x.meter}
			sums[k] = s
		}
		s.DC += x.dc
		s.TempSum += x.temp
		s.Readings++
		s.Last = max(s.Last, x.ts)
	}
	if vehicle != "" {
		i, _ := slices.BinarySearchFunc(r.vehicles, vehicle, func(x rawVehicle, v string) int { return strings.Compare(x.vehicle, v) })
		for ; i < len(r.vehicles) && r.vehicles[i].vehicle == vehicle; i++ {
			add(r.vehicles[i])
		}
	}
	for _, m := range meters {
		i, _ := slices.BinarySearchFunc(r.byMeter, m, func(k int32, m string) int { return strings.Compare(r.vehicles[k].meter, m) })
		for ; i < len(r.byMeter) && r.vehicles[r.byMeter[i]].meter == m; i++ {
			if x := r.vehicles[r.byMeter[i]]; x.vehicle != vehicle { // the vehicle's own are in
				add(x)
			}
		}
	}
	vs := make([]VehicleRow, 0, len(sums))
	for _, s := range sums {
		vs = append(vs, *s)
	}
	return newHour(window.FloorHour(from), r.Version, ms, vs)
}
