package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// batch is the messages whose readings commit together.
type batch struct {
	msgs     []jetstream.Msg
	meters   []*telemetrypb.MeterReading
	vehicles []*telemetrypb.VehicleReading
	// meterMsg and vehicleMsg are the index in msgs of the message each reading came in.
	meterMsg, vehicleMsg []int
}

func (b *batch) readings() int { return len(b.meters) + len(b.vehicles) }

// span is a run of a batch's readings, by index in its meters followed by its vehicles.
type span struct{ lo, hi int }

func (s span) len() int { return s.hi - s.lo }

// in returns the readings of s.
func (b *batch) in(s span) ([]*telemetrypb.MeterReading, []*telemetrypb.VehicleReading) {
	m := len(b.meters)
	return b.meters[min(s.lo, m):min(s.hi, m)], b.vehicles[max(s.lo-m, 0):max(s.hi-m, 0)]
}

// reading returns reading i of the batch and the message it came in.
func (b *batch) reading(i int) (telemetry.Reading, jetstream.Msg) {
	if i < len(b.meters) {
		return telemetry.Reading{Meter: b.meters[i]}, b.msgs[b.meterMsg[i]]
	}
	i -= len(b.meters)
	return telemetry.Reading{Vehicle: b.vehicles[i]}, b.msgs[b.vehicleMsg[i]]
}

// consume pulls, batches, writes and acknowledges until ctx ends. Whenever pulling stops
// it binds again (rebind) before pulling anew: the consumer may have been deleted and made
// again under the same name.
func (in *Ingester) consume(ctx context.Context, b binding) error {
	for {
		err := in.pull(ctx, b.cons)
		if ctx.Err() != nil {
			break
		}
		if b, err = in.rebind(ctx, b, err); err != nil {
			break
		}
	}
	in.log.Info("stopped consuming")
	return nil
}

// pull consumes from cons until pulling or committing fails, and returns why. Pulls ask the
// server for heartbeats, so that a pull no consumer holds is noticed within two of them.
func (in *Ingester) pull(ctx context.Context, cons jetstream.Consumer) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(in.cfg.PullMaxMessages), jetstream.PullHeartbeat(in.cfg.PullHeartbeat))
	if err != nil {
		return fmt.Errorf("starting to pull messages: %w", err)
	}
	defer iter.Stop()
	return in.consumeFrom(ctx, iter)
}

// consumeFrom collects and commits batches from iter until pulling or committing fails,
// handing the batch in hand back to JetStream. It never returns nil: it returns only with
// the error that stopped it, which is ctx's end on shutdown.
func (in *Ingester) consumeFrom(ctx context.Context, iter jetstream.MessagesContext) error {
	for {
		b, err := in.collect(ctx, iter)
		if err != nil {
			in.abandon(b)
			return err
		}
		if err := in.commit(ctx, b); err != nil {
			in.abandon(b)
			return err
		}
	}
}

// collect waits for a first message, then takes messages until the batch holds BatchSize
// readings or BatchWait has passed since the first one. Messages that do not decode are
// terminated on the spot and never join a batch.
func (in *Ingester) collect(ctx context.Context, iter jetstream.MessagesContext) (*batch, error) {
	b := &batch{}
	for len(b.msgs) == 0 {
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			return b, err
		}
		in.add(b, msg)
	}
	wait, cancel := context.WithTimeout(ctx, in.cfg.BatchWait)
	defer cancel()
	for b.readings() < in.cfg.BatchSize {
		msg, err := iter.Next(jetstream.NextContext(wait))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				break
			}
			return b, err
		}
		in.add(b, msg)
	}
	return b, nil
}

// add decodes msg into b, or terminates it when it is not a valid stream message.
func (in *Ingester) add(b *batch, msg jetstream.Msg) {
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 1 {
		in.metrics.redelivered.Inc()
	}
	rb, err := telemetry.UnmarshalBatch(msg.Data())
	if err == nil {
		err = telemetry.CheckPublished(rb, publishedAt(msg), in.cfg.Limits)
	}
	if err != nil {
		in.metrics.terminated.Inc()
		in.log.Warn("terminating undecodable message", "subject", msg.Subject(), "bytes", len(msg.Data()), "error", err)
		if terr := msg.TermWithReason(truncate(err.Error(), 200)); terr != nil {
			in.log.Warn("terminating message", "error", terr)
		}
		return
	}
	at := len(b.msgs)
	b.msgs = append(b.msgs, msg)
	b.meters = append(b.meters, rb.GetMeters()...)
	b.vehicles = append(b.vehicles, rb.GetVehicles()...)
	for range rb.GetMeters() {
		b.meterMsg = append(b.meterMsg, at)
	}
	for range rb.GetVehicles() {
		b.vehicleMsg = append(b.vehicleMsg, at)
	}
}

// publishedAt is when msg was first published: its Fi-Published-At header (a replay keeps
// its original time), else the time JetStream stored it.
func publishedAt(msg jetstream.Msg) time.Time {
	if v := msg.Headers().Get(telemetry.HeaderPublishedAt); v != "" {
		if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(0, ns)
		}
	}
	if meta, err := msg.Metadata(); err == nil {
		return meta.Timestamp
	}
	return time.Now()
}

// commit writes b, keeping its messages in progress meanwhile: in one transaction, or, when
// the database refuses it for good, split until the refused readings are alone, which are
// then parked in the dead-letter stream. Then it acknowledges every message of b. It returns
// an error only when ctx ended before b was written and its refused readings parked, or when
// the AfterCommit hook refused.
func (in *Ingester) commit(ctx context.Context, b *batch) error {
	in.metrics.batchReadings.Observe(float64(b.readings()))
	stopProgress := in.keepInProgress(b)
	refused, err := in.write(ctx, b)
	if err == nil && len(refused) > 0 {
		err = in.park(ctx, b, refused)
	}
	stopProgress()
	if err != nil {
		return fmt.Errorf("batch of %d readings not written before shutdown: %w", b.readings(), err)
	}
	if in.cfg.AfterCommit != nil {
		if err := in.cfg.AfterCommit(ctx); err != nil {
			b.msgs = nil // committed: leave them to redelivery, which the primary keys absorb
			return fmt.Errorf("after commit: %w", err)
		}
	}
	for _, msg := range b.msgs {
		if err := msg.Ack(); err != nil {
			// Redelivered later and skipped as duplicates.
			in.log.Warn("acknowledging committed message", "error", err)
		}
	}
	in.metrics.acked.Add(float64(len(b.msgs)))
	return nil
}

// notify publishes, on the fleet's commit subject, the notice of a batch that changed hours,
// so that readers holding those hours in memory read them again. A notice that cannot be
// published is counted and left to the readers' polls.
func (in *Ingester) notify(changed []telemetry.HourVersion) {
	if len(changed) == 0 {
		return
	}
	data, err := telemetry.MarshalNotice(in.cfg.Shard, changed)
	if err == nil {
		err = in.cfg.JS.Conn().Publish(in.cfg.Topology.CommitSubject(), data)
	}
	if err != nil {
		in.metrics.noticeFailures.Inc()
		in.log.Warn("publishing commit notice; readers catch up by their polls", "error", err)
	}
}

// keepInProgress marks b's messages in progress every progress interval until the returned
// stop is called (which waits for the marking to end), so that JetStream redelivers them to
// no one while b is written, retried or parked, however long that takes. Messages of an
// ingester that died are redelivered within the consumer's AckWait.
func (in *Ingester) keepInProgress(b *batch) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(in.progressEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, msg := range b.msgs {
					_ = msg.InProgress() // best effort: a lost one only risks a duplicate delivery
				}
				t.Reset(in.progressEvery())
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// progressEvery is the interval of in-progress marks: ProgressInterval, at most a quarter of
// the consumer's AckWait.
func (in *Ingester) progressEvery() time.Duration {
	d := in.cfg.ProgressInterval
	if w := time.Duration(in.ackWait.Load()); w > 0 {
		d = min(d, max(w/4, time.Millisecond))
	}
	return d
}

// abandon hands an uncommitted batch back to JetStream for prompt redelivery.
func (in *Ingester) abandon(b *batch) {
	if b == nil {
		return
	}
	for _, msg := range b.msgs {
		_ = msg.Nak() // best effort: otherwise redelivered after AckWait
	}
}

// PauseAfterCommit returns an AfterCommit hook for fault-injection tests: it writes
// "committed batch, pausing before ack" to w and blocks until ctx ends, so a test can kill
// the process between COMMIT and the acknowledgements. When the line cannot be written it
// returns at once, leaving the batch to redelivery.
func PauseAfterCommit(w io.Writer) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := fmt.Fprintln(w, "committed batch, pausing before ack"); err != nil {
			return fmt.Errorf("announcing the pause: %w", err)
		}
		<-ctx.Done()
		return ctx.Err()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
