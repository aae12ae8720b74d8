// Package query holds the SQL the analytics read path runs on one Postgres shard: whole hours
// from the hourly rollups, the partial edge hours from raw history, one round trip per shard
// and question. It returns rows; attribution and merging across shards happen in the caller.
package query

import (
	"context"
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
	kindOwn      = 0 // the asked vehicle's own DC in an hour (by attributed meter)
	kindMeterAC  = 1 // a meter's AC in an hour (or the window's part of it)
	kindMeterDC  = 2 // the DC attributed to a meter in an hour, over all its vehicles
	kindPerVehDC = 3 // one vehicle's DC attributed to the meter in an hour
)

// HourDC is a vehicle's DC in one hour (the window's part of it), attributed to MeterID.
type HourDC struct {
	MeterID   string
	VehicleID string
	Hour      time.Time
	DC        float64
	TempSum   float64
	Readings  int
}

// MeterHour is a meter's AC in one hour (the window's part of it).
type MeterHour struct {
	MeterID    string
	Hour       time.Time
	AC         float64
	VoltageSum float64
	Readings   int
}

// MeterDC is the DC attributed to a meter in one hour over all its vehicles.
type MeterDC struct {
	MeterID string
	Hour    time.Time
	Total   float64
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

const vehicleSQL = `
WITH e AS (SELECT * FROM unnest($4::timestamptz[], $5::timestamptz[]) AS e(f, t)),
     r AS (SELECT * FROM unnest($6::text[], $7::timestamptz[], $8::timestamptz[]) AS r(meter_id, hf, ht))
SELECT 0, vh.meter_id, vh.hour, vh.kwh_delivered_dc, vh.battery_temp_sum, vh.readings, false
  FROM vehicle_hourly vh
 WHERE vh.vehicle_id = $1 AND vh.hour >= $2 AND vh.hour < $3
UNION ALL
SELECT 0, h.meter_id, date_bin('1 hour', e.f, 'epoch'), sum(h.kwh_delivered_dc), sum(h.battery_temp), count(*)::int, false
  FROM e CROSS JOIN LATERAL (
       SELECT * FROM vehicle_telemetry_history x
        WHERE x.vehicle_id = $1 AND x.ts >= e.f AND x.ts < e.t OFFSET 0) h
 GROUP BY 2, 3
UNION ALL
SELECT 1, mh.meter_id, mh.hour, mh.kwh_consumed_ac, mh.voltage_sum, mh.readings, false
  FROM r JOIN meter_hourly mh ON mh.meter_id = r.meter_id AND mh.hour >= greatest(r.hf, $2) AND mh.hour < least(r.ht, $3)
UNION ALL
SELECT 2, vh.meter_id, vh.hour, sum(vh.kwh_delivered_dc), 0::float8, count(*)::int, bool_or(vh.vehicle_id = $1)
  FROM r JOIN vehicle_hourly vh ON vh.meter_id = r.meter_id AND vh.hour >= greatest(r.hf, $2) AND vh.hour < least(r.ht, $3)
 GROUP BY 2, 3
UNION ALL
SELECT 1, r.meter_id, date_bin('1 hour', e.f, 'epoch'), a.ac, a.v, a.n, false
  FROM r JOIN e ON e.f >= r.hf AND e.f < r.ht
 CROSS JOIN LATERAL (
       SELECT sum(x.kwh_consumed_ac) AS ac, sum(x.voltage) AS v, count(*)::int AS n
         FROM meter_telemetry_history x
        WHERE x.meter_id = r.meter_id AND x.ts >= e.f AND x.ts < e.t) a
 WHERE a.n > 0
UNION ALL
SELECT 2, r.meter_id, date_bin('1 hour', e.f, 'epoch'), d.dc, 0::float8, d.n, d.me
  FROM r JOIN e ON e.f >= r.hf AND e.f < r.ht
 CROSS JOIN LATERAL (
       SELECT sum(h.kwh_delivered_dc) AS dc, count(DISTINCT h.vehicle_id)::int AS n, bool_or(h.vehicle_id = $1) AS me
         FROM vehicle_hourly ids
        CROSS JOIN LATERAL (
              SELECT * FROM vehicle_telemetry_history x
               WHERE x.vehicle_id = ids.vehicle_id AND x.ts >= e.f AND x.ts < e.t AND x.meter_id = r.meter_id OFFSET 0) h
        WHERE ids.meter_id = r.meter_id AND ids.hour = date_bin('1 hour', e.f, 'epoch')) d
 WHERE d.n > 0`

// Vehicle reads, from one shard, the vehicle's own DC in the window (whole hours from
// vehicle_hourly, the edges from raw history) and, for each meter span on this shard, the
// meter's AC and the DC of every vehicle attributed to it in those hours of the window.
func Vehicle(ctx context.Context, db DBTX, vehicleID string, w window.Window, meters []MeterSpan) (VehicleRows, error) {
	whole, edges := w.Split()
	ef, et := edgeArrays(edges)
	ids := make([]string, len(meters))
	hf, ht := make([]time.Time, len(meters)), make([]time.Time, len(meters))
	for i, m := range meters {
		ids[i], hf[i], ht[i] = m.MeterID, m.Hours.From, m.Hours.To
	}
	rows, err := db.Query(ctx, vehicleSQL, vehicleID, whole.From, whole.To, ef, et, ids, hf, ht)
	if err != nil {
		return VehicleRows{}, err
	}
	defer rows.Close()
	var out VehicleRows
	for rows.Next() {
		var (
			kind   int
			meter  string
			hour   time.Time
			x1, x2 float64
			n      int
			me     bool
		)
		if err := rows.Scan(&kind, &meter, &hour, &x1, &x2, &n, &me); err != nil {
			return VehicleRows{}, err
		}
		hour = hour.UTC()
		switch kind {
		case kindOwn:
			out.Own = append(out.Own, HourDC{MeterID: meter, VehicleID: vehicleID, Hour: hour, DC: x1, TempSum: x2, Readings: n})
		case kindMeterAC:
			out.AC = append(out.AC, MeterHour{MeterID: meter, Hour: hour, AC: x1, VoltageSum: x2, Readings: n})
		case kindMeterDC:
			out.DC = append(out.DC, MeterDC{MeterID: meter, Hour: hour, Total: x1, Vehicles: n, Includes: me})
		}
	}
	return out, rows.Err()
}

// MeterRows is what the meter's shard holds of its window.
type MeterRows struct {
	AC []MeterHour
	// DC per vehicle and hour attributed to the meter.
	DC []HourDC
}

const meterSQL = `
WITH e AS (SELECT * FROM unnest($4::timestamptz[], $5::timestamptz[]) AS e(f, t))
SELECT 1, ''::text, hour, kwh_consumed_ac, voltage_sum, readings
  FROM meter_hourly WHERE meter_id = $1 AND hour >= $2 AND hour < $3
UNION ALL
SELECT 1, '', date_bin('1 hour', e.f, 'epoch'), a.ac, a.v, a.n
  FROM e CROSS JOIN LATERAL (
       SELECT sum(x.kwh_consumed_ac) AS ac, sum(x.voltage) AS v, count(*)::int AS n
         FROM meter_telemetry_history x
        WHERE x.meter_id = $1 AND x.ts >= e.f AND x.ts < e.t) a
 WHERE a.n > 0
UNION ALL
SELECT 3, vehicle_id, hour, kwh_delivered_dc, battery_temp_sum, readings
  FROM vehicle_hourly WHERE meter_id = $1 AND hour >= $2 AND hour < $3
UNION ALL
SELECT 3, ids.vehicle_id, date_bin('1 hour', e.f, 'epoch'), d.dc, d.temp, d.n
  FROM e JOIN vehicle_hourly ids ON ids.meter_id = $1 AND ids.hour = date_bin('1 hour', e.f, 'epoch')
 CROSS JOIN LATERAL (
       SELECT sum(x.kwh_delivered_dc) AS dc, sum(x.battery_temp) AS temp, count(*)::int AS n
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
			x1, x2  float64
			n       int
		)
		if err := rows.Scan(&kind, &vehicle, &hour, &x1, &x2, &n); err != nil {
			return MeterRows{}, err
		}
		hour = hour.UTC()
		if kind == kindMeterAC {
			out.AC = append(out.AC, MeterHour{MeterID: meterID, Hour: hour, AC: x1, VoltageSum: x2, Readings: n})
		} else {
			out.DC = append(out.DC, HourDC{MeterID: meterID, VehicleID: vehicle, Hour: hour, DC: x1, TempSum: x2, Readings: n})
		}
	}
	return out, rows.Err()
}
