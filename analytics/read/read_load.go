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
	// raw reads the raw readings of one hour instead: a row a reading, Last its time.
	raw bool
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

// The reads, of every row or those devices.where selects, in one snapshot (REPEATABLE READ):
// an hour's rows are those of its version read with them; an hour without data, version 0.
const (
	versionsSQL    = `SELECT hour, version FROM rollup_hours WHERE hour = ANY(@hours)`
	metersSQL      = `SELECT hour, meter_id, mwh_consumed_ac, voltage_sum, readings, coalesce(last_ts, 'epoch') FROM meter_hourly WHERE hour = ANY(@hours)`
	vehiclesSQL    = `SELECT hour, vehicle_id, meter_id, mwh_delivered_dc, battery_temp_sum, readings, coalesce(last_ts, 'epoch') FROM vehicle_hourly WHERE hour = ANY(@hours)`
	rawMetersSQL   = `SELECT @from::timestamptz, meter_id, mwh_consumed_ac, voltage, 1, ts FROM meter_telemetry_history WHERE ts >= @from AND ts < @to`
	rawVehiclesSQL = `SELECT @from::timestamptz, vehicle_id, meter_id, mwh_delivered_dc, battery_temp, 1, ts FROM vehicle_telemetry_history WHERE ts >= @from AND ts < @to`
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

// loadHours reads the rows of hours that d selects: rollups, or the raw readings of one hour.
// A row's Last 0 is unknown (a rollup's last_ts NULL).
func loadHours(ctx context.Context, db shards.DBTX, hours []time.Time, d devices) (map[time.Time]*Hour, error) {
	versions := map[time.Time]int64{}
	meters := map[time.Time][]MeterRow{}
	vehicles := map[time.Time][]VehicleRow{}
	args := pgx.NamedArgs{"hours": hours, "meters": d.meters, "vehicle": d.vehicle, "since": d.since, "from": hours[0], "to": hours[0].Add(time.Hour)}
	metersOf, vehiclesOf := metersSQL+d.where(ofMeters), vehiclesSQL+d.where(ofVehicles)
	if d.raw {
		metersOf, vehiclesOf = rawMetersSQL+d.where(ofMeters), rawVehiclesSQL+d.where(ofRawVehicles)
	}
	err := snapshot(ctx, db, func(tx pgx.Tx) error {
		var h, last time.Time
		var version int64
		if err := scanRows(ctx, tx, versionsSQL, args, []any{&h, &version}, func() {
			versions[h.UTC()] = version
		}); err != nil {
			return err
		}
		var m MeterRow
		if err := scanRows(ctx, tx, metersOf, args, []any{&h, &m.Meter, &m.AC, &m.VoltageSum, &m.Readings, &last}, func() {
			m.Last = last.UnixMicro()
			meters[h.UTC()] = append(meters[h.UTC()], m)
		}); err != nil {
			return err
		}
		var v VehicleRow
		return scanRows(ctx, tx, vehiclesOf, args, []any{&h, &v.Vehicle, &v.Meter, &v.DC, &v.TempSum, &v.Readings, &last}, func() {
			v.Last = last.UnixMicro()
			vehicles[h.UTC()] = append(vehicles[h.UTC()], v)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading the rows of %d hour(s) from %s: %w", len(hours), hours[0].Format(time.RFC3339), err)
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
