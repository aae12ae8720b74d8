package hourcache

import (
	"context"
	"sync"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
)

// versionReads shares reads of hour versions among concurrent questions over the same hours.
// A question may use a read only if it was sent after the question arrived, so that the
// versions it sees include every commit before it: while a read is in flight, the questions
// that arrive wait for the next read, which one of them sends when the first is done.
type versionReads struct {
	mu    sync.Mutex
	reads map[hourRange]*versionRead
}

type hourRange struct{ from, to time.Time }

// versionRead is the state of one hour range: the read in flight and the one to send next.
type versionRead struct {
	cur, next *versionFetch
}

type versionFetch struct {
	done     chan struct{} // closed once versions and err are set
	versions map[time.Time]int64
	err      error
}

// get returns the versions of the hours in [from, to) as of some moment after the call.
func (vr *versionReads) get(ctx context.Context, db query.DBTX, from, to time.Time) (map[time.Time]int64, error) {
	k := hourRange{from, to}
	vr.mu.Lock()
	if vr.reads == nil {
		vr.reads = map[hourRange]*versionRead{}
	}
	st := vr.reads[k]
	if st == nil {
		st = &versionRead{}
		vr.reads[k] = st
	}
	if st.cur == nil {
		f := &versionFetch{done: make(chan struct{})}
		st.cur = f
		vr.mu.Unlock()
		return vr.send(ctx, db, k, st, f)
	}
	// The read in flight may have been sent before this question arrived: use the next one.
	if st.next == nil {
		st.next = &versionFetch{done: make(chan struct{})}
	}
	cur, f := st.cur, st.next
	vr.mu.Unlock()
	select {
	case <-cur.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	vr.mu.Lock()
	if st.next == f { // nobody has sent it yet: this question does
		st.next = nil
		st.cur = f
		vr.mu.Unlock()
		return vr.send(ctx, db, k, st, f)
	}
	vr.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		// The sender's failure may be its own (its deadline): read for this question.
		return query.HourVersions(ctx, db, from, to)
	}
	return f.versions, nil
}

// send reads the versions for f and everyone waiting on it.
func (vr *versionReads) send(ctx context.Context, db query.DBTX, k hourRange, st *versionRead, f *versionFetch) (map[time.Time]int64, error) {
	f.versions, f.err = query.HourVersions(ctx, db, k.from, k.to)
	vr.mu.Lock()
	if st.cur == f {
		st.cur = nil
		if st.next == nil && vr.reads[k] == st {
			delete(vr.reads, k)
		}
	}
	vr.mu.Unlock()
	close(f.done)
	return f.versions, f.err
}
