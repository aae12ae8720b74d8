package shard

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// sealBatch is how many hours one packing statement packs at most.
const sealBatch = 24

// seal packs the rollups of settled hours within SealHorizon at start and then every
// SealInterval: the hours not packed yet, newest first, and those changed since they were.
func (in *Ingester) seal(ctx context.Context) {
	repeat(ctx, in.cfg.SealInterval, in.sealOnce)
}

func (in *Ingester) sealOnce(ctx context.Context) bool {
	// Hour h is settled once h+1h+SealAfter has passed.
	to := in.cfg.Now().Add(-in.cfg.SealAfter).Truncate(time.Hour)
	from := to.Add(-in.cfg.SealHorizon).Truncate(time.Hour)
	// At most as many statements as the horizon needs: hours that change again while they are
	// packed (a backlog being written) wait for the next pass.
	for i := 0; i*sealBatch < int(to.Sub(from)/time.Hour) && ctx.Err() == nil; i++ {
		sealed, err := in.cfg.Store.SealHours(ctx, from, to, sealBatch)
		in.metrics.hoursSealed.Add(float64(len(sealed)))
		if err != nil {
			if ctx.Err() == nil {
				in.log.Warn("packing settled rollup hours", "error", err)
			}
			return false
		}
		if len(sealed) < sealBatch {
			break
		}
	}
	return true
}

// pollLag publishes the consumer's backlog (messages not yet delivered plus delivered and
// not yet acknowledged) every LagInterval.
func (in *Ingester) pollLag(ctx context.Context, cons jetstream.Consumer) {
	for {
		info, err := cons.Info(ctx)
		if err == nil {
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
