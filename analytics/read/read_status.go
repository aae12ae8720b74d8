package read

import (
	"context"
	"strings"
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

// Cursor is a position in (last_updated_at, id) order.
type Cursor struct {
	At time.Time
	ID string
}

// Compare orders cursors.
func (c Cursor) Compare(o Cursor) int {
	if n := c.At.Compare(o.At); n != 0 {
		return n
	}
	return strings.Compare(c.ID, o.ID)
}

// Cursor is the row's position.
func (s VehicleStatus) Cursor() Cursor { return Cursor{At: s.LastUpdatedAt, ID: s.VehicleID} }

// Cursor is the row's position.
func (s MeterStatus) Cursor() Cursor { return Cursor{At: s.LastUpdatedAt, ID: s.MeterID} }

const (
	vehicleStatusSQL = `SELECT vehicle_id, soc, last_mwh_delivered_dc, battery_temp, meter_id, last_updated_at FROM current_vehicle_status`
	meterStatusSQL   = `SELECT meter_id, last_mwh_consumed_ac, voltage, last_updated_at FROM current_meter_status`
)

func scanVehicleStatus(r pgx.CollectableRow) (VehicleStatus, error) {
	var s VehicleStatus
	err := r.Scan(&s.VehicleID, &s.SOC, &s.DC, &s.Temp, &s.MeterID, &s.LastUpdatedAt)
	s.LastUpdatedAt = s.LastUpdatedAt.UTC()
	return s, err
}

func scanMeterStatus(r pgx.CollectableRow) (MeterStatus, error) {
	var s MeterStatus
	err := r.Scan(&s.MeterID, &s.AC, &s.Voltage, &s.LastUpdatedAt)
	s.LastUpdatedAt = s.LastUpdatedAt.UTC()
	return s, err
}

// query collects the rows of one statement on the shard. Status is read from Postgres always:
// it changes with every reading.
func query[T any](ctx context.Context, s *Shard, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	var out []T
	err := s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) error {
		rows, err := db.Query(ctx, sql, args...)
		if err == nil {
			out, err = pgx.CollectRows(rows, scan)
		}
		return err
	})
	return out, err
}

// SilentVehicles reads up to limit vehicles last heard before cutoff, after cur, oldest first.
func (s *Shard) SilentVehicles(ctx context.Context, cutoff time.Time, cur Cursor, limit int) ([]VehicleStatus, error) {
	return query(ctx, s, scanVehicleStatus, vehicleStatusSQL+` WHERE last_updated_at < $1 AND (last_updated_at, vehicle_id) > ($2, $3)
 ORDER BY last_updated_at, vehicle_id LIMIT $4`, cutoff, cur.At, cur.ID, limit)
}

// SilentMeters reads up to limit meters last heard before cutoff, after cur, oldest first.
func (s *Shard) SilentMeters(ctx context.Context, cutoff time.Time, cur Cursor, limit int) ([]MeterStatus, error) {
	return query(ctx, s, scanMeterStatus, meterStatusSQL+` WHERE last_updated_at < $1 AND (last_updated_at, meter_id) > ($2, $3)
 ORDER BY last_updated_at, meter_id LIMIT $4`, cutoff, cur.At, cur.ID, limit)
}

// VehicleStatuses reads the rows this shard holds of the vehicles.
func (s *Shard) VehicleStatuses(ctx context.Context, ids []string) ([]VehicleStatus, error) {
	return query(ctx, s, scanVehicleStatus, vehicleStatusSQL+` WHERE vehicle_id = ANY($1)`, ids)
}

// MeterStatuses reads the rows this shard holds of the meters.
func (s *Shard) MeterStatuses(ctx context.Context, ids []string) ([]MeterStatus, error) {
	return query(ctx, s, scanMeterStatus, meterStatusSQL+` WHERE meter_id = ANY($1)`, ids)
}
