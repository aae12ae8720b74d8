package hourcache

import (
	"context"
	"slices"
	"time"
	"unsafe"

	"github.com/fleetingest/fleetingest/analytics/query"
)

// rawHour is one hour of a shard's raw history at one version, for the partial edge hours
// of per-vehicle windows. It is never changed once built.
type rawHour struct {
	at      time.Time
	version int64
	used    uint64
	bytes   int64
	// vehicles and meters are the readings by device then time; vspans and mspans locate
	// each device's.
	vehicles       []rawVehicle
	meters         []rawMeter
	vspans, mspans []span
	// attributed holds, for each meter (aspans), the vehicles with a reading attributed to it
	// in the hour, in index order.
	attributed []int32
	aspans     []span
}

type rawVehicle struct {
	ts    int64 // Unix microseconds
	meter int32
	dc    int64 // mWh
	temp  float64
}

type rawMeter struct {
	ts      int64
	ac      int64 // mWh
	voltage float64
}

// loadRaw reads the hour's raw history from the shard and builds it.
func (c *Cache) loadRaw(ctx context.Context, db query.DBTX, at time.Time) (*rawHour, error) {
	type reading struct {
		device, meter string
		vehicle       bool
		ts            int64
		e             int64
		x2            float64
	}
	var rs []reading
	version, err := query.RawHour(ctx, db, at, func(r query.RawReading) {
		rs = append(rs, reading{device: r.DeviceID, meter: r.MeterID, vehicle: r.Vehicle, ts: r.TS.UnixMicro(), e: r.E, x2: r.X2})
	})
	if err != nil {
		return nil, err
	}
	type keyed struct {
		device, i int32
	}
	vs := make([]keyed, 0, len(rs))
	ms := make([]keyed, 0, len(rs)/2)
	meterOf := make([]int32, len(rs))
	c.mu.Lock()
	for i := range rs {
		r := &rs[i]
		k := keyed{device: c.id(r.device), i: int32(i)}
		if r.vehicle {
			meterOf[i] = c.id(r.meter)
			vs = append(vs, k)
		} else {
			ms = append(ms, k)
		}
	}
	c.mu.Unlock()
	byDeviceTime := func(a, b keyed) int {
		if a.device != b.device {
			return int(a.device) - int(b.device)
		}
		return cmpInt64(rs[a.i].ts, rs[b.i].ts)
	}
	slices.SortFunc(vs, byDeviceTime)
	slices.SortFunc(ms, byDeviceTime)

	h := &rawHour{at: at, version: version, vehicles: make([]rawVehicle, len(vs)), meters: make([]rawMeter, len(ms))}
	type pair struct{ meter, vehicle int32 }
	var pairs []pair
	for i, k := range vs {
		r, m := &rs[k.i], meterOf[k.i]
		h.vehicles[i] = rawVehicle{ts: r.ts, meter: m, dc: r.e, temp: r.x2}
		if m != 0 {
			pairs = append(pairs, pair{m, k.device})
		}
	}
	for i, k := range ms {
		r := &rs[k.i]
		h.meters[i] = rawMeter{ts: r.ts, ac: r.e, voltage: r.x2}
	}
	h.vspans = spansOf(len(vs), func(i int) int32 { return vs[i].device })
	h.mspans = spansOf(len(ms), func(i int) int32 { return ms[i].device })
	slices.SortFunc(pairs, func(a, b pair) int {
		if a.meter != b.meter {
			return int(a.meter) - int(b.meter)
		}
		return int(a.vehicle) - int(b.vehicle)
	})
	pairs = slices.Compact(pairs)
	h.attributed = make([]int32, len(pairs))
	for i, p := range pairs {
		h.attributed[i] = p.vehicle
	}
	h.aspans = spansOf(len(pairs), func(i int) int32 { return pairs[i].meter })
	h.bytes = int64(len(h.vehicles))*int64(unsafe.Sizeof(rawVehicle{})) + int64(len(h.meters))*int64(unsafe.Sizeof(rawMeter{})) +
		int64(len(h.vspans)+len(h.mspans)+len(h.aspans))*int64(unsafe.Sizeof(span{})) + int64(len(h.attributed))*4
	return h, nil
}

// spansOf groups n entries ordered by id(i) into spans.
func spansOf(n int, id func(i int) int32) []span {
	var out []span
	for i := 0; i < n; {
		j := i
		for j < n && id(j) == id(i) {
			j++
		}
		out = append(out, span{id: id(i), from: int32(i), to: int32(j)})
		i = j
	}
	return out
}

// between returns the part of a device's readings (ordered by time) in [from, to).
func between[T any](xs []T, ts func(T) int64, from, to int64) []T {
	lo, _ := slices.BinarySearchFunc(xs, from, func(x T, t int64) int { return cmpInt64(ts(x), t) })
	hi, _ := slices.BinarySearchFunc(xs, to, func(x T, t int64) int { return cmpInt64(ts(x), t) })
	return xs[lo:hi]
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
