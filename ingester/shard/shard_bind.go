package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester"
)

// The shard's stream and consumer are made only by ingester.EnsureStreams (the operator,
// `fleetingest dev`); the ingester looks its consumer up by name and waits while it is
// missing. Someone may delete the consumer, alone or with its stream, behind the operator's
// back; the operator makes it again on its next pass. The server then answers the pulls it
// held with a "consumer deleted" notice, and pulls sent afterwards reach no one and are
// answered by silence, which the pull's missed heartbeats reveal. Either way the ingester
// looks the consumer up again, with a short backoff, and pulls once it exists.

// binding is the consumer the ingester pulls from, as one lookup found it.
type binding struct {
	cons jetstream.Consumer
	// created is when the server made the consumer: a consumer deleted and made again under
	// the same name has another.
	created time.Time
}

// bind looks up the shard's durable consumer until it exists or ctx ends, with a backoff from
// RetryMin up to BindRetryMax. missing, when set, is told of each lookup that found the
// consumer or its stream gone.
func (in *Ingester) bind(ctx context.Context, missing func(error)) (binding, error) {
	backoff := min(in.cfg.RetryMin, in.cfg.BindRetryMax)
	for attempt := 1; ; attempt++ {
		cons, err := in.cfg.JS.Consumer(ctx, in.stream, ingester.ConsumerName)
		if err == nil {
			info := cons.CachedInfo()
			in.ackWait.Store(int64(info.Config.AckWait))
			return binding{cons: cons, created: info.Created}, nil
		}
		gone := consumerGone(err)
		if gone && missing != nil {
			missing(err)
		}
		// Said once per wait; the consumer_bound gauge and readiness tell how long it lasts.
		level := slog.LevelWarn
		if attempt > 1 || (gone && missing != nil) || ctx.Err() != nil {
			level = slog.LevelDebug
		}
		in.log.Log(ctx, level, "waiting for the shard's stream and consumer", "error", err, "attempt", attempt, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return binding{}, fmt.Errorf("binding to consumer %s on stream %s: %w", ingester.ConsumerName, in.stream, errors.Join(ctx.Err(), err))
		}
		backoff = min(2*backoff, in.cfg.BindRetryMax)
	}
}

// rebind binds again after pulling from was stopped by cause: at once to a consumer that
// still exists, else as soon as it was made again. Pulls go out only after a lookup found
// the consumer, since those sent to a missing one are never answered.
func (in *Ingester) rebind(ctx context.Context, was binding, cause error) (binding, error) {
	stopped := time.Now()
	if consumerGone(cause) {
		in.lose(cause, stopped)
	} else {
		in.log.Warn("pulling messages stopped; binding again", "error", cause)
	}
	// A pause, so that a failure that recurs at once does not spin.
	if !sleep(ctx, min(in.cfg.RetryMin, in.cfg.BindRetryMax)) {
		return binding{}, ctx.Err()
	}
	b, err := in.bind(ctx, func(err error) { in.lose(err, stopped) })
	if err != nil {
		return b, err
	}
	if in.lostAt.IsZero() && !b.created.Equal(was.created) {
		// Deleted and made again while nothing of it reached the ingester but silence.
		in.lose(fmt.Errorf("consumer made again at %s", b.created.Format(time.RFC3339Nano)), stopped)
	}
	if !in.lostAt.IsZero() {
		in.log.Info("bound again to the shard's consumer", "consumer", ingester.ConsumerName,
			"lost_for", time.Since(in.lostAt).Round(time.Millisecond))
		in.lostAt = time.Time{}
	}
	in.setBound(true)
	return b, nil
}

// lose records that the shard's consumer is gone since pulling from it stopped at: the
// ingester is not ready until it bound again, and the loss is counted and said once.
func (in *Ingester) lose(cause error, at time.Time) {
	if !in.lostAt.IsZero() {
		return
	}
	in.lostAt = at
	in.setBound(false)
	in.metrics.consumerLost.Inc()
	in.log.Warn("shard's consumer lost (deleted, alone or with its stream); binding again once it is made",
		"consumer", ingester.ConsumerName, "error", cause)
}

func (in *Ingester) setBound(bound bool) {
	in.bound.Store(bound)
	v := 0.0
	if bound {
		v = 1
	}
	in.metrics.consumerBound.Set(v)
}

// consumerGone reports whether err says the shard's consumer or its stream does not exist.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}
