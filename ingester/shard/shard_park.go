package shard

import (
	"context"
	"time"

	"github.com/fleetingest/fleetingest/ingester/deadletter"
)

// park publishes the refused readings of b to the fleet's dead-letter stream, each with its
// reason and its first publish time, retrying with back-off while that fails (b stays
// unacknowledged meanwhile: a reading is never dropped). It returns an error only when ctx
// ended first.
func (in *Ingester) park(ctx context.Context, b *batch, refused []refusal) error {
	rs := make([]deadletter.Refusal, len(refused))
	for i, r := range refused {
		reading, msg := b.reading(r.index)
		rs[i] = deadletter.Refusal{Reading: reading, Reason: r.reason(), PublishedAt: publishedAt(msg)}
		if meta, err := msg.Metadata(); err == nil {
			rs[i].Stream, rs[i].Seq = meta.Stream, meta.Sequence.Stream
		}
	}
	backoff := in.cfg.RetryMin
	for {
		err := deadletter.Park(ctx, in.cfg.JS, in.cfg.Topology, in.cfg.Shard, rs)
		if err == nil {
			break
		}
		in.metrics.parkErrors.Inc()
		if ctx.Err() != nil {
			return err
		}
		in.log.Warn("parking refused readings failed; keeping their batch unacknowledged and retrying",
			"error", err, "readings", len(rs), "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, in.cfg.RetryMax)
	}
	for _, r := range rs {
		in.metrics.parked.WithLabelValues(r.Reading.Kind().String()).Inc()
	}
	first := rs[0].Reading
	in.log.Warn("parked readings the shard database refuses for good; the rest of their batch is written",
		"parked", len(rs), "batch_readings", b.readings(), "dead_letter_stream", in.cfg.Topology.DeadLetterStream(),
		"first_device", first.DeviceID(), "first_timestamp", first.Time().Format(time.RFC3339Nano), "first_reason", rs[0].Reason)
	return nil
}
