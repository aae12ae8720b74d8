package read

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/analytics/shards"
)

// devices limits a read to the rows one question needs: a vehicle's and those of meters with
// the vehicles attributed to them. The zero value reads every row.
type devices struct {
	vehicle string
	meters  []string
}

func (d devices) all() bool { return d.vehicle == "" && d.meters == nil }

// The reads, each of every row or of the rows of some devices (the filter's parameters
// follow the common ones). A read of several statements runs in one snapshot of the shard
// (REPEATABLE READ): every hour's rows are those of the version read with them, and an hour
// without data has version 0 and no rows.
const (
	versionsSQL    = `SELECT hour, version FROM rollup_hours WHERE hour = ANY($1)`
	metersSQL      = `SELECT hour, meter_id, mwh_consumed_ac, voltage_sum, readings, coalesce(last_ts, 'epoch') FROM meter_hourly WHERE hour = ANY($1)`
	metersOfSQL    = metersSQL + ` AND meter_id = ANY($2)`
	vehiclesSQL    = `SELECT hour, vehicle_id, meter_id, mwh_delivered_dc, battery_temp_sum, readings, coalesce(last_ts, 'epoch') FROM vehicle_hourly WHERE hour = ANY($1)`
	vehiclesOfSQL  = vehiclesSQL + ` AND (vehicle_id = $3 OR meter_id = ANY($2))`
	rawMetersSQL   = `SELECT meter_id, ts, mwh_consumed_ac, voltage FROM meter_telemetry_history WHERE ts >= $1 AND ts < $2`
	rawMetersOfSQL = rawMetersSQL + ` AND meter_id = ANY($3)`
	rawVehiclesSQL = `SELECT vehicle_id, meter_id, ts, mwh_delivered_dc, battery_temp FROM vehicle_telemetry_history WHERE ts >= $1 AND ts < $2`
	// A vehicle's readings and those attributed to the meters, found by the vehicles the
	// hour's rollups attribute to them (history is keyed by vehicle).
	rawVehiclesOfSQL = rawVehiclesSQL + ` AND vehicle_id = ANY(ARRAY(SELECT vehicle_id FROM vehicle_hourly
 WHERE hour = date_bin('1 hour', $1, 'epoch') AND meter_id = ANY($3)) || $4::text)`
)

// pick is the statement and parameters of a read of every row (all) or of d's.
func pick(d devices, all, of string, common ...any) (string, []any) {
	if d.all() {
		return all, common
	}
	return of, append(common, d.meters, d.vehicle)
}

// snapshot runs fn in one read-only REPEATABLE READ transaction on db.
func snapshot(ctx context.Context, db shards.DBTX, fn func(tx pgx.Tx) error) error {
	b, ok := db.(interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	})
	if !ok {
		return fmt.Errorf("reading from %T: it starts no transactions", db)
	}
	return pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// loadHours reads the rollup rows of hours (only those of d, unless d is all).
func loadHours(ctx context.Context, db shards.DBTX, hours []time.Time, d devices) (map[time.Time]*Hour, error) {
	versions := map[time.Time]int64{}
	meters := map[time.Time][]MeterRow{}
	vehicles := map[time.Time][]VehicleRow{}
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		var h, last time.Time
		var version int64
		if err := scanRows(ctx, tx, versionsSQL, []any{hours}, []any{&h, &version}, func() {
			versions[h.UTC()] = version
		}); err != nil {
			return err
		}
		var m MeterRow
		sql, args := pick(d, metersSQL, metersOfSQL, hours)
		if !d.all() {
			args = args[:2] // the meters only
		}
		if err := scanRows(ctx, tx, sql, args, []any{&h, &m.Meter, &m.AC, &m.VoltageSum, &m.Readings, &last}, func() {
			m.Last = micros(last)
			meters[h.UTC()] = append(meters[h.UTC()], m)
		}); err != nil {
			return err
		}
		var v VehicleRow
		sql, args = pick(d, vehiclesSQL, vehiclesOfSQL, hours)
		return scanRows(ctx, tx, sql, args, []any{&h, &v.Vehicle, &v.Meter, &v.DC, &v.TempSum, &v.Readings, &last}, func() {
			v.Last = micros(last)
			vehicles[h.UTC()] = append(vehicles[h.UTC()], v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the rollups of %d hours: %w", len(hours), err)
	}
	out := make(map[time.Time]*Hour, len(hours))
	for _, h := range hours {
		h = h.UTC()
		out[h] = newHour(h, versions[h], meters[h], vehicles[h])
	}
	return out, nil
}

// loadChanges reads the rollup rows of a held hour written since its version (each row
// carries the version of the transaction that last wrote it; migration 0009) and returns the
// hour with them, at the hour's version, read in the same snapshot. Rows are never deleted
// from an hour memory can hold (retention removes hours long past the horizon).
func loadChanges(ctx context.Context, db shards.DBTX, held *Hour) (*Hour, error) {
	var version int64
	var meters []MeterRow
	var vehicles []VehicleRow
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM rollup_hours WHERE hour = $1), 0)`, held.At).Scan(&version); err != nil {
			return err
		}
		args := []any{held.At, held.Version}
		var last time.Time
		var m MeterRow
		if err := scanRows(ctx, tx, changedMetersSQL, args, []any{&m.Meter, &m.AC, &m.VoltageSum, &m.Readings, &last}, func() {
			m.Last = micros(last)
			meters = append(meters, m)
		}); err != nil {
			return err
		}
		var v VehicleRow
		return scanRows(ctx, tx, changedVehiclesSQL, args, []any{&v.Vehicle, &v.Meter, &v.DC, &v.TempSum, &v.Readings, &last}, func() {
			v.Last = micros(last)
			vehicles = append(vehicles, v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the changed rows of %s: %w", held.At.Format(time.RFC3339), err)
	}
	return held.with(version, meters, vehicles), nil
}

const (
	changedMetersSQL   = `SELECT meter_id, mwh_consumed_ac, voltage_sum, readings, coalesce(last_ts, 'epoch') FROM meter_hourly WHERE hour = $1 AND version > $2`
	changedVehiclesSQL = `SELECT vehicle_id, meter_id, mwh_delivered_dc, battery_temp_sum, readings, coalesce(last_ts, 'epoch') FROM vehicle_hourly WHERE hour = $1 AND version > $2`
)

// loadRaw reads the raw readings of the hour at (only those of d, unless d is all), with
// the hour's version from the same snapshot.
func loadRaw(ctx context.Context, db shards.DBTX, at time.Time, d devices) (*Raw, error) {
	var version int64
	var meters []rawMeter
	var vehicles []rawVehicle
	from, to := at, at.Add(time.Hour)
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM rollup_hours WHERE hour = $1), 0)`, at).Scan(&version); err != nil {
			return err
		}
		sql, args := pick(d, rawMetersSQL, rawMetersOfSQL, from, to)
		if !d.all() {
			args = args[:3]
		}
		var ts time.Time
		var m rawMeter
		if err := scanRows(ctx, tx, sql, args, []any{&m.meter, &ts, &m.ac, &m.voltage}, func() {
			m.ts = ts.UnixMicro()
			meters = append(meters, m)
		}); err != nil {
			return err
		}
		var v rawVehicle
		sql, args = pick(d, rawVehiclesSQL, rawVehiclesOfSQL, from, to)
		return scanRows(ctx, tx, sql, args, []any{&v.vehicle, &v.meter, &ts, &v.dc, &v.temp}, func() {
			v.ts = ts.UnixMicro()
			vehicles = append(vehicles, v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the raw readings of %s: %w", at.Format(time.RFC3339), err)
	}
	return newRaw(at, version, meters, vehicles), nil
}

// loadVersions reads the versions of the hours from `from` on.
func loadVersions(ctx context.Context, db shards.DBTX, from time.Time) (map[time.Time]int64, error) {
	out := map[time.Time]int64{}
	var h time.Time
	var v int64
	if err := scanRows(ctx, db, `SELECT hour, version FROM rollup_hours WHERE hour >= $1`, []any{from}, []any{&h, &v}, func() {
		out[h.UTC()] = v
	}); err != nil {
		return nil, fmt.Errorf("reading the hours' versions: %w", err)
	}
	return out, nil
}

// scanRows runs a statement and calls fn after scanning each of its rows into dest.
func scanRows(ctx context.Context, db shards.DBTX, sql string, args, dest []any, fn func()) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	_, err = pgx.ForEachRow(rows, dest, func() error {
		fn()
		return nil
	})
	return err
}

// micros is a row's latest reading in Unix microseconds; 0 for unknown (stored as NULL).
func micros(t time.Time) int64 {
	if t.Unix() == 0 {
		return 0
	}
	return t.UnixMicro()
}
