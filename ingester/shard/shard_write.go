package shard

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// refusal is a reading of a batch the database refused for good, alone in its attempt.
type refusal struct {
	index int // in the batch (batch.reading)
	err   error
}

// write stores b's readings and returns those the database refused for good. It first
// writes them all in one transaction; a span the database refuses for good is split in two
// halves written on their own, until each refused reading is alone. A transient failure is
// retried, with back-off, until the span commits or ctx ends (the only error write returns).
func (in *Ingester) write(ctx context.Context, b *batch) ([]refusal, error) {
	var refused []refusal
	todo := []span{{0, b.readings()}}
	split := false
	for len(todo) > 0 {
		s := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		err := in.writeSpan(ctx, b, s)
		switch {
		case err == nil:
		case !refusedForGood(err):
			return refused, err
		case s.len() == 1:
			refused = append(refused, refusal{index: s.lo, err: err})
		default:
			split = true
			mid := s.lo + s.len()/2
			todo = append(todo, span{mid, s.hi}, span{s.lo, mid}) // the first half next
		}
	}
	if split {
		in.metrics.batchesSplit.Inc()
	}
	return refused, nil
}

// writeSpan writes the readings of s in one transaction, retrying transient failures with
// capped exponential back-off. It returns nil once they committed, the error of a refusal
// for good at once, or, when ctx ended first, the last failure.
func (in *Ingester) writeSpan(ctx context.Context, b *batch, s span) error {
	meters, vehicles := b.in(s)
	backoff := in.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		// A write in flight at shutdown may finish: it is bounded by WriteTimeout, not ctx.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.WriteTimeout)
		start := time.Now()
		res, err := in.cfg.Store.WriteBatch(wctx, meters, vehicles)
		cancel()
		if err == nil {
			in.metrics.commitSeconds.Observe(time.Since(start).Seconds())
			in.metrics.observe(res)
			if attempt > 1 {
				in.log.Info("shard database back; batch committed", "attempts", attempt)
			}
			in.failing.Store(nil)
			in.notify(res.Changed)
			return nil
		}
		in.metrics.writeErrors.Inc()
		if refusedForGood(err) {
			in.failing.Store(nil) // the database answers: it refuses these readings, not writes
			return err
		}
		in.failing.Store(&err)
		if ctx.Err() != nil {
			return err
		}
		in.log.Warn("writing batch failed; keeping its messages unacknowledged and retrying",
			"error", err, "attempt", attempt, "retry_in", backoff, "messages", len(b.msgs), "readings", s.len(), "consumer_lag", in.lag.Load())
		if !sleep(ctx, backoff) {
			return err
		}
		backoff = min(2*backoff, in.cfg.RetryMax)
	}
}

// refusedForGood reports whether err is the database refusing the data itself, so that the
// same readings would fail on every attempt: SQLSTATE classes 22 (data exception: a value
// out of a column's range), 23 (integrity constraint violation: a CHECK, NOT NULL or
// foreign key), 27 (triggered data change violation) and P0 (raised by a trigger or
// function). Every other failure is transient and retried: no answer or a broken
// connection, timeouts and cancellations (57), serialization failures and deadlocks (40),
// resources (53), shutdowns, and missing or renamed objects or privileges (42), which a
// migration or an administrator puts right.
func refusedForGood(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "27", "P0":
		return true
	}
	return false
}

// reason is what a refusal says in the dead-letter stream: the database's error alone.
func (r refusal) reason() string {
	var pgErr *pgconn.PgError
	if errors.As(r.err, &pgErr) {
		msg := pgErr.Error()
		if pgErr.Detail != "" {
			msg += ": " + pgErr.Detail
		}
		return msg
	}
	return r.err.Error()
}
