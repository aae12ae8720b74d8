package analytics_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

// The oracle computes every answer again from raw history in one unsharded database, with
// the definitions of docs/analytics.md written directly in SQL (no rollups, no placement).
// Energy is whole mWh, so the answers must equal it exactly.

const oracleHours = `
hours AS (
  SELECT greatest(h, $2::timestamptz) AS f, least(h + interval '1 hour', $3::timestamptz) AS t
    FROM generate_series(date_bin('1 hour', $2::timestamptz, '1970-01-01'), $3::timestamptz - interval '1 microsecond', interval '1 hour') AS h)`

const oracleVehicleSQL = `
WITH ` + oracleHours + `,
vm AS (SELECT DISTINCT i.meter_id, hours.f, hours.t
         FROM mapping_intervals i JOIN hours ON i.f < hours.t AND coalesce(i.t, 'infinity') > hours.f
        WHERE i.vehicle_id = $1),
seg AS (SELECT vm.*,
   (SELECT coalesce(sum(mwh_consumed_ac), 0) FROM meter_telemetry_history x WHERE x.meter_id = vm.meter_id AND x.ts >= vm.f AND x.ts < vm.t) AS ac,
   (SELECT count(*) FROM meter_telemetry_history x WHERE x.meter_id = vm.meter_id AND x.ts >= vm.f AND x.ts < vm.t) AS mn,
   (SELECT coalesce(sum(mwh_delivered_dc), 0) FROM vehicle_telemetry_history x WHERE x.meter_id = vm.meter_id AND x.ts >= vm.f AND x.ts < vm.t) AS tot,
   (SELECT coalesce(sum(mwh_delivered_dc), 0) FROM vehicle_telemetry_history x WHERE x.vehicle_id = $1 AND x.meter_id = vm.meter_id AND x.ts >= vm.f AND x.ts < vm.t) AS mine,
   (SELECT count(DISTINCT vehicle_id) FROM mapping_intervals i WHERE i.meter_id = vm.meter_id AND i.f < vm.t AND coalesce(i.t, 'infinity') > vm.f) AS k
  FROM vm)
SELECT
  (SELECT coalesce(sum(mwh_delivered_dc), 0)::int8 FROM vehicle_telemetry_history WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3),
  (SELECT count(*) FROM vehicle_telemetry_history WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3),
  (SELECT avg(battery_temp) FROM vehicle_telemetry_history WHERE vehicle_id = $1 AND ts >= $2 AND ts < $3),
  (SELECT coalesce(sum(CASE WHEN tot > 0 THEN div(2 * ac * mine + tot, 2 * tot) ELSE div(2 * ac + k, 2 * k) END), 0)::int8 FROM seg),
  (SELECT coalesce(sum(mn), 0) FROM seg),
  (SELECT coalesce(bool_or(k > 1 AND tot = 0 AND ac > 0), false) OR
          coalesce(bool_or(EXISTS (SELECT 1 FROM vehicle_telemetry_history x WHERE x.meter_id = seg.meter_id AND x.vehicle_id <> $1 AND x.ts >= seg.f AND x.ts < seg.t)), false) FROM seg)`

type vehicleTruth struct {
	dc, ac int64 // mWh
	n, mn  int64
	temp   *float64
	shared bool
}

func (f *fixture) oracleVehicle(t *testing.T, id string, from, to time.Time) vehicleTruth {
	t.Helper()
	var v vehicleTruth
	if err := f.oracle.QueryRow(context.Background(), oracleVehicleSQL, id, from, to).Scan(&v.dc, &v.n, &v.temp, &v.ac, &v.mn, &v.shared); err != nil {
		t.Fatalf("oracle for vehicle %s: %v", id, err)
	}
	return v
}

type meterTruth struct {
	ac, dc       int64 // mWh
	mn, vn       int64
	unattributed int64
	vehicles     map[string][2]int64 // dc, ac
}

const oracleMeterSegSQL = `
WITH ` + oracleHours + `
SELECT hours.f, hours.t,
  (SELECT coalesce(sum(mwh_consumed_ac), 0)::int8 FROM meter_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t),
  (SELECT count(*) FROM meter_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t),
  (SELECT coalesce(sum(mwh_delivered_dc), 0)::int8 FROM vehicle_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t),
  (SELECT count(*) FROM vehicle_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t),
  (SELECT coalesce(array_agg(DISTINCT vehicle_id), '{}') FROM mapping_intervals i WHERE i.meter_id = $1 AND i.f < hours.t AND coalesce(i.t, 'infinity') > hours.f),
  (SELECT coalesce(array_agg(vehicle_id ORDER BY vehicle_id), '{}') FROM (SELECT vehicle_id, sum(mwh_delivered_dc) AS dc FROM vehicle_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t GROUP BY vehicle_id) v),
  (SELECT coalesce(array_agg(dc ORDER BY vehicle_id), '{}') FROM (SELECT vehicle_id, sum(mwh_delivered_dc)::int8 AS dc FROM vehicle_telemetry_history x WHERE x.meter_id = $1 AND x.ts >= hours.f AND x.ts < hours.t GROUP BY vehicle_id) v)
FROM hours`

func (f *fixture) oracleMeter(t *testing.T, id string, from, to time.Time) meterTruth {
	t.Helper()
	rows, err := f.oracle.Query(context.Background(), oracleMeterSegSQL, id, from, to)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := meterTruth{vehicles: map[string][2]int64{}}
	for rows.Next() {
		var (
			sf, st      time.Time
			ac, tot     int64
			mn, vn      int64
			mapped, ids []string
			dcs         []int64
		)
		if err := rows.Scan(&sf, &st, &ac, &mn, &tot, &vn, &mapped, &ids, &dcs); err != nil {
			t.Fatal(err)
		}
		m.ac += ac
		m.dc += tot
		m.mn += mn
		m.vn += vn
		for i, id := range ids {
			v := m.vehicles[id]
			v[0] += dcs[i]
			if tot > 0 {
				v[1] += attribution.Share(ac, dcs[i], tot)
			}
			m.vehicles[id] = v
		}
		if tot == 0 && ac > 0 {
			if len(mapped) == 0 {
				m.unattributed += ac
			}
			for _, id := range mapped {
				v := m.vehicles[id]
				v[1] += attribution.Equal(ac, len(mapped))
				m.vehicles[id] = v
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// kwh is an exact mWh sum as an answer states it, in kWh.
func kwh(mwh int64) float64 { return telemetry.KWh(mwh) }

// nearFloat reports whether got equals want within a relative 1e-9: for averages of floats
// (temperature, voltage), summed in different orders.
func nearFloat(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Max(math.Abs(got), math.Abs(want)))
}

// ratio is the efficiency an answer states for exact sums.
func ratio(dc, ac int64) float64 { return float64(dc) / float64(ac) }
