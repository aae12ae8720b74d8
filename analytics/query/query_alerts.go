package query

import (
	"context"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// SiteTotals is a meter's AC and the DC attributed to it over whole hours.
type SiteTotals struct {
	MeterID    string
	AC, DC     float64
	VehicleIDs []string
}

// VehicleTotals is a vehicle's DC on one shard over whole hours and the AC attributed to it
// there by DC share (hours where its meter's total DC was 0 are returned as Unshared instead).
type VehicleTotals struct {
	VehicleID string
	AC, DC    float64
	MeterIDs  []string
}

// AlertRows is what one shard contributes to the fleet alert query.
type AlertRows struct {
	// Sites whose DC/AC is below the threshold.
	Sites []SiteTotals
	// Every vehicle with readings on the shard in the hours.
	Vehicles []VehicleTotals
	// Meter hours with AC but no DC attributed, to be split equally among the vehicles
	// mapped to the meter then.
	Unshared []MeterHour
}

// alertSQL is one statement per shard over the whole hours: sites below the threshold
// (kind 0), every vehicle's DC and DC-share of AC (kind 1), and meter hours with AC but no DC
// (kind 2). The rollup rows of the hours are read once.
const alertSQL = `
WITH vh AS MATERIALIZED (
       SELECT vehicle_id, meter_id, hour, kwh_delivered_dc AS dc
         FROM vehicle_hourly WHERE hour >= $1 AND hour < $2),
     mh AS MATERIALIZED (
       SELECT meter_id, hour, kwh_consumed_ac AS ac
         FROM meter_hourly WHERE hour >= $1 AND hour < $2),
     t AS MATERIALIZED (
       SELECT meter_id, hour, sum(dc) AS total FROM vh WHERE meter_id <> '' GROUP BY 1, 2),
     j AS MATERIALIZED (
       SELECT mh.meter_id, mh.hour, mh.ac, coalesce(t.total, 0) AS total
         FROM mh LEFT JOIN t ON t.meter_id = mh.meter_id AND t.hour = mh.hour),
     site AS (
       SELECT a.meter_id, a.ac, coalesce(d.dc, 0) AS dc
         FROM (SELECT meter_id, sum(ac) AS ac FROM mh GROUP BY 1) a
         LEFT JOIN (SELECT meter_id, sum(total) AS dc FROM t GROUP BY 1) d ON d.meter_id = a.meter_id
        WHERE a.ac > 0 AND coalesce(d.dc, 0) / a.ac < $3)
SELECT 0 AS kind, s.meter_id, s.ac, s.dc,
       coalesce(array_agg(DISTINCT vh.vehicle_id ORDER BY vh.vehicle_id) FILTER (WHERE vh.vehicle_id IS NOT NULL), '{}'),
       NULL::timestamptz
  FROM site s LEFT JOIN vh ON vh.meter_id = s.meter_id
 GROUP BY s.meter_id, s.ac, s.dc
UNION ALL
SELECT 1, vh.vehicle_id,
       coalesce(sum(j.ac * vh.dc / j.total) FILTER (WHERE j.total > 0), 0),
       sum(vh.dc),
       array_remove(array_agg(DISTINCT vh.meter_id ORDER BY vh.meter_id), ''),
       NULL
  FROM vh LEFT JOIN j ON j.meter_id = vh.meter_id AND j.hour = vh.hour
 GROUP BY vh.vehicle_id
UNION ALL
SELECT 2, meter_id, ac, 0, NULL, hour FROM j WHERE ac > 0 AND total = 0`

// Alerts reads one shard's part of the fleet alert query over the whole hours.
func Alerts(ctx context.Context, db DBTX, hours window.Range, threshold float64) (AlertRows, error) {
	var out AlertRows
	rows, err := db.Query(ctx, alertSQL, hours.From, hours.To, threshold)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind   int
			id     string
			ac, dc float64
			ids    []string
			hour   *time.Time
		)
		if err := rows.Scan(&kind, &id, &ac, &dc, &ids, &hour); err != nil {
			return out, err
		}
		switch kind {
		case 0:
			out.Sites = append(out.Sites, SiteTotals{MeterID: id, AC: ac, DC: dc, VehicleIDs: ids})
		case 1:
			out.Vehicles = append(out.Vehicles, VehicleTotals{VehicleID: id, AC: ac, DC: dc, MeterIDs: ids})
		case 2:
			out.Unshared = append(out.Unshared, MeterHour{MeterID: id, Hour: hour.UTC(), AC: ac})
		}
	}
	return out, rows.Err()
}

// Time is a helper for callers that scan timestamps.
func utc(t time.Time) time.Time { return t.UTC() }
