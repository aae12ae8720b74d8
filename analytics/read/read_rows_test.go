package read

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHourWithEqualsAnHourBuiltAnew checks that a held hour with changed rows applied answers
// as an hour built from all its rows at once, whether the changes only replace rows (the
// copy keeps the indexes) or add devices and attributions (built anew), and that the hour
// held before is left as it was: questions may be reading it.
func TestHourWithEqualsAnHourBuiltAnew(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	meter := func(n int) string { return fmt.Sprintf("m-%d", rng.IntN(n)) }
	for round := range 300 {
		devices := 2 + rng.IntN(30)
		// rollups adds rows of devices drawn from the first ids.
		rollups := func(into rowsOf, meters, vehicles, ids int) {
			for range meters {
				m := MeterRow{Meter: meter(ids), AC: rng.Int64N(1e6), VoltageSum: float64(rng.IntN(1000)), Readings: int32(1 + rng.IntN(60)), Last: rng.Int64N(1e9)}
				into.meters[m.Meter] = m
			}
			for range vehicles {
				v := VehicleRow{Vehicle: fmt.Sprintf("v-%d", rng.IntN(ids)), DC: rng.Int64N(1e6), Readings: int32(1 + rng.IntN(60)), Last: rng.Int64N(1e9)}
				if rng.IntN(4) > 0 {
					v.Meter = meter(ids)
				}
				into.vehicles[[2]string{v.Vehicle, v.Meter}] = v
			}
		}
		rows := newRows()
		rollups(rows, devices, devices, devices)
		held := newHour(at, 1, slices.Collect(maps.Values(rows.meters)), slices.Collect(maps.Values(rows.vehicles)))
		before := snapshotOf(held)

		// Changes: later rows of devices held, and in one round in three rows of devices or
		// attributions new to the hour.
		changed := newRows()
		for _, m := range held.Meters {
			if rng.IntN(3) == 0 {
				m.AC, m.Readings, m.Last = m.AC+rng.Int64N(1000), m.Readings+1, m.Last+1
				changed.meters[m.Meter] = m
			}
		}
		for _, v := range held.Vehicles {
			if rng.IntN(3) == 0 {
				v.DC, v.Readings, v.Last = v.DC+rng.Int64N(1000), v.Readings+1, v.Last+1
				changed.vehicles[[2]string{v.Vehicle, v.Meter}] = v
			}
		}
		if round%3 == 0 {
			rollups(changed, 1+rng.IntN(3), 1+rng.IntN(3), devices+1+rng.IntN(3))
		}
		got := held.with(2, slices.Collect(maps.Values(changed.meters)), slices.Collect(maps.Values(changed.vehicles)))

		all := snapshotOf(held)
		maps.Copy(all.meters, changed.meters)
		maps.Copy(all.vehicles, changed.vehicles)
		want := newHour(at, 2, slices.Collect(maps.Values(all.meters)), slices.Collect(maps.Values(all.vehicles)))
		if !sameHour(got, want) {
			t.Fatalf("round %d: with gave\n%+v\n%+v\nbuilt anew\n%+v\n%+v", round, got.Meters, got.Vehicles, want.Meters, want.Vehicles)
		}
		if after := snapshotOf(held); !maps.Equal(before.meters, after.meters) || !maps.Equal(before.vehicles, after.vehicles) {
			t.Fatalf("round %d: with changed the hour held", round)
		}
	}
}

type rowsOf struct {
	meters   map[string]MeterRow
	vehicles map[[2]string]VehicleRow
}

func newRows() rowsOf {
	return rowsOf{meters: map[string]MeterRow{}, vehicles: map[[2]string]VehicleRow{}}
}

func snapshotOf(h *Hour) rowsOf {
	r := newRows()
	for _, m := range h.Meters {
		r.meters[m.Meter] = m
	}
	for _, v := range h.Vehicles {
		r.vehicles[[2]string{v.Vehicle, v.Meter}] = v
	}
	return r
}

// sameHour compares rows, their order and every lookup questions make.
func sameHour(a, b *Hour) bool {
	if a.Version != b.Version || !slices.Equal(a.Meters, b.Meters) || !slices.Equal(a.Vehicles, b.Vehicles) {
		return false
	}
	for _, v := range a.Vehicles {
		if !slices.Equal(a.Vehicle(v.Vehicle), b.Vehicle(v.Vehicle)) {
			return false
		}
	}
	for _, m := range append(slices.Clone(a.Meters), MeterRow{Meter: "never"}) {
		var ra, rb []VehicleRow
		a.Attributed(m.Meter, func(v VehicleRow) { ra = append(ra, v) })
		b.Attributed(m.Meter, func(v VehicleRow) { rb = append(rb, v) })
		ma, ta, oa := a.MeterDC(m.Meter, "v-0")
		mb, tb, ob := b.MeterDC(m.Meter, "v-0")
		if !slices.Equal(ra, rb) || ma != mb || ta != tb || oa != ob {
			return false
		}
	}
	return true
}

// BenchmarkHourWith applies the rows a reload reads (changed) to a held hour of a fleet's
// devices: rows of devices the hour holds, or with one device new to it.
func BenchmarkHourWith(b *testing.B) {
	for _, devices := range []int{20_000, 200_000} {
		for _, changed := range []int{500, 5000} {
			for _, fresh := range []int{0, 1} {
				b.Run(fmt.Sprintf("devices=%d/changed=%d/new=%d", devices, changed, fresh), func(b *testing.B) {
					var ms []MeterRow
					var vs []VehicleRow
					for i := range devices / 2 {
						ms = append(ms, MeterRow{Meter: fmt.Sprintf("m-%d", i), AC: 1, Readings: 1, Last: 1})
						vs = append(vs, VehicleRow{Vehicle: fmt.Sprintf("v-%d", i), Meter: fmt.Sprintf("m-%d", i), DC: 1, Readings: 1, Last: 1})
					}
					h := newHour(time.Unix(0, 0), 1, ms, vs)
					var cm []MeterRow
					var cv []VehicleRow
					for i := range changed / 2 {
						id := i * 7 % (devices / 2)
						cm = append(cm, MeterRow{Meter: fmt.Sprintf("m-%d", id), AC: 2, Readings: 2, Last: 2})
						cv = append(cv, VehicleRow{Vehicle: fmt.Sprintf("v-%d", id), Meter: fmt.Sprintf("m-%d", id), DC: 2, Readings: 2, Last: 2})
					}
					if fresh > 0 {
						cm[0].Meter = "m-new"
					}
					for b.Loop() {
						h.with(2, slices.Clone(cm), slices.Clone(cv))
					}
				})
			}
		}
	}
}
