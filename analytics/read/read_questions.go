package read

import (
	"context"
	"slices"
	"time"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/analytics/window"
)

// Where a question was answered, for Config.Reads.
const (
	fromMemory   = "memory"
	fromPostgres = "postgres"
)

// Vehicle reads the parts of window w this shard holds (whole hours, then the edges) with the
// vehicle's rows and the meters' with the DC attributed to them: hours held are returned whole
// (they never change) and the question looks its rows up in them.
func (s *Shard) Vehicle(ctx context.Context, vehicleID string, w window.Window, meters []string) ([]*Hour, error) {
	return s.parts(ctx, "vehicle", w, devices{vehicle: vehicleID, meters: meters})
}

// Meter reads the parts of window w this shard holds of a meter: its rows and the DC of every
// vehicle attributed to it.
func (s *Shard) Meter(ctx context.Context, meterID string, w window.Window) ([]*Hour, error) {
	return s.parts(ctx, "meter", w, devices{meters: []string{meterID}})
}

// parts returns the window's whole hours and its edges summed from raw readings, for the
// devices d: from memory when it holds them all, else read from Postgres for this question.
func (s *Shard) parts(ctx context.Context, kind string, w window.Window, d devices) ([]*Hour, error) {
	whole, edges := w.Split()
	if parts, ok := s.fromMemory(whole, edges, w.End, d); ok && !s.down.Load() {
		s.count(kind, fromMemory)
		return parts, nil
	}
	s.count(kind, fromPostgres)
	var parts []*Hour
	err := s.cfg.Do(ctx, func(ctx context.Context, db shards.DBTX) error {
		parts = parts[:0]
		if hs := hoursOf(whole); len(hs) > 0 {
			loaded, err := loadHours(ctx, db, hs, d)
			if err != nil {
				return err
			}
			for _, h := range hs {
				parts = append(parts, loaded[h])
			}
		}
		raw := devices{vehicle: d.vehicle, meters: d.meters, raw: true}
		for _, e := range edges {
			at := window.FloorHour(e.From)
			r, err := loadHours(ctx, db, []time.Time{at}, raw)
			if err != nil {
				return err
			}
			parts = append(parts, r[at].edge(e.From, e.To, d.vehicle, d.meters))
		}
		return nil
	})
	return parts, err
}

// fromMemory gathers the window's parts from memory under the read lock; ok is false when it
// lacks one, which it then asks Run to read in (within the horizon).
func (s *Shard) fromMemory(whole window.Range, edges []window.Range, end time.Time, d devices) (parts []*Hour, ok bool) {
	now := s.cfg.Now()
	horizon := window.FloorHour(now.Add(-s.cfg.Horizon))
	settled := now.Add(-settle)
	var wantHours, wantRaw []time.Time
	ok = true
	s.mu.RLock()
	for _, at := range hoursOf(whole) {
		h, held := s.hours[at]
		if !held {
			ok = false
			if !at.Before(horizon) {
				wantHours = append(wantHours, at)
			}
			continue
		}
		h.used.Store(now.UnixNano())
		parts = append(parts, h)
	}
	for _, e := range edges {
		at := window.FloorHour(e.From)
		if r, held := s.raw[at]; held {
			r.used.Store(now.UnixNano())
			parts = append(parts, r.edge(e.From, e.To, d.vehicle, d.meters))
			continue
		}
		// The hour being written: its rows serve a part from its start when they all end
		// before the window does.
		if h, held := s.hours[at]; held && e.From.Equal(at) && h.endsBefore(d.vehicle, d.meters, end) {
			h.used.Store(now.UnixNano())
			parts = append(parts, h)
			continue
		}
		ok = false
		if !at.Before(horizon) && at.Add(time.Hour).Before(settled) && !now.Before(s.quiet[at]) {
			wantRaw = append(wantRaw, at)
		}
	}
	s.mu.RUnlock()
	if len(wantHours) > 0 || len(wantRaw) > 0 {
		s.mu.Lock()
		for _, at := range wantHours {
			s.wantHours[at] = true
		}
		for _, at := range wantRaw {
			s.wantRaw[at] = true
		}
		s.mu.Unlock()
	}
	if !ok {
		s.signal()
	}
	return parts, ok
}

func (s *Shard) count(kind, where string) { s.cfg.Reads.WithLabelValues(kind, where).Inc() }

// hoursOf lists the hours of r.
func hoursOf(r window.Range) []time.Time {
	var out []time.Time
	for h := r.From; h.Before(r.To); h = h.Add(time.Hour) {
		out = append(out, h)
	}
	return out
}

// Alerts sums the shard's whole hours of r for the fleet alert question: from memory, or read
// from Postgres (kept within the horizon); the hours in split (cutovers) returned as rows.
func (s *Shard) Alerts(ctx context.Context, r window.Range, split []time.Time) (AlertSums, error) {
	now := s.cfg.Now()
	horizon := window.FloorHour(now.Add(-s.cfg.Horizon))
	sums := newAlertSums()
	add := func(h *Hour) {
		if slices.ContainsFunc(split, h.At.Equal) {
			sums.Split = append(sums.Split, h)
		} else {
			sums.add(h)
		}
	}
	var missing []time.Time
	var held []*Hour
	key := &alertCache{r: r, split: split}
	s.mu.RLock()
	for _, at := range hoursOf(r) {
		if h, ok := s.hours[at]; ok && !s.down.Load() {
			h.used.Store(now.UnixNano())
			held = append(held, h)
			key.versions = append(key.versions, h.Version)
		} else {
			missing = append(missing, at)
		}
	}
	last := s.alerts
	s.mu.RUnlock()
	// A dashboard asks the same hours again and again, and whole hours seldom change: the last
	// sums serve while every hour is at the version they were made of.
	if len(missing) == 0 && last != nil && last.madeOf(key) {
		s.count("alerts", fromMemory)
		return last.sums, nil
	}
	for _, h := range held {
		add(h)
	}
	if len(missing) == 0 {
		s.count("alerts", fromMemory)
		key.sums = *sums
		key.sums.Made = made.Add(1)
		s.mu.Lock()
		s.alerts = key
		s.mu.Unlock()
		return key.sums, nil
	}
	s.count("alerts", fromPostgres)
	err := s.readHours(ctx, missing, func(loaded map[time.Time]*Hour) {
		keep := map[time.Time]*Hour{}
		for at, h := range loaded {
			add(h)
			if !at.Before(horizon) {
				keep[at] = h
			}
		}
		s.install(keep, nil)
	})
	if err != nil {
		return AlertSums{}, err
	}
	return *sums, nil
}

// alertCache is the last alert sums a shard made from memory, and what they were made of: the
// hours of r at their versions. Never changed once made.
type alertCache struct {
	r        window.Range
	split    []time.Time
	versions []int64
	sums     AlertSums
}

func (c *alertCache) madeOf(o *alertCache) bool {
	return c.r.From.Equal(o.r.From) && c.r.To.Equal(o.r.To) && slices.EqualFunc(c.split, o.split, time.Time.Equal) && slices.Equal(c.versions, o.versions)
}
