package query

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// SiteTotals is a meter's AC and the DC attributed to it over whole hours.
type SiteTotals struct {
	MeterID    string
	AC, DC     int64 // mWh
	VehicleIDs []string
}

// VehicleTotals is a vehicle's DC on one shard over whole hours and the AC attributed to it
// there by DC share (hours where its meter's total DC was 0 are returned as Unshared instead).
type VehicleTotals struct {
	VehicleID string
	AC, DC    int64 // mWh
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

// alertSQL is one statement per shard over the whole hours, aggregated with hashes only (no
// sort, no DISTINCT): every meter's AC (kind 0), every (vehicle, meter)'s DC and DC-share of
// the meter's AC (kind 1, each hour's share rounded as attribution.Share does), and meter hours
// with AC but no DC (kind 2). Site DC, the vehicles
// of a site and the meters of a vehicle are derived from the kind 1 rows by the caller.
// It is planned for its actual hours on every call (see alertMode).
const alertSQL = `
WITH j AS MATERIALIZED (
       SELECT mh.meter_id, mh.hour, mh.mwh_consumed_ac AS ac, coalesce(t.total, 0) AS total
         FROM meter_hourly mh
         LEFT JOIN (SELECT meter_id, hour, sum(mwh_delivered_dc)::int8 AS total
                      FROM vehicle_hourly
                     WHERE hour >= $1 AND hour < $2 AND meter_id <> ''
                     GROUP BY 1, 2) t ON t.meter_id = mh.meter_id AND t.hour = mh.hour
        WHERE mh.hour >= $1 AND mh.hour < $2)
SELECT 0 AS kind, meter_id, ''::text, sum(mwh_consumed_ac)::int8, 0::int8, NULL::timestamptz
  FROM meter_hourly WHERE hour >= $1 AND hour < $2
 GROUP BY meter_id HAVING sum(mwh_consumed_ac) > 0
UNION ALL
SELECT 1, vh.meter_id, vh.vehicle_id,
       coalesce(sum(div(2 * j.ac::numeric * vh.mwh_delivered_dc + j.total, 2 * j.total)) FILTER (WHERE j.total > 0), 0)::int8,
       sum(vh.mwh_delivered_dc)::int8, NULL
  FROM vehicle_hourly vh LEFT JOIN j ON j.meter_id = vh.meter_id AND j.hour = vh.hour
 WHERE vh.hour >= $1 AND vh.hour < $2
 GROUP BY vh.vehicle_id, vh.meter_id
UNION ALL
SELECT 2, meter_id, '', ac, 0, hour FROM j WHERE ac > 0 AND total = 0`

// alertMode sends the alert statement with its hours inlined, so Postgres plans it for them:
// a generic plan (the read path's connections force those) estimates a range of unknown hours
// at a fraction of the table and picks sort-merge joins over every rollup row of the window,
// while the hours' real size calls for hash joins. Planning costs a millisecond; executing
// takes hundreds.
const alertMode = pgx.QueryExecModeSimpleProtocol

// VehicleMeter is a vehicle's DC attributed to one meter (empty for none) over whole hours,
// and its DC-share of that meter's AC.
type VehicleMeter struct {
	VehicleID, MeterID string
	AC, DC             int64 // mWh
}

// AlertSums are what one shard holds of the alert question over whole hours, before the
// threshold: every meter's AC (meters with AC > 0), every (vehicle, meter)'s DC and DC-share
// of the meter's AC, and the meter hours with AC but no DC.
type AlertSums struct {
	MeterAC       map[string]int64
	VehicleMeters []VehicleMeter
	Unshared      []MeterHour
}

// AlertTotals sums one shard's rollups over the whole hours for the alert query, in one
// statement aggregated by Postgres.
func AlertTotals(ctx context.Context, db DBTX, hours window.Range) (AlertSums, error) {
	out := AlertSums{MeterAC: map[string]int64{}}
	rows, err := db.Query(ctx, alertSQL, alertMode, hours.From, hours.To)
	if err != nil {
		return out, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind       int
			meter, veh string
			ac, dc     int64
			hour       *time.Time
		)
		if err := rows.Scan(&kind, &meter, &veh, &ac, &dc, &hour); err != nil {
			return out, err
		}
		switch kind {
		case 0:
			out.MeterAC[meter] = ac
		case 1:
			out.VehicleMeters = append(out.VehicleMeters, VehicleMeter{VehicleID: veh, MeterID: meter, AC: ac, DC: dc})
		case 2:
			out.Unshared = append(out.Unshared, MeterHour{MeterID: meter, Hour: hour.UTC(), AC: ac})
		}
	}
	return out, rows.Err()
}

// Rows applies the threshold: the sites below it, and every vehicle with its meters.
func (s AlertSums) Rows(threshold float64) AlertRows {
	out := AlertRows{Unshared: s.Unshared}
	// In (vehicle, meter) order, so that every list comes out sorted.
	vms := slices.Clone(s.VehicleMeters)
	sort.Slice(vms, func(i, j int) bool {
		if vms[i].VehicleID != vms[j].VehicleID {
			return vms[i].VehicleID < vms[j].VehicleID
		}
		return vms[i].MeterID < vms[j].MeterID
	})
	siteDC := map[string]int64{}
	siteVehicles := map[string][]string{}
	for i, vm := range vms {
		if i == 0 || vms[i-1].VehicleID != vm.VehicleID {
			out.Vehicles = append(out.Vehicles, VehicleTotals{VehicleID: vm.VehicleID})
		}
		v := &out.Vehicles[len(out.Vehicles)-1]
		v.AC += vm.AC
		v.DC += vm.DC
		if vm.MeterID != "" {
			v.MeterIDs = append(v.MeterIDs, vm.MeterID)
			siteDC[vm.MeterID] += vm.DC
			siteVehicles[vm.MeterID] = append(siteVehicles[vm.MeterID], vm.VehicleID)
		}
	}
	meters := make([]string, 0, len(s.MeterAC))
	for m := range s.MeterAC {
		meters = append(meters, m)
	}
	sort.Strings(meters)
	for _, m := range meters {
		ac, dc := s.MeterAC[m], siteDC[m]
		if float64(dc)/float64(ac) >= threshold {
			continue
		}
		ids := siteVehicles[m]
		if ids == nil {
			ids = []string{}
		}
		out.Sites = append(out.Sites, SiteTotals{MeterID: m, AC: ac, DC: dc, VehicleIDs: ids})
	}
	return out
}

// utc is a scanned timestamp in UTC.
func utc(t time.Time) time.Time { return t.UTC() }
