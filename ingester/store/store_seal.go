package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// sealHoursSQL packs, in one statement and so from one snapshot, the rollup rows of the hours
// in [$1, $2) whose packed row (rollup_sealed) is missing or at another version than the
// hour's, newest first, at most $3 of them (format: migrations/0007_energy_mwh.sql). A
// packed row is replaced only by one of another version; packing the same hour twice at once
// leaves one of the two versions, and a stale one is packed again on the next pass.
const sealHoursSQL = `
WITH todo AS MATERIALIZED (
       SELECT r.hour, r.version
         FROM rollup_hours r
         LEFT JOIN rollup_sealed s ON s.hour = r.hour
        WHERE r.hour >= $1 AND r.hour < $2 AND s.version IS DISTINCT FROM r.version
        ORDER BY r.hour DESC
        LIMIT $3)
INSERT INTO rollup_sealed AS s (hour, version, meters, vehicles)
SELECT t.hour, t.version,
       coalesce((SELECT string_agg(int4send(octet_length(convert_to(m.meter_id, 'UTF8'))) || convert_to(m.meter_id, 'UTF8')
                                   || int8send(m.mwh_consumed_ac) || float8send(m.voltage_sum)
                                   || int4send(m.readings), ''::bytea)
                   FROM meter_hourly m WHERE m.hour = t.hour), ''::bytea),
       coalesce((SELECT string_agg(int4send(octet_length(convert_to(v.vehicle_id, 'UTF8'))) || convert_to(v.vehicle_id, 'UTF8')
                                   || int4send(octet_length(convert_to(v.meter_id, 'UTF8'))) || convert_to(v.meter_id, 'UTF8')
                                   || int8send(v.mwh_delivered_dc) || float8send(v.battery_temp_sum)
                                   || int4send(v.readings), ''::bytea)
                   FROM vehicle_hourly v WHERE v.hour = t.hour), ''::bytea)
  FROM todo t
ON CONFLICT (hour) DO UPDATE
   SET version = excluded.version, meters = excluded.meters, vehicles = excluded.vehicles
 WHERE s.version <> excluded.version
RETURNING hour`

// SealHours packs the rollups of the hours in [from, to) whose packed row is missing or
// stale (their data changed since), newest first and at most limit of them, and deletes the
// packed rows of hours before from. It returns the hours packed; none when another caller is
// packing the same database. Readers use a packed hour only at the hour's current version, so
// packing is never needed for an answer to be exact: it makes reading whole hours cheaper.
func (s *Store) SealHours(ctx context.Context, from, to time.Time, limit int) ([]time.Time, error) {
	var sealed []time.Time
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", partitionLockKey+2).Scan(&locked); err != nil {
			return fmt.Errorf("taking the packing lock: %w", err)
		}
		if !locked {
			return nil
		}
		if _, err := tx.Exec(ctx, "DELETE FROM rollup_sealed WHERE hour < $1", from); err != nil {
			return fmt.Errorf("deleting packed rollup hours before %s: %w", from.UTC().Format(time.RFC3339), err)
		}
		rows, err := tx.Query(ctx, sealHoursSQL, from, to, limit)
		if err != nil {
			return fmt.Errorf("packing rollup hours: %w", err)
		}
		hours, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			return fmt.Errorf("packing rollup hours: %w", err)
		}
		for _, h := range hours {
			sealed = append(sealed, h.UTC())
		}
		return nil
	})
	return sealed, err
}
