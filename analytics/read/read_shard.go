package read

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

// Config of a shard's reader. A duration or bound not above zero takes its default.
type Config struct {
	// Do runs fn on the shard's database (shards.Set.Do). Required.
	Do func(ctx context.Context, fn func(ctx context.Context, db shards.DBTX) error) error
	// Recent is how far back hours are held and followed from the start, asked for or not,
	// so that a new replica answers the day's questions from memory. Default 24h.
	Recent time.Duration
	// Horizon is how far back hours asked for are brought into memory; older ones are read
	// from Postgres. Default 8 days (a 7-day window and the hour it moves into).
	Horizon time.Duration
	// MaxBytes bounds the memory the hours take; the least recently used hours older than
	// Recent go first. Default 256 MiB.
	MaxBytes int64
	// MaxRawHours bounds the hours of raw readings held for windows' edges. Default 4.
	MaxRawHours int
	// Poll is how often the hours' versions are read, to catch what no notice told. Default 2s.
	Poll time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Reads counts questions by kind and where answered ("memory", "postgres"). Optional.
	Reads *prometheus.CounterVec
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultRecent      = 24 * time.Hour
	DefaultHorizon     = 8 * 24 * time.Hour
	DefaultMaxBytes    = 256 << 20
	DefaultMaxRawHours = 4
	DefaultPoll        = 2 * time.Second
)

// minReload is the least time between two reads of changed hours (with the ingesters' batch
// wait, how stale an answer may be); settle how long after its end or a late reading an
// hour's raw readings may be held: until then they change with nearly every batch.
const (
	minReload = 200 * time.Millisecond
	settle    = 2 * time.Minute
	loadChunk = 6 // hours of rollups read by one statement
)

func (c Config) withDefaults() Config {
	c.Recent = cmp.Or(max(c.Recent, 0), DefaultRecent)
	c.Horizon = max(cmp.Or(max(c.Horizon, 0), DefaultHorizon), c.Recent)
	c.MaxBytes = cmp.Or(max(c.MaxBytes, 0), DefaultMaxBytes)
	c.MaxRawHours = max(cmp.Or(max(c.MaxRawHours, 0), DefaultMaxRawHours), 2) // both edges of a window
	c.Poll = cmp.Or(max(c.Poll, 0), DefaultPoll)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Reads = cmp.Or(c.Reads, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reads"}, []string{"kind", "source"}))
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Shard answers the questions of one shard, from memory when it holds what they need.
type Shard struct {
	cfg   Config
	ready atomic.Bool
	down  atomic.Bool // the last poll failed
	wake  chan struct{}

	mu    sync.RWMutex
	hours map[time.Time]*Hour
	raw   map[time.Time]*Hour // raw readings, a row each
	// stale hours have a version newer than the one held (0: to be checked); wantHours and
	// wantRaw are to be read in.
	stale     map[time.Time]int64
	wantHours map[time.Time]bool
	wantRaw   map[time.Time]bool
	// quiet is when hours whose raw readings changed while held may be read in again: a raw
	// hour that changes is dropped, not read again whole with every late reading.
	quiet  map[time.Time]time.Time
	alerts *alertCache
}

// New returns a shard's reader; Run keeps its memory.
func New(cfg Config) *Shard {
	return &Shard{
		cfg: cfg.withDefaults(), wake: make(chan struct{}, 1),
		hours: map[time.Time]*Hour{}, raw: map[time.Time]*Hour{},
		stale: map[time.Time]int64{}, wantHours: map[time.Time]bool{}, wantRaw: map[time.Time]bool{},
		quiet: map[time.Time]time.Time{},
	}
}

// Ready reports whether the first read of the recent hours is done: they are in memory, or
// the shard did not answer (its questions then answer Unavailable until it does).
func (s *Shard) Ready() bool { return s.ready.Load() }

// Notify takes a commit notice: held hours whose version moved are read again, recent ones
// not held read in; hours after the clock's next (no reading's the gateways accept) ignored.
func (s *Shard) Notify(changed []telemetry.HourVersion) {
	s.mu.Lock()
	recent := s.recentFrom()
	next := window.FloorHour(s.cfg.Now()).Add(time.Hour)
	for _, c := range changed {
		if !c.Hour.After(next) {
			s.mark(c.Hour, c.Version, recent)
		}
	}
	s.mu.Unlock()
	s.signal()
}

// mark records that hour h has version v. s.mu is held.
func (s *Shard) mark(h time.Time, v int64, recent time.Time) {
	held, ok := s.hours[h]
	if ok && held.Version != v || !ok && !h.Before(recent) {
		s.stale[h] = max(s.stale[h], v)
	}
	if r, ok := s.raw[h]; ok && r.Version != v {
		delete(s.raw, h)
		s.quiet[h] = s.cfg.Now().Add(settle)
	}
}

func (s *Shard) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// recentFrom is the first hour always held.
func (s *Shard) recentFrom() time.Time {
	return window.FloorHour(s.cfg.Now().Add(-s.cfg.Recent))
}

// Run reads the recent hours in, then, until ctx ends, at most every minReload those notices
// and polls find changed and questions ask for. Its pace is the machine's, not Now's.
func (s *Shard) Run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	s.poll(ctx)
	for {
		started := time.Now()
		if loaded := s.load(ctx); !s.ready.Load() {
			s.ready.Store(true)
			s.cfg.Logger.Info("first read of the recent hours done", "read", loaded)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			s.poll(ctx)
		case <-s.wake:
		}
		select { // notices arriving meanwhile are read together
		case <-ctx.Done():
			return nil
		case <-time.After(minReload - time.Since(started)):
		}
	}
}

// poll reads the versions of every hour held and of the recent hours, and marks what moved.
func (s *Shard) poll(ctx context.Context) {
	s.mu.RLock()
	held := slices.Concat(slices.Collect(maps.Keys(s.hours)), slices.Collect(maps.Keys(s.raw)))
	from := slices.MinFunc(append(held, s.recentFrom()), time.Time.Compare)
	s.mu.RUnlock()
	versions := map[time.Time]int64{}
	ok := s.ok(ctx, "reading the hours' versions", s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) error {
		var h time.Time
		var v int64
		return scanRows(ctx, db, `SELECT hour, version FROM rollup_hours WHERE hour >= @from`, pgx.NamedArgs{"from": from}, []any{&h, &v}, func() {
			versions[h.UTC()] = v
		})
	}))
	if ctx.Err() != nil {
		return
	}
	// A shard that does not answer its poll answers no question from memory: what it holds
	// may lack readings acknowledged since, which wait for the shard in the stream.
	s.down.Store(!ok)
	if !ok {
		return
	}
	s.mu.Lock()
	recent := s.recentFrom()
	for h := recent; !h.After(s.cfg.Now()); h = h.Add(time.Hour) {
		s.mark(h, versions[h], recent)
	}
	for h := range s.hours {
		s.mark(h, versions[h], recent)
	}
	for h := range s.raw {
		s.mark(h, versions[h], recent)
	}
	s.mu.Unlock()
}

// load reads what is stale or wanted and puts it in memory; it reports whether all of it
// was read.
func (s *Shard) load(ctx context.Context) bool {
	s.mu.Lock()
	var hours []time.Time
	changed := map[time.Time]*Hour{} // held hours to read the changed rows of
	for h := range s.stale {
		held, ok := s.hours[h]
		switch {
		case ok:
			changed[h] = held
		case !h.Before(s.recentFrom()):
			hours = append(hours, h)
		default:
			delete(s.stale, h) // dropped from memory since
		}
	}
	hours = append(hours, slices.Collect(maps.Keys(s.wantHours))...)
	raws := slices.SortedFunc(maps.Keys(s.wantRaw), time.Time.Compare)
	s.mu.Unlock()
	slices.SortFunc(hours, time.Time.Compare)
	hours = slices.Compact(hours)
	// A held hour that changed: only the rows written since the version held (those of the
	// batches since, whatever their number).
	for at, held := range changed {
		var h *Hour
		if !s.ok(ctx, "reading an hour's changed rows into memory", s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) (err error) {
			h, err = loadChanges(ctx, db, held)
			return err
		})) {
			return false
		}
		s.install(map[time.Time]*Hour{at: h}, nil)
	}
	if !s.ok(ctx, "reading changed hours into memory", s.readHours(ctx, hours, func(loaded map[time.Time]*Hour) { s.install(loaded, nil) })) {
		return false
	}
	for _, at := range raws {
		var r map[time.Time]*Hour
		if !s.ok(ctx, "reading an hour's raw readings into memory", s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) (err error) {
			r, err = loadHours(ctx, db, []time.Time{at}, devices{raw: true})
			return err
		})) {
			return false
		}
		s.install(nil, r[at])
	}
	return true
}

// ok reports whether a read of the shard succeeded; a failure is logged, unless ctx ended.
func (s *Shard) ok(ctx context.Context, what string, err error) bool {
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn(what, "err", err)
	}
	return err == nil
}

// readHours reads hours whole, a few a statement (each well within the query timeout), and
// hands each statement's hours to fn as they arrive, so what was read is kept if one fails.
func (s *Shard) readHours(ctx context.Context, hours []time.Time, fn func(map[time.Time]*Hour)) error {
	for len(hours) > 0 {
		n := min(len(hours), loadChunk)
		var loaded map[time.Time]*Hour
		if err := s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) (err error) {
			loaded, err = loadHours(ctx, db, hours[:n], devices{})
			return err
		}); err != nil {
			return err
		}
		fn(loaded)
		hours = hours[n:]
	}
	return nil
}

// install puts hours read in memory, then drops the least recently used ones over the bounds.
func (s *Shard) install(hours map[time.Time]*Hour, r *Hour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for at, h := range hours {
		s.hours[at] = h
		delete(s.wantHours, at)
		if s.stale[at] <= h.Version {
			delete(s.stale, at)
		}
	}
	if r != nil {
		delete(s.wantRaw, r.At)
		if s.stale[r.At] > r.Version { // changed while being read
			s.quiet[r.At] = s.cfg.Now().Add(settle)
		} else {
			s.raw[r.At] = r
		}
	}
	for at, t := range s.quiet {
		if s.cfg.Now().After(t) {
			delete(s.quiet, at)
		}
	}
	recent := s.recentFrom()
	var size int64
	var old []time.Time
	for at, h := range s.hours {
		size += h.bytes()
		if at.Before(recent) {
			old = append(old, at)
		}
	}
	for _, r := range s.raw {
		size += r.bytes()
	}
	rawAt := slices.SortedFunc(maps.Keys(s.raw), func(a, b time.Time) int { return cmp.Compare(s.raw[a].used.Load(), s.raw[b].used.Load()) })
	for len(rawAt) > s.cfg.MaxRawHours || size > s.cfg.MaxBytes && len(rawAt) > 0 {
		size -= s.raw[rawAt[0]].bytes()
		delete(s.raw, rawAt[0])
		rawAt = rawAt[1:]
	}
	slices.SortFunc(old, func(a, b time.Time) int { return cmp.Compare(s.hours[a].used.Load(), s.hours[b].used.Load()) })
	for ; size > s.cfg.MaxBytes && len(old) > 0; old = old[1:] {
		size -= s.hours[old[0]].bytes()
		delete(s.hours, old[0])
	}
}
