package query

import (
	"context"
	"time"
)

// RawReading is one row of raw history: a vehicle's (DC, battery temperature, the meter it
// was attributed to) or a meter's (AC, voltage, MeterID empty).
type RawReading struct {
	Vehicle  bool
	DeviceID string
	MeterID  string
	TS       time.Time
	E        int64 // mWh: DC or AC
	X2       float64
}

// rawHourSQL reads, in one statement and so from one snapshot, the version of hour $1 and
// every raw reading of the hour on the shard. It is planned for its actual hour, so only that
// day's partitions are read.
const rawHourSQL = `
SELECT 0 AS kind, coalesce((SELECT version FROM rollup_hours WHERE hour = $1), 0), ''::text, ''::text, $1::timestamptz, 0::int8, 0::float8
UNION ALL
SELECT 1, 0, vehicle_id, meter_id, ts, mwh_delivered_dc, battery_temp
  FROM vehicle_telemetry_history WHERE ts >= $1::timestamptz AND ts < $2::timestamptz
UNION ALL
SELECT 2, 0, meter_id, '', ts, mwh_consumed_ac, voltage
  FROM meter_telemetry_history WHERE ts >= $1::timestamptz AND ts < $2::timestamptz`

// RawHour reads the hour starting at hour: fn is called for each reading, in no particular
// order, and version is the hour's version in the same snapshot (0: the hour has no rollup
// rows, and so no readings).
func RawHour(ctx context.Context, db DBTX, hour time.Time, fn func(RawReading)) (version int64, err error) {
	rows, err := db.Query(ctx, rawHourSQL, alertMode, hour, hour.Add(time.Hour))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		kind int
		v    int64
		r    RawReading
	)
	for rows.Next() {
		if err := rows.Scan(&kind, &v, &r.DeviceID, &r.MeterID, &r.TS, &r.E, &r.X2); err != nil {
			return 0, err
		}
		switch kind {
		case 0:
			version = v
		default:
			r.Vehicle = kind == 1
			fn(r)
		}
	}
	return version, rows.Err()
}

// hourVersionsSQL reads the versions of the hours in [$1, $2) that have one.
const hourVersionsSQL = `SELECT hour, version FROM rollup_hours WHERE hour >= $1 AND hour < $2`

// HourVersions reads the versions of the hours in [from, to) that have rollup rows; an hour
// missing from the result has none.
func HourVersions(ctx context.Context, db DBTX, from, to time.Time) (map[time.Time]int64, error) {
	rows, err := db.Query(ctx, hourVersionsSQL, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[time.Time]int64{}
	var (
		h time.Time
		v int64
	)
	for rows.Next() {
		if err := rows.Scan(&h, &v); err != nil {
			return nil, err
		}
		out[h.UTC()] = v
	}
	return out, rows.Err()
}
