package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// Mapping writes with their own time (backfill, imports): [from, to) is written beside the
// vehicle's other intervals, never over them nor over readings placed without a mapping.

// backfillInterval is the interval a mapping write with from (and to) asks for, checked
// against the clock: from not in the future and not older than maxLateness, to after from
// and not in the future. Its errors are InvalidArgument.
func backfillInterval(meterID string, from, to *timestamppb.Timestamp, now time.Time, maxLateness time.Duration) (registry.Interval, error) {
	if from == nil {
		return registry.Interval{}, invalid("to needs from: give the interval's start too (without both, the mapping starts now)")
	}
	if err := from.CheckValid(); err != nil {
		return registry.Interval{}, invalid("from is not a valid time: %v", err)
	}
	iv := registry.Interval{MeterID: meterID, From: from.AsTime()}
	if iv.From.After(now) {
		return registry.Interval{}, invalid("from %s is in the future (now is %s): a mapping starts now at the latest", stamp(iv.From), stamp(now))
	}
	if oldest := now.Add(-maxLateness); iv.From.Before(oldest) {
		return registry.Interval{}, invalid("from %s is older than the readings' acceptance window of %s (--max-lateness; the oldest start accepted now is %s): readings that old are refused, so no mapping is written for them", stamp(iv.From), maxLateness, stamp(oldest))
	}
	if to == nil {
		return iv, nil
	}
	if err := to.CheckValid(); err != nil {
		return registry.Interval{}, invalid("to is not a valid time: %v", err)
	}
	end := to.AsTime()
	if !end.After(iv.From) {
		return registry.Interval{}, invalid("to %s is not after from %s", stamp(end), stamp(iv.From))
	}
	if end.After(now) {
		return registry.Interval{}, invalid("to %s is in the future (now is %s): leave to out for a mapping that goes on, and end a current mapping with DELETE", stamp(end), stamp(now))
	}
	iv.To = &end
	return iv, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// hiddenReadingsError refuses an interval in which readings of the vehicle were stored
// without a mapping: placed on the vehicle's own shard, they would no longer be found.
type hiddenReadingsError struct {
	vehicleID string
	iv        registry.Interval
	n         int
	first     time.Time
}

func (e *hiddenReadingsError) Error() string {
	readings, them := fmt.Sprintf("%d readings", e.n), "them"
	if e.n == 1 {
		readings, them = "1 reading", "it"
	}
	return fmt.Sprintf("vehicle %s has %s from %s on, within %s, stored without a mapping: a mapping there would hide %s from every answer (write mappings before the readings they place)", e.vehicleID, readings, stamp(e.first), e.iv, them)
}

// unmappedReadingsSQL counts a vehicle's readings in [$2, $3) ($3 NULL: open) stored without
// a mapping (they live on the shard of the vehicle's own id) and gives the first one's time.
const unmappedReadingsSQL = `SELECT count(*)::int4, min(ts)
FROM vehicle_telemetry_history
WHERE vehicle_id = $1 AND ts >= $2 AND ts < coalesce($3::timestamptz, 'infinity') AND coalesce(meter_id, '') = ''`

// checkNoUnmappedReadings fails with a *hiddenReadingsError when the vehicle has readings in
// iv stored without a mapping, and with the shard's *shards.Error when it cannot tell.
func (s *Service) checkNoUnmappedReadings(ctx context.Context, vehicleID string, iv registry.Interval) error {
	// Readings are stored up to minutes ahead of the clock.
	os, err := s.owners(vehicleID, iv.From, until(iv, s.cfg.Now().Add(time.Hour)))
	if err != nil {
		return err
	}
	for _, o := range os {
		var n int
		var first *time.Time // NULL without readings
		err := s.shards.Do(ctx, o.Shard, func(ctx context.Context, db shards.DBTX) error {
			return db.QueryRow(ctx, unmappedReadingsSQL, vehicleID, iv.From, iv.To).Scan(&n, &first)
		})
		if err != nil {
			return err
		}
		if n > 0 {
			return &hiddenReadingsError{vehicleID: vehicleID, iv: iv, n: n, first: *first}
		}
	}
	return nil
}

// intervalError turns a refused or failed interval write into the RPC error: ALREADY_EXISTS
// for an overlap or readings it would hide.
func (s *Service) intervalError(vehicleID string, err error) error {
	var overlap *registry.OverlapError
	var hidden *hiddenReadingsError
	var shard *shards.Error
	switch {
	case errors.As(err, &overlap):
		return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("vehicle %s: %w", vehicleID, err))
	case errors.As(err, &hidden):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.As(err, &shard):
		return s.shardError("looking for the vehicle's readings stored without a mapping", err)
	case errors.Is(err, registry.ErrInvalidInterval):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return registryError(vehicleID, err)
}
