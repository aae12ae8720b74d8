package analytics

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func notFound(format string, args ...any) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf(format, args...))
}

func checkID(kind, id string) error {
	if !placement.ValidDeviceID(id) {
		return invalid("%s id %s is not valid: ids are 1 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", kind, window.Quote(id))
	}
	return nil
}

// shardError turns a shard query's failure into the RPC error: Unavailable when the shard
// could not be reached or answered too late, Internal otherwise.
func (s *Service) shardError(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		// The caller went away (a cancelled request, a reset stream): not the shard's doing.
		return connect.NewError(connect.CodeCanceled, fmt.Errorf("%s: %w", what, err))
	}
	s.metrics.missing.Inc()
	var se *shards.Error
	if errors.As(err, &se) && errors.Is(err, shards.ErrUnavailable) {
		s.cfg.Logger.Warn("shard unavailable", "what", what, "shard", se.Shard, "err", err)
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s: shard %d is unavailable, try again later", what, se.Shard))
	}
	s.cfg.Logger.Error("shard query failed", "what", what, "err", err)
	return connect.NewError(connect.CodeInternal, fmt.Errorf("%s: %w", what, err))
}

// registryError turns a registry failure into the RPC error.
func registryError(vehicleID string, err error) error {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return notFound("vehicle %s has no meter mapping: create one with POST /v1/analytics/mappings", vehicleID)
	case errors.Is(err, registry.ErrInvalidID):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	default:
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("mapping registry: %w", err))
	}
}
