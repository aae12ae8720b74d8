package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// Rollups is what ChangedHours read. Rows name devices by their index in Names.
type Rollups struct {
	// Versions has the version of every hour asked about, in time order (0: the hour has no
	// rollup rows).
	Versions []HourVersion
	// Changed has the rollup rows of every hour whose version is not the one known, in time
	// order, each at its version.
	Changed []HourRollups
	// Names are the device ids the rows refer to; Names[0] is "" (no meter).
	Names []string
}

// HourVersion is an hour and its version.
type HourVersion struct {
	Hour    time.Time
	Version int64
}

// HourRollups is one hour's rollup rows at the hour's version, in the order they were read.
type HourRollups struct {
	Hour     time.Time
	Version  int64
	Meters   Blocks[MeterAC]
	Vehicles Blocks[VehicleDC]
}

// MeterAC is a meter's row of meter_hourly.
type MeterAC struct {
	Meter      int32 // in Rollups.Names
	Readings   int32
	AC         int64 // mWh
	VoltageSum float64
}

// VehicleDC is a vehicle's row of vehicle_hourly: its DC attributed to a meter (0 for none).
type VehicleDC struct {
	Vehicle, Meter int32 // in Rollups.Names
	Readings       int32
	DC             int64 // mWh
	TempSum        float64
}

// Ranks gives each name its position among Names in byte order: ordering rows by the ranks
// of their ids orders them by the ids themselves.
func (r *Rollups) Ranks() []int32 {
	order := make([]int32, len(r.Names))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(r.Names[a], r.Names[b]) })
	ranks := make([]int32, len(r.Names))
	for pos, i := range order {
		ranks[i] = int32(pos)
	}
	return ranks
}

// changedHoursSQL reads, in one statement and so from one snapshot, the version of every
// hour in [$1, $2) and the rollup rows of the hours whose version is not the one the caller
// holds ($3 hours, $4 versions): an hour packed at its current version (rollup_sealed, see
// its migration) as its two packed values, any other as its rows. An hour without a version
// has no rollup rows. It is sent as a binary COPY with its values written in (see copyOut),
// and so planned for its hours: the range on hour lets Postgres scan the window's rows by
// index for the few hours that need them (the array is known only when the statement runs:
// none, one or all of the window's hours) rather than hash every row of the table to join
// them to the hours. Columns a row does not use are NULL, which Postgres sends as their
// length alone.
const changedHoursSQL = `
COPY (
WITH v AS MATERIALIZED (
       SELECT g.hour, coalesce(r.version, 0) AS version
         FROM generate_series($1, $2 - interval '1 hour', interval '1 hour') AS g(hour)
         LEFT JOIN rollup_hours r ON r.hour = g.hour),
     s AS MATERIALIZED (
       SELECT v.hour, v.version FROM v
         LEFT JOIN unnest($3, $4) AS k(hour, version) ON k.hour = v.hour
        WHERE v.version <> 0 AND k.version IS DISTINCT FROM v.version),
     p AS MATERIALIZED (
       SELECT p.hour, p.meters, p.vehicles
         FROM rollup_sealed p JOIN s ON s.hour = p.hour AND s.version = p.version),
     u AS MATERIALIZED (
       SELECT s.hour FROM s WHERE NOT EXISTS (SELECT FROM p WHERE p.hour = s.hour))
SELECT 0 AS kind, hour, version, NULL::text, NULL::text, NULL::int8, NULL::float8, NULL::int4, NULL::bytea FROM v
UNION ALL
SELECT 3, hour, NULL::int8, NULL::text, NULL::text, NULL::int8, NULL::float8, NULL::int4, meters FROM p
UNION ALL
SELECT 4, hour, NULL::int8, NULL::text, NULL::text, NULL::int8, NULL::float8, NULL::int4, vehicles FROM p
UNION ALL
SELECT 1, mh.hour, NULL::int8, mh.meter_id, NULL::text, mh.mwh_consumed_ac, mh.voltage_sum, mh.readings, NULL::bytea
  FROM meter_hourly mh
 WHERE mh.hour >= $1 AND mh.hour < $2 AND mh.hour = ANY (ARRAY(SELECT hour FROM u))
UNION ALL
SELECT 2, vh.hour, NULL::int8, vh.meter_id, vh.vehicle_id, vh.mwh_delivered_dc, vh.battery_temp_sum, vh.readings, NULL::bytea
  FROM vehicle_hourly vh
 WHERE vh.hour >= $1 AND vh.hour < $2 AND vh.hour = ANY (ARRAY(SELECT hour FROM u))
) TO STDOUT (FORMAT binary)`

// ChangedHours reads the version of every whole hour in hours and, for each hour whose
// version differs from known[hour], its rollup rows. Rows and versions come from one
// snapshot, so an hour's rows are exactly the ones of its version.
func ChangedHours(ctx context.Context, db DBTX, hours window.Range, known map[time.Time]int64) (*Rollups, error) {
	hours = window.Range{From: hours.From.UTC(), To: hours.To.UTC()}
	n := int(hours.To.Sub(hours.From) / time.Hour)
	if n <= 0 {
		return &Rollups{Names: []string{""}}, nil
	}
	kh := make([]time.Time, 0, len(known))
	kv := make([]int64, 0, len(known))
	for h, v := range known {
		kh, kv = append(kh, h), append(kv, v)
	}
	sql := strings.NewReplacer(
		"$1", timeLiteral(hours.From), "$2", timeLiteral(hours.To),
		"$3", timeArrayLiteral(kh), "$4", int64ArrayLiteral(kv),
	).Replace(changedHoursSQL)

	r := newRollupReader(hours)
	if err := copyOut(ctx, db, sql, r.row); err != nil {
		return nil, fmt.Errorf("reading the rollups of %s: %w", hours, err)
	}
	return r.result(known)
}

// rollupReader decodes the rows of changedHoursSQL for the whole hours of hours.
type rollupReader struct {
	hours  window.Range
	fromUS int64 // hours.From in the microseconds Postgres counts from
	out    *Rollups
	ids    map[string]int32 // index in out.Names
	// byHour holds the rows of each hour, by its offset from hours.From; rows of the branches
	// may arrive interleaved (a parallel plan).
	byHour []*HourRollups
}

const hourUS = int64(time.Hour / time.Microsecond)

func newRollupReader(hours window.Range) *rollupReader {
	n := int(hours.To.Sub(hours.From) / time.Hour)
	return &rollupReader{
		hours:  hours,
		fromUS: hours.From.Sub(postgresEpoch).Microseconds(),
		out:    &Rollups{Versions: make([]HourVersion, 0, n), Names: []string{""}},
		ids:    map[string]int32{"": 0},
		byHour: make([]*HourRollups, n),
	}
}

// id is the index of a device id in out.Names, added on first sight.
func (r *rollupReader) id(b []byte) int32 {
	if i, ok := r.ids[string(b)]; ok {
		return i
	}
	s := string(b)
	i := int32(len(r.out.Names))
	r.ids[s] = i
	r.out.Names = append(r.out.Names, s)
	return i
}

// hourOf is the hour of a row from its binary timestamp.
func (r *rollupReader) hourOf(b []byte) (*HourRollups, error) {
	us, err := copyInt64(b)
	if err != nil {
		return nil, err
	}
	d := us - r.fromUS
	i := int(d / hourUS)
	if d < 0 || d%hourUS != 0 || i >= len(r.byHour) {
		t, _ := copyTime(b)
		return nil, fmt.Errorf("rollup row of hour %s outside %s", t, r.hours)
	}
	if r.byHour[i] == nil {
		r.byHour[i] = &HourRollups{Hour: r.hours.From.Add(time.Duration(i) * time.Hour)}
	}
	return r.byHour[i], nil
}

// row decodes one row: an hour's version (kind 0), a meter_hourly row (1), a vehicle_hourly
// row (2), or an hour's packed meter_hourly (3) or vehicle_hourly (4) rows.
func (r *rollupReader) row(f [][]byte) error {
	if len(f) != 9 {
		return fmt.Errorf("rollup row of %d columns", len(f))
	}
	kind, err := copyInt32(f[0])
	if err != nil {
		return err
	}
	switch kind {
	case 0:
		ts, err1 := copyTime(f[1])
		v, err2 := copyInt64(f[2])
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		r.out.Versions = append(r.out.Versions, HourVersion{Hour: ts, Version: v})
		return nil
	case 1, 2, 3, 4:
	default:
		return fmt.Errorf("rollup row of kind %d", kind)
	}
	h, err := r.hourOf(f[1])
	if err != nil {
		return err
	}
	switch kind {
	case 3:
		return r.packedMeters(h, f[8])
	case 4:
		return r.packedVehicles(h, f[8])
	}
	x1, err1 := copyInt64(f[5])
	x2, err2 := copyFloat64(f[6])
	readings, err3 := copyInt32(f[7])
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	if kind == 1 {
		h.Meters.Append(MeterAC{Meter: r.id(f[3]), Readings: readings, AC: x1, VoltageSum: x2})
	} else {
		h.Vehicles.Append(VehicleDC{Vehicle: r.id(f[4]), Meter: r.id(f[3]), Readings: readings, DC: x1, TempSum: x2})
	}
	return nil
}

// result checks what was read against the versions known before and returns it: every
// hour's version, and the rows of each hour whose version changed.
func (r *rollupReader) result(known map[time.Time]int64) (*Rollups, error) {
	out := r.out
	slices.SortFunc(out.Versions, func(a, b HourVersion) int { return a.Hour.Compare(b.Hour) })
	if len(out.Versions) != len(r.byHour) {
		return nil, fmt.Errorf("reading the rollups of %s: %d hour versions for %d hours", r.hours, len(out.Versions), len(r.byHour))
	}
	for i, v := range out.Versions {
		h := r.byHour[i]
		changed := v.Version != 0 && v.Version != known[v.Hour]
		switch {
		case changed && h == nil:
			// A changed hour whose rows are all gone would have no version.
			h = &HourRollups{Hour: v.Hour}
			fallthrough
		case changed:
			h.Version = v.Version
			out.Changed = append(out.Changed, *h)
		case h != nil:
			return nil, fmt.Errorf("reading the rollups of %s: rows of hour %s, whose version %d did not change", r.hours, v.Hour, v.Version)
		}
	}
	return out, nil
}
