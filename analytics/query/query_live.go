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

// LiveRollups is what LiveHour read, from one snapshot: the versions of a range of hours and
// the rollup rows, as they stand, of one hour (the hour being written) for some vehicles and
// meters, each with the time of its latest reading.
type LiveRollups struct {
	Versions map[time.Time]int64
	// Vehicles are the vehicle_hourly rows of the vehicles (any meter) and those attributed
	// to the meters.
	Vehicles []LiveRow
	// Meters are the meter_hourly rows of the meters.
	Meters []LiveRow
}

// LiveRow is a rollup row of the hour being written: a vehicle's DC and battery temperature
// sum attributed to MeterID, or a meter's AC and voltage sum (VehicleID empty).
type LiveRow struct {
	VehicleID, MeterID string
	E                  int64 // mWh: DC or AC
	X2                 float64
	Readings           int
	// Last is the time of the row's latest reading; zero when unknown.
	Last time.Time
}

// liveHourSQL reads the versions of the hours in [$1, $2) that have one, and, unless the
// version of hour $3 is $6, the rollup rows of hour $3 of the vehicles $4 and the meters $5
// with their latest readings.
const liveHourSQL = `
SELECT 2, '', '', hour, version, 0::int8, 0::float8, 0, NULL::timestamptz
  FROM rollup_hours WHERE hour >= $1 AND hour < $2
UNION ALL
SELECT 0, vh.vehicle_id, vh.meter_id, vh.hour, 0, vh.mwh_delivered_dc, vh.battery_temp_sum, vh.readings, vh.last_ts
  FROM vehicle_hourly vh
 WHERE vh.hour = $3::timestamptz AND (vh.vehicle_id = ANY($4::text[]) OR vh.meter_id = ANY($5::text[]))
   AND (SELECT version FROM rollup_hours WHERE hour = $3) IS DISTINCT FROM $6::int8
UNION ALL
SELECT 1, '', mh.meter_id, mh.hour, 0, mh.mwh_consumed_ac, mh.voltage_sum, mh.readings, mh.last_ts
  FROM meter_hourly mh
 WHERE mh.hour = $3 AND mh.meter_id = ANY($5)
   AND (SELECT version FROM rollup_hours WHERE hour = $3) IS DISTINCT FROM $6`

// LiveHour reads, in one statement and so from one snapshot, the versions of the hours in
// hours that have one and, unless hour's version is known (the caller holds the hour at that
// version; -1 for none), the rollup rows of hour for vehicles and meters (see LiveRollups).
// Many questions about windows ending now share one such read.
func LiveHour(ctx context.Context, db DBTX, hours window.Range, hour time.Time, known int64, vehicles, meters []string) (*LiveRollups, error) {
	rows, err := db.Query(ctx, liveHourSQL, hours.From, hours.To, hour, vehicles, meters, known)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &LiveRollups{Versions: map[time.Time]int64{}}
	var (
		kind    int
		r       LiveRow
		h       time.Time
		version int64
		last    *time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&kind, &r.VehicleID, &r.MeterID, &h, &version, &r.E, &r.X2, &r.Readings, &last); err != nil {
			return nil, err
		}
		r.Last = time.Time{}
		if last != nil {
			r.Last = last.UTC()
		}
		switch kind {
		case 2:
			out.Versions[h.UTC()] = version
		case 0:
			out.Vehicles = append(out.Vehicles, r)
		default:
			out.Meters = append(out.Meters, r)
		}
	}
	return out, rows.Err()
}

// Edge adds to col the rows of vehicle and meters that make the window's part [hour, end) of
// the hour the rows are of, and reports whether they do: every one of them must have its
// latest reading known and before end (then the row sums exactly the readings before end).
// When it reports false, col is unchanged.
func (l *LiveRollups) Edge(col *VehicleCollector, hour time.Time, vehicle string, meters []string, end time.Time) bool {
	uses := func(r LiveRow) bool {
		return r.VehicleID == vehicle || (r.MeterID != "" && slices.Contains(meters, r.MeterID))
	}
	before := func(r LiveRow) bool { return !r.Last.IsZero() && r.Last.Before(end) }
	for _, r := range l.Vehicles {
		if uses(r) && !before(r) {
			return false
		}
	}
	for _, r := range l.Meters {
		if slices.Contains(meters, r.MeterID) && !before(r) {
			return false
		}
	}
	for _, r := range l.Vehicles {
		if uses(r) {
			col.VehicleRow(r.VehicleID, r.MeterID, hour, r.E, r.X2, r.Readings)
		}
	}
	for _, r := range l.Meters {
		if slices.Contains(meters, r.MeterID) {
			col.MeterRow(r.MeterID, hour, r.E, r.X2, r.Readings)
		}
	}
	return true
}

// liveHourAllSQL reads, in one statement, the version of hour $1 and all its rollup rows with
// their latest readings (a binary COPY with the hour written in; see copyOut).
const liveHourAllSQL = `
COPY (
SELECT 2 AS kind, NULL::text, NULL::text, NULL::int8, NULL::float8, NULL::int4, NULL::timestamptz, version
  FROM rollup_hours WHERE hour = $1
UNION ALL
SELECT 0, vh.vehicle_id, vh.meter_id, vh.mwh_delivered_dc, vh.battery_temp_sum, vh.readings, vh.last_ts, NULL::int8
  FROM vehicle_hourly vh WHERE vh.hour = $1
UNION ALL
SELECT 1, NULL::text, mh.meter_id, mh.mwh_consumed_ac, mh.voltage_sum, mh.readings, mh.last_ts, NULL::int8
  FROM meter_hourly mh WHERE mh.hour = $1
) TO STDOUT (FORMAT binary)`

// WholeLiveHour reads, from one snapshot, hour's version (0 when it has no rollup rows) and
// all its rollup rows as they stand, each with the time of its latest reading: the hour being
// written, kept in memory for the questions that find it at the same version. intern turns
// each device id read into its string (it may return one it already holds).
func WholeLiveHour(ctx context.Context, db DBTX, hour time.Time, intern func([]byte) string) (version int64, rows *LiveRollups, err error) {
	rows = &LiveRollups{}
	sql := strings.ReplaceAll(liveHourAllSQL, "$1", timeLiteral(hour))
	err = copyOut(ctx, db, sql, func(f [][]byte) error {
		if len(f) != 8 {
			return fmt.Errorf("live hour row of %d columns", len(f))
		}
		kind, err := copyInt32(f[0])
		if err != nil {
			return err
		}
		if kind == 2 {
			version, err = copyInt64(f[7])
			return err
		}
		r := LiveRow{MeterID: intern(f[2])}
		if kind == 0 {
			r.VehicleID = intern(f[1])
		}
		e, err1 := copyInt64(f[3])
		x2, err2 := copyFloat64(f[4])
		n, err3 := copyInt32(f[5])
		var err4 error
		if f[6] != nil {
			r.Last, err4 = copyTime(f[6])
		}
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return err
		}
		r.E, r.X2, r.Readings = e, x2, int(n)
		if kind == 0 {
			rows.Vehicles = append(rows.Vehicles, r)
		} else {
			rows.Meters = append(rows.Meters, r)
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("reading the rollups of hour %s: %w", hour.UTC().Format(time.RFC3339), err)
	}
	return version, rows, nil
}
