package query

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// canonicalRollups is every changed hour's rows as sorted strings, with floats as their
// bits: two reads are equal only when every row and every bit is.
func canonicalRollups(rs *Rollups) map[time.Time][]string {
	out := map[time.Time][]string{}
	for _, h := range rs.Changed {
		var rows []string
		for _, m := range h.Meters.All() {
			rows = append(rows, fmt.Sprintf("m %q %d %x %x", rs.Names[m.Meter], m.Readings, m.AC, math.Float64bits(m.VoltageSum)))
		}
		for _, v := range h.Vehicles.All() {
			rows = append(rows, fmt.Sprintf("v %q %q %d %x %x", rs.Names[v.Vehicle], rs.Names[v.Meter], v.Readings, v.DC, math.Float64bits(v.TempSum)))
		}
		slices.Sort(rows)
		out[h.Hour] = rows
	}
	return out
}

func TestPackedHoursReadExactlyAsTheirRowsAndOnlyAtTheirVersion(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	pool, st := shardStore(t, now)
	// Six hours of 40 vehicles and 20 meters: ids of several bytes per character, vehicles
	// that change meters within an hour and some without one, a meter nobody charges from,
	// readings at any microsecond, values over many magnitudes.
	from := now.Add(-6 * time.Hour)
	hours := window.Range{From: from, To: now}
	rng := rand.New(rand.NewPCG(3, 5))
	meterID := func(i int) string { return fmt.Sprintf("Zähler-%02d-ß", i) }
	var meters []*telemetrypb.MeterReading
	var vehicles []*telemetrypb.VehicleReading
	for ts := from; ts.Before(now); ts = ts.Add(3*time.Minute + 17*time.Microsecond) {
		for m := range 20 {
			meters = append(meters, &telemetrypb.MeterReading{MeterId: meterID(m), TimestampMicros: ts.UnixMicro(),
				MwhConsumedAc: telemetry.MWhFromKWh(rng.ExpFloat64() * math.Pow(10, float64(rng.IntN(6)-3))), Voltage: 200 + 60*rng.Float64()})
		}
		for v := range 40 {
			meter := meterID((v + ts.Minute()/20) % 19)
			if v%9 == 0 {
				meter = ""
			}
			vehicles = append(vehicles, &telemetrypb.VehicleReading{VehicleId: fmt.Sprintf("EV-€%03d", v), TimestampMicros: ts.UnixMicro(),
				Soc: 50, MwhDeliveredDc: telemetry.MWhFromKWh(rng.ExpFloat64()), BatteryTemp: 10 + 30*rng.Float64(), MeterId: meter})
		}
	}
	if _, err := st.WriteBatch(ctx, meters, vehicles); err != nil {
		t.Fatal(err)
	}

	read := func() *Rollups {
		t.Helper()
		rs, err := ChangedHours(ctx, pool, hours, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	asRows := canonicalRollups(read())
	if len(asRows) != 6 {
		t.Fatalf("%d hours read, want 6", len(asRows))
	}
	if sealed, err := st.SealHours(ctx, from, now, 24); err != nil || len(sealed) != 6 {
		t.Fatalf("packed %v, %v; want the 6 hours", sealed, err)
	}
	assertEqual := func(what string, got map[time.Time][]string, skip time.Time) {
		t.Helper()
		for h, want := range asRows {
			if h.Equal(skip) {
				continue
			}
			if !slices.Equal(got[h], want) {
				t.Errorf("%s: hour %s has %d rows, want %d equal to the rows' (first differing: %v)", what, h, len(got[h]), len(want), firstDiff(got[h], want))
			}
		}
	}
	assertEqual("packed", canonicalRollups(read()), time.Time{})

	// The rows go behind the versions' back: the hours still read the same, from their packs.
	if _, err := pool.Exec(ctx, "DELETE FROM meter_hourly; DELETE FROM vehicle_hourly"); err != nil {
		t.Fatal(err)
	}
	assertEqual("packed, rows deleted", canonicalRollups(read()), time.Time{})

	// An hour whose version moves is read from its rows (gone): its pack is not used.
	stale := from.Add(2 * time.Hour)
	if _, err := pool.Exec(ctx, "UPDATE rollup_hours SET version = nextval('rollup_version') WHERE hour = $1", stale); err != nil {
		t.Fatal(err)
	}
	got := canonicalRollups(read())
	if len(got[stale]) != 0 {
		t.Errorf("hour %s at a new version read %d rows from a pack of its old one", stale, len(got[stale]))
	}
	assertEqual("packed, one hour stale", got, stale)

	// Known hours are not read at all, packed or not.
	versions, err := HourVersions(ctx, pool, hours.From, hours.To)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := ChangedHours(ctx, pool, hours, versions); err != nil || len(rs.Changed) != 0 {
		t.Errorf("with every version known, %d hours read, %v", len(rs.Changed), err)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q against %q", a[i], b[i])
		}
	}
	return "one is longer"
}

func TestAPackedValueCutShortIsAnErrorNotFewerRows(t *testing.T) {
	be := binary.BigEndian
	var meters, vehicles []byte
	var meterEnds, vehicleEnds []int
	for i := range 3 {
		id := fmt.Sprintf("m-%d-é", i)
		meters = append(be.AppendUint32(meters, uint32(len(id))), id...)
		meters = be.AppendUint64(meters, uint64(i)*1_000_000+500_000)
		meters = be.AppendUint64(meters, math.Float64bits(230))
		meters = be.AppendUint32(meters, uint32(i+1))
		meterEnds = append(meterEnds, len(meters))
		for _, s := range []string{fmt.Sprintf("v-%d", i), id} {
			vehicles = append(be.AppendUint32(vehicles, uint32(len(s))), s...)
		}
		vehicles = be.AppendUint64(vehicles, uint64(i)*1_000_000)
		vehicles = be.AppendUint64(vehicles, math.Float64bits(20))
		vehicles = be.AppendUint32(vehicles, 1)
		vehicleEnds = append(vehicleEnds, len(vehicles))
	}
	from := time.Date(2026, 11, 19, 12, 0, 0, 0, time.UTC)
	hr := window.Range{From: from, To: from.Add(time.Hour)}

	r := newRollupReader(hr)
	h := &HourRollups{Hour: from}
	if err := errors.Join(r.packedMeters(h, meters), r.packedVehicles(h, vehicles)); err != nil {
		t.Fatal(err)
	}
	if h.Meters.Len() != 3 || h.Vehicles.Len() != 3 {
		t.Fatalf("%d meter and %d vehicle rows, want 3 and 3", h.Meters.Len(), h.Vehicles.Len())
	}
	var last MeterAC
	for _, m := range h.Meters.All() {
		last = m
	}
	if r.out.Names[last.Meter] != "m-2-é" || last.AC != 2_500_000 || last.VoltageSum != 230 || last.Readings != 3 {
		t.Errorf("last meter row %+v (%q)", last, r.out.Names[last.Meter])
	}
	// A cut between rows is a shorter value, which nothing tells apart; any other is an error.
	for cut := 1; cut < len(meters); cut++ {
		if slices.Contains(meterEnds, cut) {
			continue
		}
		if err := newRollupReader(hr).packedMeters(&HourRollups{Hour: from}, meters[:cut]); err == nil {
			t.Errorf("meters cut at byte %d of %d: no error", cut, len(meters))
		}
	}
	for cut := 1; cut < len(vehicles); cut++ {
		if slices.Contains(vehicleEnds, cut) {
			continue
		}
		if err := newRollupReader(hr).packedVehicles(&HourRollups{Hour: from}, vehicles[:cut]); err == nil {
			t.Errorf("vehicles cut at byte %d of %d: no error", cut, len(vehicles))
		}
	}
	if err := newRollupReader(hr).packedMeters(&HourRollups{Hour: from}, be.AppendUint32(nil, math.MaxUint32)); err == nil {
		t.Error("a negative id length: no error")
	}
}
