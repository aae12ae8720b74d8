// Package query holds the SQL the analytics read path runs on one Postgres shard: whole hours
// from the hourly rollups, the partial edge hours from raw history, one round trip per shard
// and question. It returns rows; attribution and merging across shards happen in the caller.
package query

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// DBTX is a pool, a connection or a transaction.
type DBTX interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Row kinds of the per-vehicle and per-meter statements.
const (
	kindVehicleDC = 0 // a vehicle's DC in an hour (the window's part of it), by attributed meter
	kindMeterAC   = 1 // a meter's AC in an hour (or the window's part of it)
	kindVersion   = 2 // an hour's version (rollup_hours)
	kindPerVehDC  = 3 // one vehicle's DC attributed to the meter in an hour
)

// HourDC is a vehicle's DC in one hour (the window's part of it), attributed to MeterID.
type HourDC struct {
	MeterID   string
	VehicleID string
	Hour      time.Time
	DC        int64 // mWh
	TempSum   float64
	Readings  int
}

// MeterHour is a meter's AC in one hour (the window's part of it).
type MeterHour struct {
	MeterID    string
	Hour       time.Time
	AC         int64 // mWh
	VoltageSum float64
	Readings   int
}

// MeterDC is the DC attributed to a meter in one hour over all its vehicles.
type MeterDC struct {
	MeterID string
	Hour    time.Time
	Total   int64 // mWh
	// Vehicles is the number of distinct vehicles with readings attributed to the meter.
	Vehicles int
	// Includes reports whether the asked vehicle is one of them.
	Includes bool
}

// MeterSpan is a meter the asked vehicle was mapped to, and the hours it was mapped in.
type MeterSpan struct {
	MeterID string
	Hours   window.Range
}

// VehicleRows is what one shard holds of a vehicle's window.
type VehicleRows struct {
	Own []HourDC
	AC  []MeterHour
	DC  []MeterDC
}

func edgeArrays(edges []window.Range) (from, to []time.Time) {
	from, to = make([]time.Time, len(edges)), make([]time.Time, len(edges))
	for i, e := range edges {
		from[i], to[i] = e.From, e.To
	}
	return from, to
}

// vehicleSQL reads, in one round trip, every row the per-vehicle answer needs from one shard
// and leaves the grouping to Vehicle. The window is [$3, $6): the whole hours [$4, $5) come
// from the rollups, the start edge [$3, $4) and the end edge [$5, $6) (each inside one hour,
// either possibly empty) from raw history. Every branch is a plain range scan on external
// parameters, so under a generic plan each history branch is pruned to its one partition when
// the executor starts (a LATERAL over the edges would prune per loop and initialise a scan of
// every partition on every call). The branches:
//   - the vehicle_hourly rows of the whole hours that belong to the vehicle or to one of the
//     meters $2 (one bitmap heap pass serves both: with one vehicle per meter they are the
//     same rows);
//   - per edge, the raw DC of the vehicle and of the vehicles attributed to the meters in the
//     edge's hour (found in vehicle_hourly), summed per (vehicle, meter);
//   - the meters' AC: whole hours from meter_hourly, each edge from raw history.
//
// Rows of a meter outside the hours the vehicle was mapped to it are dropped by Vehicle.
var vehicleSQL = `
SELECT 0, vh.vehicle_id, vh.meter_id, vh.hour, vh.mwh_delivered_dc, vh.battery_temp_sum, vh.readings
  FROM vehicle_hourly vh
 WHERE vh.hour >= $4::timestamptz AND vh.hour < $5::timestamptz
   AND (vh.vehicle_id = $1::text OR vh.meter_id = ANY($2::text[]))
UNION ALL
SELECT 1, '', mh.meter_id, mh.hour, mh.mwh_consumed_ac, mh.voltage_sum, mh.readings
  FROM meter_hourly mh
 WHERE mh.meter_id = ANY($2) AND mh.hour >= $4 AND mh.hour < $5
UNION ALL` + edgeSQL("$3::timestamptz", "$4", "date_bin('1 hour', $3, 'epoch')") + `
UNION ALL` + edgeSQL("$5", "$6::timestamptz", "$5")

// edgeSQL reads the per-vehicle rows of one partial hour [from, to) (nothing when from is not
// before to) whose hour is hour, for vehicle $1 and meters $2: the raw readings of the vehicle
// and of the vehicles attributed to the meters in that hour (their ids from vehicle_hourly's
// (meter, hour) index, then one primary-key scan for all of them), summed per (vehicle,
// meter), and the meters' raw AC.
func edgeSQL(from, to, hour string) string {
	return fmt.Sprintf(`
SELECT 0, x.vehicle_id, x.meter_id, %[3]s, sum(x.mwh_delivered_dc)::int8, sum(x.battery_temp), count(*)::int
  FROM vehicle_telemetry_history x
 WHERE x.ts >= %[1]s AND x.ts < %[2]s AND %[1]s < %[2]s
   AND x.vehicle_id = ANY(ARRAY(
       SELECT ids.vehicle_id FROM vehicle_hourly ids
        WHERE ids.meter_id = ANY($2::text[]) AND ids.hour = %[3]s) || $1::text)
   AND (x.vehicle_id = $1::text OR x.meter_id = ANY($2::text[]))
 GROUP BY 2, 3
UNION ALL
SELECT 1, '', x.meter_id, %[3]s, sum(x.mwh_consumed_ac)::int8, sum(x.voltage), count(*)::int
  FROM meter_telemetry_history x
 WHERE x.meter_id = ANY($2::text[]) AND x.ts >= %[1]s AND x.ts < %[2]s AND %[1]s < %[2]s
 GROUP BY 3`, from, to, hour)
}

// vehicleEdgeSQL reads, in one statement and so from one snapshot, the versions of the hours
// in [$5, $6) that have one (row kind 2, the version in the first number) and the per-vehicle
// rows of the partial hour [$3, $4).
var vehicleEdgeSQL = `
SELECT 2, '', '', hour, version, 0::float8, 0 FROM rollup_hours WHERE hour >= $5::timestamptz AND hour < $6::timestamptz
UNION ALL` + edgeSQL("$3::timestamptz", "$4::timestamptz", "date_bin('1 hour', $3, 'epoch')")

// inSpan reports whether hour h of meter m lies in one of the meter's spans.
func inSpan(meters []MeterSpan, m string, h time.Time) bool {
	for _, s := range meters {
		if s.MeterID == m && !h.Before(s.Hours.From) && h.Before(s.Hours.To) {
			return true
		}
	}
	return false
}

// vehicleArgs are the per-vehicle statement's parameters: the vehicle, the meters, and the
// window as start, whole hours and end. A window inside one hour has no whole hours: they are
// the empty range at its end, so that [start, end) is all start edge.
func vehicleArgs(vehicleID string, w window.Window, meters []MeterSpan) []any {
	whole, _ := w.Split()
	if whole.From.After(w.End) {
		whole = window.Range{From: w.End, To: w.End}
	}
	return []any{vehicleID, MeterIDs(meters), w.Start, whole.From, whole.To, w.End}
}

// MeterIDs lists the spans' meters once each.
func MeterIDs(meters []MeterSpan) []string {
	ids := make([]string, 0, len(meters))
	for _, m := range meters {
		if !slices.Contains(ids, m.MeterID) {
			ids = append(ids, m.MeterID)
		}
	}
	return ids
}

// Vehicle reads, from one shard, the vehicle's own DC in the window (whole hours from
// vehicle_hourly, the edges from raw history) and, for each meter span on this shard, the
// meter's AC and the DC of every vehicle attributed to it in those hours of the window.
func Vehicle(ctx context.Context, db DBTX, vehicleID string, w window.Window, meters []MeterSpan) (VehicleRows, error) {
	rows, err := db.Query(ctx, vehicleSQL, vehicleArgs(vehicleID, w, meters)...)
	if err != nil {
		return VehicleRows{}, err
	}
	col := NewVehicleCollector(vehicleID, meters, int(window.CeilHour(w.End).Sub(window.FloorHour(w.Start))/time.Hour))
	if err := collectVehicleRows(rows, col); err != nil {
		return VehicleRows{}, err
	}
	return col.Rows(), nil
}

// collectVehicleRows adds the per-vehicle statement's rows to col and closes rows.
func collectVehicleRows(rows pgx.Rows, col *VehicleCollector) error {
	return collectRows(rows, col, nil)
}

// collectRows adds per-vehicle rows to col, gives version rows to version, and closes rows.
func collectRows(rows pgx.Rows, col *VehicleCollector, version func(hour time.Time, v int64)) error {
	defer rows.Close()
	var (
		kind           int
		vehicle, meter string
		hour           time.Time
		x1             int64 // mWh, or a version
		x2             float64
		n              int
	)
	scan := []any{&kind, &vehicle, &meter, &hour, &x1, &x2, &n}
	for rows.Next() {
		if err := rows.Scan(scan...); err != nil {
			return err
		}
		hour = hour.UTC()
		switch {
		case kind == kindMeterAC:
			col.MeterRow(meter, hour, x1, x2, n)
		case kind == kindVehicleDC:
			col.VehicleRow(vehicle, meter, hour, x1, x2, n)
		case kind == kindVersion && version != nil:
			version(hour, x1)
		default:
			return fmt.Errorf("per-vehicle statement returned row kind %d", kind)
		}
	}
	return rows.Err()
}

// VehicleEdge reads, in one statement and so from one snapshot, the versions of the hours in
// [hours.From, hours.To) that have one and the per-vehicle statement's rows of one partial
// hour, edge, which it adds to col.
func VehicleEdge(ctx context.Context, db DBTX, vehicleID string, meters []MeterSpan, hours, edge window.Range, col *VehicleCollector) (map[time.Time]int64, error) {
	rows, err := db.Query(ctx, vehicleEdgeSQL, vehicleID, MeterIDs(meters), edge.From, edge.To, hours.From, hours.To)
	if err != nil {
		return nil, err
	}
	versions := map[time.Time]int64{}
	err = collectRows(rows, col, func(hour time.Time, version int64) { versions[hour] = version })
	return versions, err
}

// MeterRows is what the meter's shard holds of its window.
type MeterRows struct {
	AC []MeterHour
	// DC per vehicle and hour attributed to the meter.
	DC []HourDC
}

const meterSQL = `
WITH e AS (SELECT * FROM unnest($4::timestamptz[], $5::timestamptz[]) AS e(f, t))
SELECT 1, ''::text, hour, mwh_consumed_ac, voltage_sum, readings
  FROM meter_hourly WHERE meter_id = $1 AND hour >= $2 AND hour < $3
UNION ALL
SELECT 1, '', date_bin('1 hour', e.f, 'epoch'), a.ac, a.v, a.n
  FROM e CROSS JOIN LATERAL (
       SELECT sum(x.mwh_consumed_ac)::int8 AS ac, sum(x.voltage) AS v, count(*)::int AS n
         FROM meter_telemetry_history x
        WHERE x.meter_id = $1 AND x.ts >= e.f AND x.ts < e.t) a
 WHERE a.n > 0
UNION ALL
SELECT 3, vehicle_id, hour, mwh_delivered_dc, battery_temp_sum, readings
  FROM vehicle_hourly WHERE meter_id = $1 AND hour >= $2 AND hour < $3
UNION ALL
SELECT 3, ids.vehicle_id, date_bin('1 hour', e.f, 'epoch'), d.dc, d.temp, d.n
  FROM e JOIN vehicle_hourly ids ON ids.meter_id = $1 AND ids.hour = date_bin('1 hour', e.f, 'epoch')
 CROSS JOIN LATERAL (
       SELECT sum(x.mwh_delivered_dc)::int8 AS dc, sum(x.battery_temp) AS temp, count(*)::int AS n
         FROM vehicle_telemetry_history x
        WHERE x.vehicle_id = ids.vehicle_id AND x.ts >= e.f AND x.ts < e.t AND x.meter_id = $1) d
 WHERE d.n > 0`

// Meter reads a meter's AC and the DC of every vehicle attributed to it, per hour of the
// window, from the meter's shard.
func Meter(ctx context.Context, db DBTX, meterID string, w window.Window) (MeterRows, error) {
	whole, edges := w.Split()
	ef, et := edgeArrays(edges)
	rows, err := db.Query(ctx, meterSQL, meterID, whole.From, whole.To, ef, et)
	if err != nil {
		return MeterRows{}, err
	}
	defer rows.Close()
	var out MeterRows
	for rows.Next() {
		var (
			kind    int
			vehicle string
			hour    time.Time
			x1      int64
			x2      float64
			n       int
		)
		if err := rows.Scan(&kind, &vehicle, &hour, &x1, &x2, &n); err != nil {
			return MeterRows{}, err
		}
		hour = hour.UTC()
		switch kind {
		case kindMeterAC:
			out.AC = append(out.AC, MeterHour{MeterID: meterID, Hour: hour, AC: x1, VoltageSum: x2, Readings: n})
		case kindPerVehDC:
			out.DC = append(out.DC, HourDC{MeterID: meterID, VehicleID: vehicle, Hour: hour, DC: x1, TempSum: x2, Readings: n})
		}
	}
	return out, rows.Err()
}
