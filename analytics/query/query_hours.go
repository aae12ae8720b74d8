package query

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// HourRollups is one hour's rollup rows at the hour's version (0: the hour has no rollup
// rows).
type HourRollups struct {
	Hour     time.Time
	Version  int64
	Meters   []MeterAC
	Vehicles []VehicleDC
}

// MeterAC is a meter's row of meter_hourly.
type MeterAC struct {
	MeterID    string
	AC         float64
	VoltageSum float64
	Readings   int
}

// VehicleDC is a vehicle's row of vehicle_hourly: its DC attributed to a meter ("" for none).
type VehicleDC struct {
	VehicleID, MeterID string
	DC                 float64
	TempSum            float64
	Readings           int
}

// changedHoursSQL reads, in one statement and so from one snapshot, the version of every
// hour in [$1, $2) and the rollup rows of the hours in [$5, $6) whose version is not the one
// the caller holds ($3 hours, $4 versions). An hour without a version has no rollup rows.
const changedHoursSQL = `
WITH v AS MATERIALIZED (
       SELECT g.hour, coalesce(r.version, 0) AS version
         FROM generate_series($1::timestamptz, $2::timestamptz - interval '1 hour', interval '1 hour') AS g(hour)
         LEFT JOIN rollup_hours r ON r.hour = g.hour),
     s AS MATERIALIZED (
       SELECT v.hour FROM v
         LEFT JOIN unnest($3::timestamptz[], $4::int8[]) AS k(hour, version) ON k.hour = v.hour
        WHERE v.hour >= $5 AND v.hour < $6 AND v.version <> 0 AND k.version IS DISTINCT FROM v.version)
SELECT 0 AS kind, hour, version, ''::text, ''::text, 0::float8, 0::float8, 0 FROM v
UNION ALL
SELECT 1, mh.hour, 0, mh.meter_id, '', mh.kwh_consumed_ac, mh.voltage_sum, mh.readings
  FROM s JOIN meter_hourly mh ON mh.hour = s.hour
UNION ALL
SELECT 2, vh.hour, 0, vh.meter_id, vh.vehicle_id, vh.kwh_delivered_dc, vh.battery_temp_sum, vh.readings
  FROM s JOIN vehicle_hourly vh ON vh.hour = s.hour`

// ChangedHours reads the version of every whole hour in hours and, for each hour of load
// whose version differs from known[hour], its rollup rows. versions lists every hour of hours
// in order; changed holds the hours read, each with its version. Rows and versions come from
// one snapshot, so an hour's rows are exactly the ones of its version.
func ChangedHours(ctx context.Context, db DBTX, hours, load window.Range, known map[time.Time]int64) (versions []HourRollups, changed map[time.Time]*HourRollups, err error) {
	kh := make([]time.Time, 0, len(known))
	kv := make([]int64, 0, len(known))
	for h, v := range known {
		kh, kv = append(kh, h), append(kv, v)
	}
	// Planned for its actual hours on every call, as the alert statement is: how many hours
	// changed (none, or all of them on a cold cache) decides the plan.
	rows, err := db.Query(ctx, changedHoursSQL, alertMode, hours.From, hours.To, kh, kv, load.From, load.To)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	changed = map[time.Time]*HourRollups{}
	hour := func(h time.Time) *HourRollups {
		r := changed[h]
		if r == nil {
			r = &HourRollups{Hour: h}
			changed[h] = r
		}
		return r
	}
	var (
		kind           int
		ts             time.Time
		version        int64
		meter, vehicle string
		x1, x2         float64
		n              int
	)
	// The branches may arrive interleaved (a parallel plan): versions and rows are matched
	// once all are read.
	for rows.Next() {
		if err := rows.Scan(&kind, &ts, &version, &meter, &vehicle, &x1, &x2, &n); err != nil {
			return nil, nil, err
		}
		ts = ts.UTC()
		switch kind {
		case 0:
			versions = append(versions, HourRollups{Hour: ts, Version: version})
		case 1:
			h := hour(ts)
			h.Meters = append(h.Meters, MeterAC{MeterID: meter, AC: x1, VoltageSum: x2, Readings: n})
		default:
			h := hour(ts)
			h.Vehicles = append(h.Vehicles, VehicleDC{VehicleID: vehicle, MeterID: meter, DC: x1, TempSum: x2, Readings: n})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(versions, func(a, b HourRollups) int { return a.Hour.Compare(b.Hour) })
	for _, v := range versions {
		if v.Version != 0 && v.Version != known[v.Hour] && !v.Hour.Before(load.From) && v.Hour.Before(load.To) {
			hour(v.Hour).Version = v.Version
		}
	}
	for h, r := range changed {
		if r.Version == 0 {
			return nil, nil, fmt.Errorf("rollup rows of hour %s without a changed version", h)
		}
	}
	return versions, changed, nil
}
