package read

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/analytics/shards"
)

// VehicleStatus is a row of current_vehicle_status.
type VehicleStatus struct {
	VehicleID     string
	SOC, Temp     float64
	DC            int64 // mWh
	MeterID       string
	LastUpdatedAt time.Time
}

// MeterStatus is a row of current_meter_status.
type MeterStatus struct {
	MeterID       string
	AC            int64 // mWh
	Voltage       float64
	LastUpdatedAt time.Time
}

const vehicleStatusCols = `vehicle_id, soc, last_mwh_delivered_dc, battery_temp, meter_id, last_updated_at`
const meterStatusCols = `meter_id, last_mwh_consumed_ac, voltage, last_updated_at`

func scanVehicleStatus(r pgx.CollectableRow) (VehicleStatus, error) {
	var s VehicleStatus
	err := r.Scan(&s.VehicleID, &s.SOC, &s.DC, &s.Temp, &s.MeterID, &s.LastUpdatedAt)
	s.LastUpdatedAt = utc(s.LastUpdatedAt)
	return s, err
}

func scanMeterStatus(r pgx.CollectableRow) (MeterStatus, error) {
	var s MeterStatus
	err := r.Scan(&s.MeterID, &s.AC, &s.Voltage, &s.LastUpdatedAt)
	s.LastUpdatedAt = utc(s.LastUpdatedAt)
	return s, err
}

// GetVehicleStatus reads a vehicle's current row; ok is false when the shard has none.
func GetVehicleStatus(ctx context.Context, db shards.DBTX, vehicleID string) (VehicleStatus, bool, error) {
	rows, err := db.Query(ctx, `SELECT `+vehicleStatusCols+` FROM current_vehicle_status WHERE vehicle_id = $1`, vehicleID)
	if err != nil {
		return VehicleStatus{}, false, err
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanVehicleStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return VehicleStatus{}, false, nil
	}
	return s, err == nil, err
}

// GetMeterStatus reads a meter's current row; ok is false when the shard has none.
func GetMeterStatus(ctx context.Context, db shards.DBTX, meterID string) (MeterStatus, bool, error) {
	rows, err := db.Query(ctx, `SELECT `+meterStatusCols+` FROM current_meter_status WHERE meter_id = $1`, meterID)
	if err != nil {
		return MeterStatus{}, false, err
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanMeterStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return MeterStatus{}, false, nil
	}
	return s, err == nil, err
}

// Cursor is a position in (last_updated_at, id) order.
type Cursor struct {
	At time.Time
	ID string
}

// SilentVehicles reads up to limit vehicles last heard before cutoff, after cur, oldest first.
func SilentVehicles(ctx context.Context, db shards.DBTX, cutoff time.Time, cur Cursor, limit int) ([]VehicleStatus, error) {
	rows, err := db.Query(ctx, `SELECT `+vehicleStatusCols+` FROM current_vehicle_status
 WHERE last_updated_at < $1 AND (last_updated_at, vehicle_id) > ($2, $3)
 ORDER BY last_updated_at, vehicle_id LIMIT $4`, cutoff, cur.At, cur.ID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanVehicleStatus)
}

// NewestVehicleReadings returns, for the given vehicles, the newest last_updated_at this shard holds.
func NewestVehicleReadings(ctx context.Context, db shards.DBTX, vehicleIDs []string) (map[string]time.Time, error) {
	rows, err := db.Query(ctx, `SELECT vehicle_id, last_updated_at FROM current_vehicle_status WHERE vehicle_id = ANY($1)`, vehicleIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = at.UTC()
	}
	return out, rows.Err()
}

// SilentMeters reads up to limit meters last heard before cutoff, after cur, oldest first.
func SilentMeters(ctx context.Context, db shards.DBTX, cutoff time.Time, cur Cursor, limit int) ([]MeterStatus, error) {
	rows, err := db.Query(ctx, `SELECT `+meterStatusCols+` FROM current_meter_status
 WHERE last_updated_at < $1 AND (last_updated_at, meter_id) > ($2, $3)
 ORDER BY last_updated_at, meter_id LIMIT $4`, cutoff, cur.At, cur.ID, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanMeterStatus)
}

// utc is a scanned timestamp in UTC.
func utc(t time.Time) time.Time { return t.UTC() }
