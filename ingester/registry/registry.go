package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/placement"
)

// ErrNotFound is returned for a vehicle that has no mapping value at all.
var ErrNotFound = errors.New("no mapping for vehicle")

// ErrInvalidID is returned for a vehicle or meter id outside the device-id grammar.
var ErrInvalidID = errors.New("invalid device id")

// Config of a Registry.
type Config struct {
	// Retention is how long ended intervals are kept in a value; it should be at least the
	// history retention so placement of any stored reading can be explained. Default 400 days.
	Retention time.Duration
	// Now is the clock used for interval boundaries. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Retention == 0 {
		c.Retention = 400 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Registry reads and writes mappings in one fleet's bucket and, once Run is watching, keeps
// an in-memory copy for placement lookups on the hot path.
type Registry struct {
	kv  jetstream.KeyValue
	cfg Config

	mu   sync.RWMutex
	byID map[string]*Mapping
	// byMeter holds, for each meter, the vehicles with an interval on it.
	byMeter map[string]map[string]struct{}
	// writing holds the vehicles this process is writing the mapping of, for PlacementKey to
	// wait for.
	writing  map[string]*write
	caughtUp atomic.Bool
	ready    chan struct{}
	// applied counts the changes applied, so that an answer made from the mappings can tell
	// whether they moved since.
	applied atomic.Uint64
}

// Open binds to an existing bucket; it never creates one (ingester.EnsureStreams does).
func Open(ctx context.Context, js jetstream.JetStream, bucket string, cfg Config) (*Registry, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("opening mapping bucket %s: %w", bucket, err)
	}
	return &Registry{kv: kv, cfg: cfg.withDefaults(), byID: map[string]*Mapping{}, byMeter: map[string]map[string]struct{}{}, writing: map[string]*write{}, ready: make(chan struct{})}, nil
}

// Run watches the bucket and keeps the in-memory copy current until ctx ends. The copy is
// caught up once the watcher has delivered every value that existed when it started.
func (r *Registry) Run(ctx context.Context) error {
	for {
		err := r.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Logger.Warn("mapping watch ended, restarting", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (r *Registry) watch(ctx context.Context) error {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching mapping bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if r.caughtUp.CompareAndSwap(false, true) {
					close(r.ready)
				}
				continue
			}
			r.apply(e)
		}
	}
}

func (r *Registry) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.applied.Add(1)
	if e.Operation() != jetstream.KeyValuePut {
		r.index(r.byID[e.Key()], nil)
		delete(r.byID, e.Key())
		return
	}
	if old, ok := r.byID[e.Key()]; ok && old.Revision >= e.Revision() {
		return
	}
	m, err := decode(e.Key(), e.Value(), e.Revision())
	if err != nil {
		r.cfg.Logger.Error("ignoring undecodable mapping", "vehicle", e.Key(), "err", err)
		return
	}
	r.put(m)
}

// put replaces a vehicle's mapping in the copy unless the copy holds a later revision.
// r.mu is held.
func (r *Registry) put(m *Mapping) {
	old, ok := r.byID[m.VehicleID]
	if ok && old.Revision >= m.Revision {
		return
	}
	r.index(old, m)
	r.byID[m.VehicleID] = m
}

// index moves a vehicle in byMeter from the meters of its old mapping to those of the new
// one (either may be nil). r.mu is held.
func (r *Registry) index(old, m *Mapping) {
	if old != nil {
		for _, iv := range old.Intervals {
			if vs := r.byMeter[iv.MeterID]; vs != nil {
				delete(vs, old.VehicleID)
				if len(vs) == 0 {
					delete(r.byMeter, iv.MeterID)
				}
			}
		}
	}
	if m != nil {
		for _, iv := range m.Intervals {
			vs := r.byMeter[iv.MeterID]
			if vs == nil {
				vs = map[string]struct{}{}
				r.byMeter[iv.MeterID] = vs
			}
			vs[m.VehicleID] = struct{}{}
		}
	}
}

// MappedTo returns, from the in-memory copy and in id order, the vehicles mapped to meterID
// at some time in [from, to).
func (r *Registry) MappedTo(meterID string, from, to time.Time) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for id := range r.byMeter[meterID] {
		for _, iv := range r.byID[id].Intervals {
			if iv.MeterID == meterID && iv.From.Before(to) && (iv.To == nil || iv.To.After(from)) {
				out = append(out, id)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// Applied is the number of mapping changes seen so far: equal numbers, equal mappings.
func (r *Registry) Applied() uint64 { return r.applied.Load() }

// Ready reports whether the in-memory copy has caught up with the bucket.
func (r *Registry) Ready() bool { return r.caughtUp.Load() }

// WaitReady blocks until the copy has caught up or ctx ends.
func (r *Registry) WaitReady(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the mapping copy to catch up: %w", ctx.Err())
	}
}

// PlacementKey returns the key a vehicle reading at t is placed by, from the in-memory copy.
// While this process writes the vehicle's mapping it waits for the write (at most
// writeWait): a reading stamped after the write's time is placed by the new mapping.
func (r *Registry) PlacementKey(vehicleID string, t time.Time) string {
	r.mu.RLock()
	m, w := r.byID[vehicleID], r.writing[vehicleID]
	r.mu.RUnlock()
	if w != nil {
		timer := time.NewTimer(writeWait)
		select {
		case <-w.done:
		case <-timer.C:
		}
		timer.Stop()
		r.mu.RLock()
		m = r.byID[vehicleID]
		r.mu.RUnlock()
	}
	return PlacementKey(m, vehicleID, t)
}

// writeWait bounds how long a placement waits for a mapping write of this process.
const writeWait = time.Second

// write is a vehicle's mapping being written by this process: n writers, done closed when
// the last one ends.
type write struct {
	n    int
	done chan struct{}
}

// begin marks vehicleID as being written, before the write reads its clock, until the
// returned function runs (after the copy took the write, or it failed).
func (r *Registry) begin(vehicleID string) (end func()) {
	r.mu.Lock()
	w := r.writing[vehicleID]
	if w == nil {
		w = &write{done: make(chan struct{})}
		r.writing[vehicleID] = w
	}
	w.n++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		w.n--
		if w.n == 0 {
			delete(r.writing, vehicleID)
			close(w.done)
		}
		r.mu.Unlock()
	}
}

// Cached returns the in-memory copy of a vehicle's mapping.
func (r *Registry) Cached(vehicleID string) (Mapping, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.byID[vehicleID]
	if !ok {
		return Mapping{}, false
	}
	return *m, true
}

// ListCached returns up to limit cached mappings with vehicle ids greater than after, in id
// order, and whether more follow.
func (r *Registry) ListCached(after string, limit int) ([]Mapping, bool) {
	r.mu.RLock()
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	out := make([]Mapping, len(ids))
	for i, id := range ids {
		out[i] = *r.byID[id]
	}
	r.mu.RUnlock()
	return out, more
}

// Get reads a vehicle's mapping from the bucket (not the copy).
func (r *Registry) Get(ctx context.Context, vehicleID string) (Mapping, error) {
	if !placement.ValidDeviceID(vehicleID) {
		return Mapping{}, fmt.Errorf("vehicle id %q: %w", vehicleID, ErrInvalidID)
	}
	e, err := r.kv.Get(ctx, vehicleID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Mapping{}, fmt.Errorf("vehicle %s: %w", vehicleID, ErrNotFound)
	}
	if err != nil {
		return Mapping{}, fmt.Errorf("reading mapping of %s: %w", vehicleID, err)
	}
	m, err := decode(vehicleID, e.Value(), e.Revision())
	if err != nil {
		return Mapping{}, err
	}
	return *m, nil
}

// Set maps a vehicle to a meter from now on, closing its current interval.
func (r *Registry) Set(ctx context.Context, vehicleID, meterID string) (Mapping, error) {
	if !placement.ValidDeviceID(meterID) {
		return Mapping{}, fmt.Errorf("meter id %q: %w", meterID, ErrInvalidID)
	}
	return r.update(ctx, vehicleID, false, r.fromNow(meterID))
}

// Unset ends a vehicle's current mapping now and keeps its history. It fails with
// ErrNotFound when the vehicle has never been mapped.
func (r *Registry) Unset(ctx context.Context, vehicleID string) (Mapping, error) {
	return r.update(ctx, vehicleID, true, r.fromNow(""))
}

// Insert writes an interval with its own start and end (an open end when iv.To is nil) into
// a vehicle's mapping, beside the intervals it has: for a backfill or an import of history.
// It fails with an *OverlapError when iv shares an instant with one of them, checked
// against the value each compare-and-set attempt read, so concurrent writers keep the
// intervals disjoint. Writing an interval the vehicle already has is no change. verify, if
// not nil, runs once before anything is written (after the overlap check passed); its error
// is returned and nothing is written. The interval is never trimmed by the retention when it
// is written, however old.
func (r *Registry) Insert(ctx context.Context, vehicleID string, iv Interval, verify func(context.Context) error) (Mapping, error) {
	if !placement.ValidDeviceID(iv.MeterID) {
		return Mapping{}, fmt.Errorf("meter id %q: %w", iv.MeterID, ErrInvalidID)
	}
	if err := iv.valid(); err != nil {
		return Mapping{}, err
	}
	iv.From = iv.From.UTC()
	if iv.To != nil {
		to := iv.To.UTC()
		iv.To = &to
	}
	verified := verify == nil
	return r.update(ctx, vehicleID, false, func(ctx context.Context, cur Mapping, _ bool, now time.Time) (Mapping, bool, error) {
		next, changed, err := cur.withInterval(iv, now, now.Add(-r.cfg.Retention))
		if err != nil || !changed {
			return next, false, err
		}
		if !verified {
			if err := verify(ctx); err != nil {
				return Mapping{}, false, err
			}
			verified = true
		}
		return next, true, nil
	})
}

// Retention is how long ended intervals are kept in a value (Config.Retention).
func (r *Registry) Retention() time.Duration { return r.cfg.Retention }

// change computes a vehicle's next mapping from the current one (cur is empty and exists
// false for a vehicle without a value) at the writer's time now, and reports whether it
// differs; an error aborts the write.
type change func(ctx context.Context, cur Mapping, exists bool, now time.Time) (next Mapping, changed bool, err error)

// fromNow is the change that maps a vehicle to meterID (none when empty) from now on.
func (r *Registry) fromNow(meterID string) change {
	return func(_ context.Context, cur Mapping, exists bool, now time.Time) (Mapping, bool, error) {
		next := cur.withMeter(meterID, now, now.Add(-r.cfg.Retention))
		same := exists && next.MeterID == cur.MeterID && len(next.Intervals) == len(cur.Intervals) && next.UpdatedAt.Equal(cur.UpdatedAt)
		return next, !same, nil
	}
}

// update applies a change with compare-and-set on the key's revision, retrying on conflict.
func (r *Registry) update(ctx context.Context, vehicleID string, mustExist bool, apply change) (Mapping, error) {
	if !placement.ValidDeviceID(vehicleID) {
		return Mapping{}, fmt.Errorf("vehicle id %q: %w", vehicleID, ErrInvalidID)
	}
	defer r.begin(vehicleID)()
	for attempt := 0; ; attempt++ {
		cur, err := r.Get(ctx, vehicleID)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Mapping{}, err
		}
		if !exists && mustExist {
			return Mapping{}, err
		}
		next, changed, err := apply(ctx, cur, exists, r.cfg.Now().UTC())
		if err != nil {
			return Mapping{}, err
		}
		if !changed {
			return cur, nil
		}
		next.VehicleID = vehicleID
		data, err := encode(next)
		if err != nil {
			return Mapping{}, err
		}
		var rev uint64
		if exists {
			rev, err = r.kv.Update(ctx, vehicleID, data, cur.Revision)
		} else {
			rev, err = r.kv.Create(ctx, vehicleID, data)
		}
		if err == nil {
			next.Revision = rev
			// The writer's copy has its write at once (its watch brings the same revision later
			// and is ignored): readings the writer's process places next use the new mapping.
			r.mu.Lock()
			r.put(&next)
			r.applied.Add(1)
			r.mu.Unlock()
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return Mapping{}, fmt.Errorf("writing mapping of %s: %w", vehicleID, err)
		}
		if attempt >= 20 {
			return Mapping{}, fmt.Errorf("writing mapping of %s: too many concurrent writers: %w", vehicleID, err)
		}
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
