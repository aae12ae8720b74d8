package query

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

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

const alertSitesSQL = `
WITH a AS (SELECT meter_id, sum(kwh_consumed_ac) AS ac FROM meter_hourly
            WHERE hour >= $1 AND hour < $2 GROUP BY meter_id),
     d AS (SELECT meter_id, sum(kwh_delivered_dc) AS dc, array_agg(DISTINCT vehicle_id ORDER BY vehicle_id) AS vs
             FROM vehicle_hourly WHERE hour >= $1 AND hour < $2 AND meter_id <> '' GROUP BY meter_id)
SELECT a.meter_id, a.ac, coalesce(d.dc, 0), coalesce(d.vs, '{}')
  FROM a LEFT JOIN d USING (meter_id)
 WHERE a.ac > 0 AND coalesce(d.dc, 0) / a.ac < $3`

const alertVehiclesSQL = `
WITH t AS (SELECT meter_id, hour, sum(kwh_delivered_dc) AS total FROM vehicle_hourly
            WHERE hour >= $1 AND hour < $2 AND meter_id <> '' GROUP BY meter_id, hour)
SELECT vh.vehicle_id, sum(vh.kwh_delivered_dc),
       coalesce(sum(mh.kwh_consumed_ac * vh.kwh_delivered_dc / t.total) FILTER (WHERE t.total > 0), 0),
       array_remove(array_agg(DISTINCT vh.meter_id ORDER BY vh.meter_id), '')
  FROM vehicle_hourly vh
  LEFT JOIN t ON t.meter_id = vh.meter_id AND t.hour = vh.hour
  LEFT JOIN meter_hourly mh ON mh.meter_id = vh.meter_id AND mh.hour = vh.hour
 WHERE vh.hour >= $1 AND vh.hour < $2
 GROUP BY vh.vehicle_id`

const alertUnsharedSQL = `
SELECT mh.meter_id, mh.hour, mh.kwh_consumed_ac, mh.readings
  FROM meter_hourly mh
 WHERE mh.hour >= $1 AND mh.hour < $2 AND mh.kwh_consumed_ac > 0
   AND coalesce((SELECT sum(vh.kwh_delivered_dc) FROM vehicle_hourly vh
                  WHERE vh.meter_id = mh.meter_id AND vh.hour = mh.hour), 0) = 0`

// Alerts reads one shard's part of the fleet alert query over the whole hours.
func Alerts(ctx context.Context, db DBTX, hours window.Range, threshold float64) (AlertRows, error) {
	var out AlertRows
	rows, err := db.Query(ctx, alertSitesSQL, hours.From, hours.To, threshold)
	if err != nil {
		return out, err
	}
	out.Sites, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (SiteTotals, error) {
		var s SiteTotals
		err := r.Scan(&s.MeterID, &s.AC, &s.DC, &s.VehicleIDs)
		return s, err
	})
	if err != nil {
		return out, err
	}
	rows, err = db.Query(ctx, alertVehiclesSQL, hours.From, hours.To)
	if err != nil {
		return out, err
	}
	out.Vehicles, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (VehicleTotals, error) {
		var v VehicleTotals
		err := r.Scan(&v.VehicleID, &v.DC, &v.AC, &v.MeterIDs)
		return v, err
	})
	if err != nil {
		return out, err
	}
	rows, err = db.Query(ctx, alertUnsharedSQL, hours.From, hours.To)
	if err != nil {
		return out, err
	}
	out.Unshared, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (MeterHour, error) {
		var m MeterHour
		err := r.Scan(&m.MeterID, &m.Hour, &m.AC, &m.Readings)
		m.Hour = m.Hour.UTC()
		return m, err
	})
	return out, err
}

// Time is a helper for callers that scan timestamps.
func utc(t time.Time) time.Time { return t.UTC() }
