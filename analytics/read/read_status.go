package read

import (
	"cmp"
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/analytics/shards"
)

// Status is a device's current row: of current_vehicle_status or current_meter_status.
type Status struct {
	ID string
	// Energy is a vehicle's last DC or a meter's last AC, mWh.
	Energy int64
	// SOC, Temp and MeterID are a vehicle's, Voltage a meter's.
	SOC, Temp, Voltage float64
	MeterID            string
	LastUpdatedAt      time.Time
}

// Cursor is a position in (last_updated_at, id) order.
type Cursor struct {
	At time.Time
	ID string
}

// Compare orders cursors.
func (c Cursor) Compare(o Cursor) int {
	return cmp.Or(c.At.Compare(o.At), strings.Compare(c.ID, o.ID))
}

// Cursor is the row's position.
func (s Status) Cursor() Cursor { return Cursor{At: s.LastUpdatedAt, ID: s.ID} }

// Kind is a kind of device whose status is read: Vehicles or Meters.
type Kind struct {
	table, id, columns string
	fields             func(s *Status) []any
}

// The kinds of device.
var (
	Vehicles = Kind{
		table: "current_vehicle_status", id: "vehicle_id", columns: "soc, last_mwh_delivered_dc, battery_temp, meter_id",
		fields: func(s *Status) []any { return []any{&s.SOC, &s.Energy, &s.Temp, &s.MeterID} },
	}
	Meters = Kind{
		table: "current_meter_status", id: "meter_id", columns: "last_mwh_consumed_ac, voltage",
		fields: func(s *Status) []any { return []any{&s.Energy, &s.Voltage} },
	}
)

// statuses reads the rows of kind k that where selects. Status is read from Postgres always:
// it changes with every reading.
func (s *Shard) statuses(ctx context.Context, k Kind, where string, args pgx.NamedArgs) ([]Status, error) {
	sql := "SELECT " + k.id + ", " + k.columns + ", last_updated_at FROM " + k.table + " WHERE " + where
	var out []Status
	err := s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) error {
		out = out[:0]
		var st Status
		dest := append(append([]any{&st.ID}, k.fields(&st)...), &st.LastUpdatedAt)
		return scanRows(ctx, db, sql, args, dest, func() {
			st.LastUpdatedAt = st.LastUpdatedAt.UTC()
			out = append(out, st)
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Silent reads up to limit devices of kind k last heard before cutoff, after cur, oldest first.
func (s *Shard) Silent(ctx context.Context, k Kind, cutoff time.Time, cur Cursor, limit int) ([]Status, error) {
	return s.statuses(ctx, k, `last_updated_at < @cutoff AND (last_updated_at, `+k.id+`) > (@at, @id)
 ORDER BY last_updated_at, `+k.id+` LIMIT @limit`, pgx.NamedArgs{"cutoff": cutoff, "at": cur.At, "id": cur.ID, "limit": limit})
}

// Statuses reads the rows this shard holds of the devices of kind k.
func (s *Shard) Statuses(ctx context.Context, k Kind, ids []string) ([]Status, error) {
	return s.statuses(ctx, k, k.id+` = ANY(@ids)`, pgx.NamedArgs{"ids": ids})
}
