package analytics

import (
	"context"

	"github.com/fleetingest/fleetingest/analytics/query"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/analytics/window"
)

// vehicleRows reads what one shard holds of a vehicle's window: from the shard's hours in
// memory when they are current, else with the per-vehicle statement.
func (s *Service) vehicleRows(ctx context.Context, shard int, db shards.DBTX, vehicleID string, w window.Window, meters []query.MeterSpan) (query.VehicleRows, error) {
	rows, answered, err := s.hours[shard].Vehicle(ctx, db, vehicleID, w, meters)
	if err != nil {
		return rows, err
	}
	if answered {
		s.metrics.vehicleReads.WithLabelValues("memory").Inc()
		return rows, nil
	}
	s.metrics.vehicleReads.WithLabelValues("postgres").Inc()
	return query.Vehicle(ctx, db, vehicleID, w, meters)
}
