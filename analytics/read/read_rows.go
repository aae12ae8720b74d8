// Package read is the analytics service's read path on one shard: it keeps the shard's
// recent hours in memory, current by the ingesters' commit notices and a periodic poll, and
// answers from memory, or else from rows read from Postgres for that question alone; the same
// code turns rows into the answer's parts either way, so both answer alike.
//
// An hour's data is its rollup rows (meter_hourly, vehicle_hourly): whole hours of a window
// come from them. The partial first and last hours of a window come from raw history (an Hour
// with a row per reading) summed over the window's part of the hour, or, for the hour being
// written when every row involved ends before the window does, from its rollup rows.
package read

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// MeterRow is a meter's consumption in an hour (or the window's part of it). Energy is mWh.
type MeterRow struct {
	Meter      string
	AC         int64
	VoltageSum float64
	Readings   int32
	// Last is the Unix microseconds of the latest reading; 0 when unknown.
	Last int64
}

// VehicleRow is a vehicle's DC in an hour (or the window's part of it), attributed to Meter
// ("" for none).
type VehicleRow struct {
	Vehicle, Meter string
	DC             int64
	TempSum        float64
	Readings       int32
	Last           int64
}

// Hour is the rows of an hour (or a window's edge of it) of one shard at the hour's version:
// every row, or those one question needs. Never changed once built.
type Hour struct {
	At      time.Time
	Version int64
	// Meters are sorted by meter; Vehicles by (vehicle, meter).
	Meters   []MeterRow
	Vehicles []VehicleRow
	// byMeter indexes Vehicles by (meter, vehicle), for the DC attributed to a meter.
	byMeter []int32
	runs    map[string]run
	// used is the Unix nanoseconds of the last question that used the hour held, for evicting
	// the least recently used; questions set it under the shard's read lock.
	used atomic.Int64
}

// run is where a device's rows are, each [from, to): in Meters, Vehicles and byMeter.
type run struct{ meters, vehicles, attributed [2]int32 }

// newHour sorts and indexes rows read in any order; rows of the same device (raw readings)
// by Last, so that they add up in time order.
func newHour(at time.Time, version int64, meters []MeterRow, vehicles []VehicleRow) *Hour {
	slices.SortFunc(meters, func(a, b MeterRow) int {
		return cmp.Or(strings.Compare(a.Meter, b.Meter), cmp.Compare(a.Last, b.Last))
	})
	slices.SortFunc(vehicles, func(a, b VehicleRow) int {
		return cmp.Or(strings.Compare(a.Vehicle, b.Vehicle), strings.Compare(a.Meter, b.Meter), cmp.Compare(a.Last, b.Last))
	})
	h := &Hour{At: at, Version: version, Meters: meters, Vehicles: vehicles}
	for i, v := range vehicles {
		if v.Meter != "" {
			h.byMeter = append(h.byMeter, int32(i))
		}
	}
	slices.SortStableFunc(h.byMeter, func(a, b int32) int {
		return cmp.Or(strings.Compare(vehicles[a].Meter, vehicles[b].Meter), strings.Compare(vehicles[a].Vehicle, vehicles[b].Vehicle))
	})
	h.runs = make(map[string]run, len(meters)+len(vehicles)/2)
	h.index(len(meters), func(i int) string { return meters[i].Meter }, func(r *run) *[2]int32 { return &r.meters })
	h.index(len(vehicles), func(i int) string { return vehicles[i].Vehicle }, func(r *run) *[2]int32 { return &r.vehicles })
	h.index(len(h.byMeter), func(i int) string { return vehicles[h.byMeter[i]].Meter }, func(r *run) *[2]int32 { return &r.attributed })
	return h
}

// index records where the runs of n rows sorted by key are, in the part of run in picks.
func (h *Hour) index(n int, key func(int) string, in func(*run) *[2]int32) {
	r := new(run) // one for all rows: what in is given escapes to the heap
	for i := range n {
		*r = h.runs[key(i)]
		span := in(r)
		if span[1] == 0 { // the run's first row
			span[0] = int32(i)
		}
		span[1] = int32(i + 1)
		h.runs[key(i)] = *r
	}
}

// with returns h with rows replaced (by meter; by vehicle and meter) or added, at version v.
// A row of a device already in the hour takes its place in a copy that keeps h's order and
// indexes; a device new to the hour (or to a meter) builds the hour anew. It reuses the
// slices given.
func (h *Hour) with(v int64, meters []MeterRow, vehicles []VehicleRow) *Hour {
	ms, vs := slices.Clone(h.Meters), slices.Clone(h.Vehicles)
	meters = slices.DeleteFunc(meters, func(m MeterRow) bool {
		r := h.runs[m.Meter].meters // a rollup hour has one row a meter
		if r[1] > r[0] {
			ms[r[0]] = m
		}
		return r[1] > r[0]
	})
	vehicles = slices.DeleteFunc(vehicles, func(v VehicleRow) bool {
		r := h.runs[v.Vehicle].vehicles
		i := slices.IndexFunc(h.Vehicles[r[0]:r[1]], func(o VehicleRow) bool { return o.Meter == v.Meter })
		if i >= 0 {
			vs[int(r[0])+i] = v
		}
		return i >= 0
	})
	nh := &Hour{At: h.At, Version: v, Meters: ms, Vehicles: vs, byMeter: h.byMeter, runs: h.runs}
	if len(meters)+len(vehicles) > 0 {
		nh = newHour(h.At, v, append(ms, meters...), append(vs, vehicles...))
	}
	nh.used.Store(h.used.Load())
	return nh
}

// bytes estimates the memory h takes.
func (h *Hour) bytes() int64 {
	return int64(len(h.Meters))*56 + int64(len(h.Vehicles))*72 + int64(len(h.byMeter))*4 + int64(len(h.runs))*64 + 128
}

// Vehicle returns vehicle's rows, one per meter it was attributed to.
func (h *Hour) Vehicle(id string) []VehicleRow {
	r := h.runs[id].vehicles
	return h.Vehicles[r[0]:r[1]]
}

// Attributed calls fn with every row of DC attributed to meter.
func (h *Hour) Attributed(meter string, fn func(VehicleRow)) {
	r := h.runs[meter].attributed
	for _, k := range h.byMeter[r[0]:r[1]] {
		fn(h.Vehicles[k])
	}
}

// MeterDC is meter's row, the DC attributed to it in the hour (the total attribution.Share
// divides its AC by), and whether a vehicle other than vehicle drew some of it.
func (h *Hour) MeterDC(meter, vehicle string) (m MeterRow, total int64, others bool) {
	r := h.runs[meter]
	if r.meters[1] > r.meters[0] {
		m = h.Meters[r.meters[0]]
	}
	for _, k := range h.byMeter[r.attributed[0]:r.attributed[1]] {
		total += h.Vehicles[k].DC
		others = others || h.Vehicles[k].Vehicle != vehicle
	}
	return m, total, others
}

// endsBefore reports whether every row a question about vehicle and meters uses has its
// latest reading known and before end: then the rows sum exactly the readings before end.
func (h *Hour) endsBefore(vehicle string, meters []string, end time.Time) bool {
	e := end.UnixMicro()
	ms, vs := h.rows(vehicle, meters, func(last int64) bool { return last == 0 || last >= e })
	return len(ms)+len(vs) == 0
}

// MeterHour is a meter's AC in one hour.
type MeterHour struct {
	MeterID string
	Hour    time.Time
	AC      int64
}

// Of returns the rows of h a question needs: the vehicle's ("" for none), and the meters'
// with the DC of every vehicle attributed to them.
func (h *Hour) Of(vehicle string, meters []string) *Hour {
	ms, vs := h.rows(vehicle, meters, func(int64) bool { return true })
	return newHour(h.At, h.Version, ms, vs)
}

// edge sums the raw readings of h in [from, to) that a question about vehicle and meters
// uses (as Of) into the rows of that part of the hour.
func (h *Hour) edge(from, to time.Time, vehicle string, meters []string) *Hour {
	f, t := from.UnixMicro(), to.UnixMicro()
	ms, vs := h.rows(vehicle, meters, func(ts int64) bool { return ts >= f && ts < t })
	return newHour(window.FloorHour(from), h.Version, ms, vs)
}

// rows copies the rows of h that Of and edge select whose Last keep reports, a device's rows
// (raw readings follow each other in time order) added up into one; meters are each once.
func (h *Hour) rows(vehicle string, meters []string, keep func(last int64) bool) (ms []MeterRow, vs []VehicleRow) {
	addVehicle := func(v VehicleRow) {
		switch n := len(vs); {
		case !keep(v.Last):
		case n > 0 && vs[n-1].Vehicle == v.Vehicle && vs[n-1].Meter == v.Meter:
			vs[n-1] = vs[n-1].plus(v)
		default:
			vs = append(vs, v)
		}
	}
	for _, v := range h.Vehicle(vehicle) {
		addVehicle(v)
	}
	for _, m := range meters {
		in := h.runs[m].meters
		for _, r := range h.Meters[in[0]:in[1]] {
			switch n := len(ms); {
			case !keep(r.Last):
			case n > 0 && ms[n-1].Meter == r.Meter:
				ms[n-1] = ms[n-1].plus(r)
			default:
				ms = append(ms, r)
			}
		}
		h.Attributed(m, func(v VehicleRow) {
			if v.Vehicle != vehicle { // the vehicle's own are in
				addVehicle(v)
			}
		})
	}
	return ms, vs
}

// plus adds o's readings to m's.
func (m MeterRow) plus(o MeterRow) MeterRow {
	m.AC, m.VoltageSum, m.Readings, m.Last = m.AC+o.AC, m.VoltageSum+o.VoltageSum, m.Readings+o.Readings, max(m.Last, o.Last)
	return m
}

// plus adds o's readings to v's.
func (v VehicleRow) plus(o VehicleRow) VehicleRow {
	v.DC, v.TempSum, v.Readings, v.Last = v.DC+o.DC, v.TempSum+o.TempSum, v.Readings+o.Readings, max(v.Last, o.Last)
	return v
}

// sum adds rows up by meter and by (vehicle, meter) into an hour, in the order given.
func sum(at time.Time, version int64, meters []MeterRow, vehicles []VehicleRow) *Hour {
	ms, vs := map[string]MeterRow{}, map[[2]string]VehicleRow{}
	for _, m := range meters {
		if s, ok := ms[m.Meter]; ok {
			m = s.plus(m)
		}
		ms[m.Meter] = m
	}
	for _, v := range vehicles {
		k := [2]string{v.Vehicle, v.Meter}
		if s, ok := vs[k]; ok {
			v = s.plus(v)
		}
		vs[k] = v
	}
	return newHour(at, version, slices.Collect(maps.Values(ms)), slices.Collect(maps.Values(vs)))
}

// Merge adds up the parts of the same hour (split at a cutover, or on each shard a vehicle was
// placed on) row by row, as if one shard held it, each part first cut to of(part) when of is
// given; an hour with one part is passed as it is. Hours come out in time order.
func Merge(parts []*Hour, of func(*Hour) *Hour) []*Hour {
	byHour := map[time.Time][]*Hour{}
	for _, p := range parts {
		byHour[p.At] = append(byHour[p.At], p)
	}
	out := make([]*Hour, 0, len(byHour))
	for _, at := range slices.SortedFunc(maps.Keys(byHour), time.Time.Compare) {
		if hs := byHour[at]; len(hs) == 1 {
			out = append(out, hs[0])
			continue
		}
		var meters []MeterRow
		var vehicles []VehicleRow
		for _, h := range byHour[at] {
			if of != nil {
				h = of(h)
			}
			meters, vehicles = append(meters, h.Meters...), append(vehicles, h.Vehicles...)
		}
		out = append(out, sum(at, 0, meters, vehicles))
	}
	return out
}
