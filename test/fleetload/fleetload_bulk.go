package fleetload

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Source streams rows for COPY without holding them all in memory.
type Source = pgx.CopyFromSource

// BulkCopy COPYs rows straight into a history table (no de-duplication: the rows must be
// unique) for large benchmark loads; call BuildRollups afterwards.
func BulkCopy(ctx context.Context, db *pgxpool.Pool, vehicles bool, src Source) (int64, error) {
	table, cols := "meter_telemetry_history", []string{"meter_id", "ts", "mwh_consumed_ac", "voltage"}
	if vehicles {
		table, cols = "vehicle_telemetry_history", []string{"vehicle_id", "ts", "soc", "mwh_delivered_dc", "battery_temp", "meter_id"}
	}
	n, err := db.CopyFrom(ctx, pgx.Identifier{table}, cols, src)
	if err != nil {
		return n, fmt.Errorf("copying into %s: %w", table, err)
	}
	return n, nil
}

// BuildRollups fills the rollups and status tables from the whole history (after BulkCopy
// into empty tables), with the same aggregates the per-batch upserts keep, then analyzes.
func BuildRollups(ctx context.Context, db *pgxpool.Pool) error {
	stmts := []string{
		`INSERT INTO meter_hourly (meter_id, hour, mwh_consumed_ac, voltage_sum, readings, last_ts)
		 SELECT meter_id, date_bin('1 hour', ts, '1970-01-01'), sum(mwh_consumed_ac)::int8, sum(voltage), count(*), max(ts)
		   FROM meter_telemetry_history GROUP BY 1, 2`,
		`INSERT INTO vehicle_hourly (vehicle_id, meter_id, hour, mwh_delivered_dc, battery_temp_sum, soc_min, soc_max, readings, last_ts)
		 SELECT vehicle_id, meter_id, date_bin('1 hour', ts, '1970-01-01'), sum(mwh_delivered_dc)::int8, sum(battery_temp), min(soc), max(soc), count(*), max(ts)
		   FROM vehicle_telemetry_history GROUP BY 1, 2, 3`,
		`INSERT INTO rollup_hours (hour, version)
		 SELECT hour, nextval('rollup_version') FROM (SELECT hour FROM meter_hourly UNION SELECT hour FROM vehicle_hourly) h
		 ORDER BY hour
		 ON CONFLICT (hour) DO UPDATE SET version = excluded.version`,
		`INSERT INTO current_meter_status (meter_id, last_mwh_consumed_ac, voltage, last_updated_at)
		 SELECT DISTINCT ON (meter_id) meter_id, mwh_consumed_ac, voltage, ts FROM meter_telemetry_history ORDER BY meter_id, ts DESC`,
		`INSERT INTO current_vehicle_status (vehicle_id, soc, last_mwh_delivered_dc, battery_temp, meter_id, last_updated_at)
		 SELECT DISTINCT ON (vehicle_id) vehicle_id, soc, mwh_delivered_dc, battery_temp, meter_id, ts FROM vehicle_telemetry_history ORDER BY vehicle_id, ts DESC`,
		`VACUUM ANALYZE`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s); err != nil {
			return fmt.Errorf("building rollups: %w", err)
		}
	}
	return nil
}
