package shard

import (
	"context"
	"time"

	"github.com/fleetingest/fleetingest/ingester"
)

// repeat runs pass at once and then every interval until ctx ends; a failed pass is retried
// within a minute.
func repeat(ctx context.Context, interval time.Duration, pass func(context.Context) bool) {
	for {
		next := interval
		if !pass(ctx) {
			next = min(next, time.Minute)
		}
		if !sleep(ctx, next) {
			return
		}
	}
}

// maintain ensures partitions ahead and drops expired data at start and then every
// MaintenanceInterval.
func (in *Ingester) maintain(ctx context.Context) {
	repeat(ctx, in.cfg.MaintenanceInterval, in.maintainOnce)
}

func (in *Ingester) maintainOnce(ctx context.Context) bool {
	ok := true
	created, err := in.cfg.Store.EnsurePartitionsAhead(ctx)
	in.metrics.partitionsCreated.Add(float64(len(created)))
	if err != nil && ctx.Err() == nil {
		in.log.Warn("creating partitions ahead", "error", err)
		ok = false
	}
	dropped, err := in.cfg.Store.DropExpired(ctx, in.cfg.Retention)
	in.metrics.partitionsDropped.Add(float64(len(dropped.Partitions)))
	if err != nil && ctx.Err() == nil {
		in.log.Warn("dropping expired data", "error", err)
		ok = false
	}
	return ok
}

// pollLag publishes the consumer's backlog (messages not yet delivered plus delivered and
// not yet acknowledged) every LagInterval. It looks the consumer up by name each time, so it
// follows a consumer made again after a deletion.
func (in *Ingester) pollLag(ctx context.Context) {
	for {
		cons, err := in.cfg.JS.Consumer(ctx, in.stream, ingester.ConsumerName)
		if err == nil {
			info := cons.CachedInfo()
			in.ackWait.Store(int64(info.Config.AckWait))
			lag := int64(info.NumPending) + int64(info.NumAckPending)
			in.lag.Store(lag)
			in.metrics.lag.Set(float64(lag))
		} else if ctx.Err() == nil {
			in.log.Debug("polling consumer info", "error", err)
		}
		if !sleep(ctx, in.cfg.LagInterval) {
			return
		}
	}
}
