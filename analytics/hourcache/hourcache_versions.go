package hourcache

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
	"github.com/fleetingest/fleetingest/analytics/window"
)

// sharedReads shares reads among concurrent questions with the same key. A question may use a
// read only if it was sent after the question arrived, so that what it sees includes every
// commit before it: while a read is in flight, the questions that arrive add what they need to
// the next read, which one of them sends when the first is done.
type sharedReads[K comparable, N, R any] struct {
	// read reads k for the needs of the questions sharing the read.
	read func(ctx context.Context, db query.DBTX, k K, needs []N) (R, error)

	mu    sync.Mutex
	reads map[K]*sharedRead[N, R]
}

// sharedRead is the state of one key: the read in flight and the one to send next.
type sharedRead[N, R any] struct {
	cur, next *readFetch[N, R]
}

type readFetch[N, R any] struct {
	done  chan struct{} // closed once res and err are set
	needs []N           // appended to (under the lock) only while it is the next read
	res   R
	err   error
}

// get returns k read for need (and the needs of the questions it shares the read with) at
// some moment after the call.
func (sr *sharedReads[K, N, R]) get(ctx context.Context, db query.DBTX, k K, need N) (R, error) {
	var zero R
	sr.mu.Lock()
	if sr.reads == nil {
		sr.reads = map[K]*sharedRead[N, R]{}
	}
	st := sr.reads[k]
	if st == nil {
		st = &sharedRead[N, R]{}
		sr.reads[k] = st
	}
	if st.cur == nil {
		f := &readFetch[N, R]{done: make(chan struct{}), needs: []N{need}}
		st.cur = f
		sr.mu.Unlock()
		return sr.send(ctx, db, k, st, f)
	}
	// The read in flight may have been sent before this question arrived: use the next one.
	if st.next == nil {
		st.next = &readFetch[N, R]{done: make(chan struct{})}
	}
	cur, f := st.cur, st.next
	f.needs = append(f.needs, need)
	sr.mu.Unlock()
	select {
	case <-cur.done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	sr.mu.Lock()
	if st.next == f { // nobody has sent it yet: this question does
		st.next = nil
		st.cur = f
		sr.mu.Unlock()
		return sr.send(ctx, db, k, st, f)
	}
	sr.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	if f.err != nil {
		// The sender's failure may be its own (its deadline): read for this question.
		return sr.read(ctx, db, k, []N{need})
	}
	return f.res, nil
}

// send reads for f and everyone waiting on it.
func (sr *sharedReads[K, N, R]) send(ctx context.Context, db query.DBTX, k K, st *sharedRead[N, R], f *readFetch[N, R]) (R, error) {
	f.res, f.err = sr.read(ctx, db, k, f.needs)
	sr.mu.Lock()
	if st.cur == f {
		st.cur = nil
		if st.next == nil && sr.reads[k] == st {
			delete(sr.reads, k)
		}
	}
	sr.mu.Unlock()
	close(f.done)
	return f.res, f.err
}

type hourRange struct{ from, to time.Time }

// versionReads shares reads of the versions of the hours of a range.
type versionReads = sharedReads[hourRange, struct{}, map[time.Time]int64]

func newVersionReads() *versionReads {
	return &versionReads{read: func(ctx context.Context, db query.DBTX, k hourRange, _ []struct{}) (map[time.Time]int64, error) {
		return query.HourVersions(ctx, db, k.from, k.to)
	}}
}

// liveKey is the versions' hours and the hour being written of questions about windows ending
// now.
type liveKey struct{ from, to, hour time.Time }

// liveNeed is what one such question needs of the hour being written.
type liveNeed struct {
	vehicle string
	meters  []string
}

// liveRead is what a shared read of the hour being written gives: the versions, and the rows
// of the questions sharing it unless base (the hour as last read whole, when the read was
// sent) is at the hour's version.
type liveRead struct {
	rows *query.LiveRollups
	base *liveHour
}

// liveReads shares reads of the hour being written (with the versions) among questions about
// windows that end in it.
type liveReads = sharedReads[liveKey, liveNeed, liveRead]

func newLiveReads(whole func() *liveHour) *liveReads {
	return &liveReads{read: func(ctx context.Context, db query.DBTX, k liveKey, needs []liveNeed) (liveRead, error) {
		var vehicles, meters []string
		for _, n := range needs {
			if !slices.Contains(vehicles, n.vehicle) {
				vehicles = append(vehicles, n.vehicle)
			}
			for _, m := range n.meters {
				if !slices.Contains(meters, m) {
					meters = append(meters, m)
				}
			}
		}
		base := whole()
		known := int64(-1)
		if base != nil && base.at.Equal(k.hour) {
			known = base.version
		} else {
			base = nil
		}
		rows, err := query.LiveHour(ctx, db, window.Range{From: k.from, To: k.to}, k.hour, known, vehicles, meters)
		return liveRead{rows: rows, base: base}, err
	}}
}
