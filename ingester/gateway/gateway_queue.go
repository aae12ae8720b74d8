package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// ticket collects the publish outcome of one request's readings. Each reading resolves its
// own index once; the last one closes done.
type ticket struct {
	remaining atomic.Int64
	done      chan struct{}
	errs      []error // by reading index within the request; nil means published
	one       [1]error
}

func newTicket(items, outstanding int) *ticket {
	t := &ticket{done: make(chan struct{})}
	if items == 1 {
		t.errs = t.one[:]
	} else {
		t.errs = make([]error, items)
	}
	t.remaining.Store(int64(outstanding))
	if outstanding == 0 {
		close(t.done)
	}
	return t
}

// fail records err for the readings at idx and resolves them.
func (t *ticket) fail(items []queued, err error) {
	for _, it := range items {
		t.errs[it.idx] = err
	}
	t.resolve(len(items))
}

func (t *ticket) resolve(n int) {
	if t.remaining.Add(-int64(n)) == 0 {
		close(t.done)
	}
}

// queued is one reading waiting for publication.
type queued struct {
	idx int32 // index within its request
	r   telemetry.Reading
}

// pending is a run of one request's readings for one shard, at most one message's worth.
type pending struct {
	t     *ticket
	items []queued
	at    time.Time // when it was queued: the linger of its message counts from here
	one   [1]queued
}

// shardQueue is one shard's bounded queue and its publishers.
type shardQueue struct {
	g       *Gateway
	shard   int
	subject string
	stream  string
	ch      chan *pending
	depth   atomic.Int64 // readings queued and not yet taken into a message

	// gather is held by the one publisher collecting the next message, so that concurrent
	// readings coalesce into it while the others wait for their PubAcks.
	gather sync.Mutex
	carry  *pending // the rest of a pending that did not fit the previous message
}

func newShardQueue(g *Gateway, shard int) *shardQueue {
	return &shardQueue{
		g:       g,
		shard:   shard,
		subject: g.cfg.Topology.Subject(shard),
		stream:  g.cfg.Topology.Stream(shard),
		ch:      make(chan *pending, g.cfg.QueueSize),
	}
}

// offer enqueues p, or reports that the queue is full. It never blocks.
func (q *shardQueue) offer(p *pending) bool {
	n := int64(len(p.items))
	if q.depth.Add(n) > int64(q.g.cfg.QueueSize) {
		q.depth.Add(-n)
		return false
	}
	select {
	case q.ch <- p:
		return true
	default: // unreachable: the channel holds QueueSize pendings of at least one reading each
		q.depth.Add(-n)
		return false
	}
}

// message is one stream message being assembled.
type message struct {
	batch telemetrypb.ReadingBatch
	parts []part
	n     int
}

// part is the readings of one ticket inside a message.
type part struct {
	t     *ticket
	items []queued
}

func (m *message) reset() {
	clear(m.batch.Meters)
	clear(m.batch.Vehicles)
	m.batch.Meters, m.batch.Vehicles = m.batch.Meters[:0], m.batch.Vehicles[:0]
	clear(m.parts)
	m.parts, m.n = m.parts[:0], 0
}

// work is one publisher: it gathers a message, publishes it and answers its readings, until
// stop is closed and the queue is empty.
func (q *shardQueue) work(ctx context.Context, stop <-chan struct{}) {
	var m message
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		m.reset()
		q.gather.Lock()
		ok := q.collect(&m, stop, timer)
		q.gather.Unlock()
		if !ok {
			return
		}
		q.publish(ctx, &m)
	}
}

// collect assembles the next message: the first pending reading (waiting for one while not
// stopping), then whatever arrives within the linger of that reading, up to the message
// bound. It returns false when stopping and nothing is left.
func (q *shardQueue) collect(m *message, stop <-chan struct{}, timer *time.Timer) bool {
	maxN := q.g.cfg.MaxReadingsPerMessage
	first := q.carry
	q.carry = nil
	if first == nil {
		select {
		case first = <-q.ch:
		default:
			select {
			case first = <-q.ch:
			case <-stop:
				select {
				case first = <-q.ch:
				default:
					return false
				}
			}
		}
	}
	q.add(m, first, maxN)
	deadline := first.at.Add(q.g.cfg.Linger)
	for m.n < maxN {
		select {
		case p := <-q.ch:
			q.add(m, p, maxN)
			continue
		default:
		}
		if isClosed(stop) {
			return true
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return true
		}
		timer.Reset(wait)
		select {
		case p := <-q.ch:
			timer.Stop()
			q.add(m, p, maxN)
		case <-timer.C:
			return true
		case <-stop:
			timer.Stop()
		}
	}
	return true
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// add puts as much of p into m as fits and carries the rest to the next message.
func (q *shardQueue) add(m *message, p *pending, maxN int) {
	take := p.items
	if room := maxN - m.n; len(take) > room {
		q.carry = &pending{t: p.t, items: take[room:], at: p.at}
		take = take[:room]
	}
	for _, it := range take {
		it.r.Append(&m.batch)
	}
	m.parts = append(m.parts, part{t: p.t, items: take})
	m.n += len(take)
	q.depth.Add(-int64(len(take)))
}

// publish sends m as one stream message and answers its readings with the outcome.
func (q *shardQueue) publish(ctx context.Context, m *message) {
	met := q.g.metrics
	met.perMessage.Observe(float64(m.n))
	err := q.send(ctx, m)
	for _, p := range m.parts {
		if err != nil {
			p.t.fail(p.items, err)
		} else {
			p.t.resolve(len(p.items))
		}
	}
	if err != nil {
		met.publishFailures.Inc()
		q.g.logPublishFailure(q.shard, m.n, err)
	}
}

func (q *shardQueue) send(ctx context.Context, m *message) error {
	if !q.g.nc.IsConnected() {
		return &unavailableError{what: fmt.Sprintf("publishing to %s", q.subject), err: errNATSDown}
	}
	data, err := telemetry.MarshalBatch(&m.batch)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, q.g.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	_, err = q.g.js.Publish(ctx, q.subject, data, jetstream.WithExpectStream(q.stream))
	q.g.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return &unavailableError{what: fmt.Sprintf("publishing %d readings to %s", m.n, q.subject), err: err}
	}
	return nil
}

// unavailableError is a publish that JetStream did not acknowledge: NATS down, the stream
// full or missing, a timeout. The client may retry; readings are deduplicated downstream.
type unavailableError struct {
	what string
	err  error
}

func (e *unavailableError) Error() string { return e.what + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

func (g *Gateway) logPublishFailure(shard, n int, err error) {
	now := time.Now().UnixNano()
	last := g.logThrottle.Load()
	if now-last < int64(time.Second) || !g.logThrottle.CompareAndSwap(last, now) {
		return
	}
	g.cfg.Logger.Warn("publish failed; answering 503", "shard", shard, "readings", n, "err", err)
}
