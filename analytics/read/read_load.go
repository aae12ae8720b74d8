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
	// since limits a read of rollups to the rows written after that version (each row carries
	// the version of the transaction that last wrote it; migration 0009).
	since int64
}

// where is the condition that selects d's rows: of, unless d reads every row, or the rows
// written since a version.
func (d devices) where(of string) string {
	switch {
	case d.since > 0:
		return ` AND version > @since`
	case d.vehicle == "" && d.meters == nil:
		return ""
	}
	return of
}

// The reads, each of every row or of the rows devices.where selects. A read of several
// statements runs in one snapshot of the shard (REPEATABLE READ): every hour's rows are
// those of the version read with them, and an hour without data has version 0 and no rows.
const (
	versionsSQL    = `SELECT hour, version FROM rollup_hours WHERE hour = ANY(@hours)`
	metersSQL      = `SELECT hour, meter_id, mwh_consumed_ac, voltage_sum, readings, coalesce(last_ts, 'epoch') FROM meter_hourly WHERE hour = ANY(@hours)`
	vehiclesSQL    = `SELECT hour, vehicle_id, meter_id, mwh_delivered_dc, battery_temp_sum, readings, coalesce(last_ts, 'epoch') FROM vehicle_hourly WHERE hour = ANY(@hours)`
	rawMetersSQL   = `SELECT meter_id, ts, mwh_consumed_ac, voltage FROM meter_telemetry_history WHERE ts >= @from AND ts < @to`
	rawVehiclesSQL = `SELECT vehicle_id, meter_id, ts, mwh_delivered_dc, battery_temp FROM vehicle_telemetry_history WHERE ts >= @from AND ts < @to`
	ofMeters       = ` AND meter_id = ANY(@meters)`
	ofVehicles     = ` AND (vehicle_id = @vehicle OR meter_id = ANY(@meters))`
	// A vehicle's readings and those attributed to the meters, found by the vehicles the
	// hour's rollups attribute to them (history is keyed by vehicle).
	ofRawVehicles = ` AND vehicle_id = ANY(ARRAY(SELECT vehicle_id FROM vehicle_hourly
 WHERE hour = date_bin('1 hour', @from, 'epoch') AND meter_id = ANY(@meters)) || @vehicle::text)`
)

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

// loadHours reads the rollup rows of hours that d selects.
func loadHours(ctx context.Context, db shards.DBTX, hours []time.Time, d devices) (map[time.Time]*Hour, error) {
	versions := map[time.Time]int64{}
	meters := map[time.Time][]MeterRow{}
	vehicles := map[time.Time][]VehicleRow{}
	args := pgx.NamedArgs{"hours": hours, "meters": d.meters, "vehicle": d.vehicle, "since": d.since}
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		var h, last time.Time
		var version int64
		if err := scanRows(ctx, tx, versionsSQL, args, []any{&h, &version}, func() {
			versions[h.UTC()] = version
		}); err != nil {
			return err
		}
		var m MeterRow
		if err := scanRows(ctx, tx, metersSQL+d.where(ofMeters), args, []any{&h, &m.Meter, &m.AC, &m.VoltageSum, &m.Readings, &last}, func() {
			m.Last = micros(last)
			meters[h.UTC()] = append(meters[h.UTC()], m)
		}); err != nil {
			return err
		}
		var v VehicleRow
		return scanRows(ctx, tx, vehiclesSQL+d.where(ofVehicles), args, []any{&h, &v.Vehicle, &v.Meter, &v.DC, &v.TempSum, &v.Readings, &last}, func() {
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

// loadChanges reads the rollup rows of a held hour written since its version and returns the
// hour with them, at the hour's version read in the same snapshot. Rows are never deleted
// from an hour memory can hold (retention removes hours long past the horizon).
func loadChanges(ctx context.Context, db shards.DBTX, held *Hour) (*Hour, error) {
	changed, err := loadHours(ctx, db, []time.Time{held.At}, devices{since: held.Version})
	if err != nil {
		return nil, err
	}
	h := changed[held.At]
	return held.with(h.Version, h.Meters, h.Vehicles), nil
}

// loadRaw reads the raw readings of the hour at that d selects, a row a reading with Last its
// time, with the hour's version from the same snapshot.
func loadRaw(ctx context.Context, db shards.DBTX, at time.Time, d devices) (*Hour, error) {
	var version int64
	var meters []MeterRow
	var vehicles []VehicleRow
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM rollup_hours WHERE hour = $1), 0)`, at).Scan(&version); err != nil {
			return err
		}
		args := pgx.NamedArgs{"from": at, "to": at.Add(time.Hour), "meters": d.meters, "vehicle": d.vehicle}
		var ts time.Time
		m := MeterRow{Readings: 1}
		if err := scanRows(ctx, tx, rawMetersSQL+d.where(ofMeters), args, []any{&m.Meter, &ts, &m.AC, &m.VoltageSum}, func() {
			m.Last = ts.UnixMicro()
			meters = append(meters, m)
		}); err != nil {
			return err
		}
		v := VehicleRow{Readings: 1}
		return scanRows(ctx, tx, rawVehiclesSQL+d.where(ofRawVehicles), args, []any{&v.Vehicle, &v.Meter, &ts, &v.DC, &v.TempSum}, func() {
			v.Last = ts.UnixMicro()
			vehicles = append(vehicles, v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the raw readings of %s: %w", at.Format(time.RFC3339), err)
	}
	return newHour(at, version, meters, vehicles), nil
}

// loadVersions reads the versions of the hours from `from` on.
func loadVersions(ctx context.Context, db shards.DBTX, from time.Time) (map[time.Time]int64, error) {
	out := map[time.Time]int64{}
	var h time.Time
	var v int64
	if err := scanRows(ctx, db, `SELECT hour, version FROM rollup_hours WHERE hour >= @from`, pgx.NamedArgs{"from": from}, []any{&h, &v}, func() {
		out[h.UTC()] = v
	}); err != nil {
		return nil, fmt.Errorf("reading the hours' versions: %w", err)
	}
	return out, nil
}

// scanRows runs a statement and calls fn after scanning each of its rows into dest.
func scanRows(ctx context.Context, db shards.DBTX, sql string, args pgx.NamedArgs, dest []any, fn func()) error {
	rows, err := db.Query(ctx, sql, args)
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
