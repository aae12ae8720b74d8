// Package fleetload loads readings into Postgres shards for analytics tests and benchmarks,
// the way the ingester stores them: history rows (de-duplicated on their primary key), hourly
// rollups updated from exactly the rows inserted, and current status moved only forward.
// Readings are placed on shards by the mapping at their timestamp.
package fleetload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// VehicleReading is one vehicle row; MeterID is the meter it was mapped to at TS (” if none).
type VehicleReading struct {
	VehicleID     string
	TS            time.Time
	SOC, DC, Temp float64
	MeterID       string
}

// MeterReading is one meter row.
type MeterReading struct {
	MeterID     string
	TS          time.Time
	AC, Voltage float64
}

// SchemaFile is the shard schema migration, found relative to this source file.
func SchemaFile() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("locating the shard schema: no caller information")
	}
	return filepath.Join(filepath.Dir(self), "..", "..", "ingester", "store", "migrations", "0001_init.sql"), nil
}

// ApplySchema creates the shard schema on an empty database.
func ApplySchema(ctx context.Context, db *pgxpool.Pool) error {
	path, err := SchemaFile()
	if err != nil {
		return err
	}
	sql, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the shard schema: %w", err)
	}
	if _, err := db.Exec(ctx, string(sql)); err != nil {
		return fmt.Errorf("applying the shard schema: %w", err)
	}
	return nil
}

// EnsurePartitions creates the daily history partitions covering [from, to).
func EnsurePartitions(ctx context.Context, db *pgxpool.Pool, from, to time.Time) error {
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.Add(24 * time.Hour) {
		for _, table := range []string{"meter_telemetry_history", "vehicle_telemetry_history"} {
			part := fmt.Sprintf("%s_p%s", table, d.Format("20060102"))
			sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')`,
				part, table, d.Format(time.RFC3339), d.Add(24*time.Hour).Format(time.RFC3339))
			if _, err := db.Exec(ctx, sql); err != nil {
				return fmt.Errorf("creating partition %s: %w", part, err)
			}
		}
	}
	return nil
}

const vehicleUpsert = `
WITH ins AS (
  INSERT INTO vehicle_telemetry_history (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, meter_id)
  SELECT DISTINCT ON (vehicle_id, ts) vehicle_id, ts, soc, kwh_delivered_dc, battery_temp, meter_id
    FROM stage_vehicle ORDER BY vehicle_id, ts
  ON CONFLICT DO NOTHING
  RETURNING *
), roll AS (
  INSERT INTO vehicle_hourly (vehicle_id, meter_id, hour, kwh_delivered_dc, battery_temp_sum, soc_min, soc_max, readings)
  SELECT vehicle_id, meter_id, date_bin('1 hour', ts, '1970-01-01'), sum(kwh_delivered_dc), sum(battery_temp), min(soc), max(soc), count(*)
    FROM ins GROUP BY 1, 2, 3
  ON CONFLICT (vehicle_id, hour, meter_id) DO UPDATE SET
    kwh_delivered_dc = vehicle_hourly.kwh_delivered_dc + excluded.kwh_delivered_dc,
    battery_temp_sum = vehicle_hourly.battery_temp_sum + excluded.battery_temp_sum,
    soc_min = least(vehicle_hourly.soc_min, excluded.soc_min),
    soc_max = greatest(vehicle_hourly.soc_max, excluded.soc_max),
    readings = vehicle_hourly.readings + excluded.readings
), status AS (
  INSERT INTO current_vehicle_status (vehicle_id, soc, last_kwh_delivered_dc, battery_temp, meter_id, last_updated_at)
  SELECT DISTINCT ON (vehicle_id) vehicle_id, soc, kwh_delivered_dc, battery_temp, meter_id, ts
    FROM ins ORDER BY vehicle_id, ts DESC
  ON CONFLICT (vehicle_id) DO UPDATE SET
    soc = excluded.soc, last_kwh_delivered_dc = excluded.last_kwh_delivered_dc,
    battery_temp = excluded.battery_temp, meter_id = excluded.meter_id, last_updated_at = excluded.last_updated_at
  WHERE current_vehicle_status.last_updated_at < excluded.last_updated_at
)
SELECT count(*) FROM ins`

const meterUpsert = `
WITH ins AS (
  INSERT INTO meter_telemetry_history (meter_id, ts, kwh_consumed_ac, voltage)
  SELECT DISTINCT ON (meter_id, ts) meter_id, ts, kwh_consumed_ac, voltage
    FROM stage_meter ORDER BY meter_id, ts
  ON CONFLICT DO NOTHING
  RETURNING *
), roll AS (
  INSERT INTO meter_hourly (meter_id, hour, kwh_consumed_ac, voltage_sum, readings)
  SELECT meter_id, date_bin('1 hour', ts, '1970-01-01'), sum(kwh_consumed_ac), sum(voltage), count(*)
    FROM ins GROUP BY 1, 2
  ON CONFLICT (meter_id, hour) DO UPDATE SET
    kwh_consumed_ac = meter_hourly.kwh_consumed_ac + excluded.kwh_consumed_ac,
    voltage_sum = meter_hourly.voltage_sum + excluded.voltage_sum,
    readings = meter_hourly.readings + excluded.readings
), status AS (
  INSERT INTO current_meter_status (meter_id, last_kwh_consumed_ac, voltage, last_updated_at)
  SELECT DISTINCT ON (meter_id) meter_id, kwh_consumed_ac, voltage, ts
    FROM ins ORDER BY meter_id, ts DESC
  ON CONFLICT (meter_id) DO UPDATE SET
    last_kwh_consumed_ac = excluded.last_kwh_consumed_ac, voltage = excluded.voltage,
    last_updated_at = excluded.last_updated_at
  WHERE current_meter_status.last_updated_at < excluded.last_updated_at
)
SELECT count(*) FROM ins`

// WriteBatch stores one batch in one transaction, as an ingester does: COPY into a staging
// table, then history insert (duplicates dropped), rollup upsert from exactly the rows
// inserted, and the forward-only status upsert. It returns the rows inserted.
func WriteBatch(ctx context.Context, db *pgxpool.Pool, vs []VehicleReading, ms []MeterReading) (vehicles, meters int64, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("beginning batch: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE stage_vehicle (LIKE vehicle_telemetry_history) ON COMMIT DROP;
CREATE TEMP TABLE stage_meter (LIKE meter_telemetry_history) ON COMMIT DROP`); err != nil {
		return 0, 0, fmt.Errorf("creating staging tables: %w", err)
	}
	if err := copyVehicles(ctx, tx, "stage_vehicle", vs); err != nil {
		return 0, 0, err
	}
	if err := copyMeters(ctx, tx, "stage_meter", ms); err != nil {
		return 0, 0, err
	}
	if err := tx.QueryRow(ctx, vehicleUpsert).Scan(&vehicles); err != nil {
		return 0, 0, fmt.Errorf("storing vehicle readings: %w", err)
	}
	if err := tx.QueryRow(ctx, meterUpsert).Scan(&meters); err != nil {
		return 0, 0, fmt.Errorf("storing meter readings: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("committing batch: %w", err)
	}
	return vehicles, meters, nil
}

func copyVehicles(ctx context.Context, tx pgx.Tx, table string, vs []VehicleReading) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table},
		[]string{"vehicle_id", "ts", "soc", "kwh_delivered_dc", "battery_temp", "meter_id"},
		pgx.CopyFromSlice(len(vs), func(i int) ([]any, error) {
			v := vs[i]
			return []any{v.VehicleID, v.TS, v.SOC, v.DC, v.Temp, v.MeterID}, nil
		}))
	if err != nil {
		return fmt.Errorf("copying vehicle readings into %s: %w", table, err)
	}
	return nil
}

func copyMeters(ctx context.Context, tx pgx.Tx, table string, ms []MeterReading) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table},
		[]string{"meter_id", "ts", "kwh_consumed_ac", "voltage"},
		pgx.CopyFromSlice(len(ms), func(i int) ([]any, error) {
			m := ms[i]
			return []any{m.MeterID, m.TS, m.AC, m.Voltage}, nil
		}))
	if err != nil {
		return fmt.Errorf("copying meter readings into %s: %w", table, err)
	}
	return nil
}
