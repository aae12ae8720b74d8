package hourcache

import (
	"context"
	"slices"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
	"github.com/fleetingest/fleetingest/analytics/window"
)

// want is a background load: the rollups of the hours of rollups, the raw hour at raw, or the
// hour being written at live read whole.
type want struct {
	rollups window.Range
	raw     time.Time
	live    time.Time
}

// Vehicle answers, from memory, what query.Vehicle reads from the shard for vehicleID's
// window and meter spans: it reads the versions of the window's hours (one small statement)
// and answers when it holds every whole hour's rollups and every edge hour's raw history at
// those versions. An edge in an hour that ended less than Config.Settle ago (the hour being
// written now, for a window that ends now) is never held: its rows are read by the
// per-vehicle statement in the same round trip and snapshot as the versions. Otherwise
// answered is false and the hours it lacks are loaded in the background for the questions
// that follow. err is the shard's.
func (c *Cache) Vehicle(ctx context.Context, db query.DBTX, vehicleID string, w window.Window, meters []query.MeterSpan) (rows query.VehicleRows, answered bool, err error) {
	if c.cfg.Do == nil {
		return query.VehicleRows{}, false, nil
	}
	// Hours are map keys: one location for all.
	w.Start, w.End = w.Start.UTC(), w.End.UTC()
	from, to := window.FloorHour(w.Start), window.CeilHour(w.End)
	if int(to.Sub(from)/time.Hour) > c.cfg.MaxHours {
		return query.VehicleRows{}, false, nil
	}
	whole, edges := w.Split()
	// An edge whose hour has not settled (the hour being written now) is read from Postgres,
	// in the same round trip and snapshot as the versions; the rest comes from memory.
	settled := c.cfg.Now().Add(-c.cfg.Settle)
	live := -1
	for i, e := range edges {
		if window.FloorHour(e.From).Add(time.Hour).After(settled) {
			if live >= 0 {
				return query.VehicleRows{}, false, nil // two unsettled edges: the statement's work
			}
			live = i
		}
	}
	col := query.NewVehicleCollector(vehicleID, meters, int(to.Sub(from)/time.Hour))
	var versions map[time.Time]int64
	if live >= 0 {
		versions, err = c.liveEdge(ctx, db, vehicleID, meters, window.Range{From: from, To: to}, edges[live], col)
	} else {
		versions, err = c.versions.get(ctx, db, hourRange{from, to}, struct{}{})
	}
	if err != nil {
		return query.VehicleRows{}, false, err
	}

	held, stale, missing := c.inMemory(versions, whole, edges, live, vehicleID, meters)

	if stale || len(missing) > 0 {
		if stale {
			c.want(want{rollups: whole})
		}
		for _, at := range missing { // settled, as every edge but the live one
			c.want(want{raw: at})
		}
		return query.VehicleRows{}, false, nil
	}

	for _, h := range held.hours {
		wholeHour(col, h, held.vid, held.mids, held.names)
	}
	for i, e := range edges {
		if held.raws[i] != nil {
			edgeHour(col, held.raws[i], e, held.vid, held.mids, held.names)
		}
	}
	return col.Rows(), true, nil
}

// heldHours is what memory holds of one question's window at the hours' versions.
type heldHours struct {
	hours []*hour
	raws  []*rawHour // by edge; nil where not held or not needed
	vid   int32      // the vehicle's interned id, -1 if unknown
	mids  []int32    // the meters' interned ids
	names []string   // only ever appended to: every id of the hours above is in it
}

// inMemory takes, under the lock, the whole hours and edge hours of a question at versions, and
// says whether a whole hour is stale and which edge hours are missing. The edge live was
// read with the versions.
func (c *Cache) inMemory(versions map[time.Time]int64, whole window.Range, edges []window.Range, live int, vehicleID string, meters []query.MeterSpan) (held heldHours, stale bool, missing []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	for t := whole.From; t.Before(whole.To); t = t.Add(time.Hour) {
		v := versions[t]
		if v == 0 {
			continue // no rollup rows
		}
		h := c.hours[t]
		if h == nil || h.version != v {
			stale = true
			continue
		}
		h.used = c.tick
		held.hours = append(held.hours, h)
	}
	held.raws = make([]*rawHour, len(edges))
	for i, e := range edges {
		at := window.FloorHour(e.From)
		v := versions[at]
		if v == 0 || i == live {
			continue // no readings, or read with the versions
		}
		r := c.raw[at]
		if r == nil || r.version != v {
			missing = append(missing, at)
			continue
		}
		r.used = c.tick
		held.raws[i] = r
	}
	vid, known := c.ids[vehicleID]
	if !known {
		vid = -1
	}
	held.vid = vid
	for _, m := range meters {
		if id, ok := c.ids[m.MeterID]; ok && !slices.Contains(held.mids, id) {
			held.mids = append(held.mids, id)
		}
	}
	held.names = c.names
	return held, stale, missing
}

// liveEdge adds the window's part e of the hour being written to col and returns the versions
// of hours, both from one snapshot. While the hour as last read whole (liveHour) is at its
// current version, a question reads only the versions (shared with the questions about the
// same hours) and takes the hour from memory. Otherwise questions about windows ending now
// share one read of the versions and, unless the hour held is still at its version, of that
// hour's rollup rows of all their vehicles and meters; the hour is then read whole again in
// the background. A question whose rows do not all end before its window does (or whose part
// does not start at the hour) reads the hour's raw readings with the versions instead.
func (c *Cache) liveEdge(ctx context.Context, db query.DBTX, vehicleID string, meters []query.MeterSpan, hours, e window.Range, col *query.VehicleCollector) (map[time.Time]int64, error) {
	at := window.FloorHour(e.From)
	if !e.From.Equal(at) {
		return query.VehicleEdge(ctx, db, vehicleID, meters, hours, e, col)
	}
	ids := query.MeterIDs(meters)
	var versions map[time.Time]int64
	var rows *query.LiveRollups
	if lh := c.wholeLive.Load(); lh != nil && lh.at.Equal(at) && c.liveCurrent.Load() {
		v, err := c.versions.get(ctx, db, hourRange{hours.From, hours.To}, struct{}{})
		if err != nil {
			return nil, err
		}
		if v[at] == lh.version {
			lh.served.Add(1)
			versions, rows = v, lh.view(vehicleID, ids)
		} else {
			c.liveCurrent.Store(false)
		}
	}
	if rows == nil {
		lr, err := c.live.get(ctx, db, liveKey{hours.From, hours.To, at}, liveNeed{vehicle: vehicleID, meters: ids})
		if err != nil {
			return nil, err
		}
		versions, rows = lr.rows.Versions, lr.rows
		if lr.base != nil && versions[at] == lr.base.version {
			c.liveCurrent.Store(true)
			lr.base.served.Add(1)
			rows = lr.base.view(vehicleID, ids)
		} else {
			c.reloadLive(at, lr.base)
		}
	}
	if rows.Edge(col, at, vehicleID, ids, e.To) {
		return versions, nil
	}
	return query.VehicleEdge(ctx, db, vehicleID, meters, hours, e, col)
}

// reloadLive asks the loader to read hour at whole again, found changed since stale (nil: not
// held) was read. Reloads are at least liveEvery apart: from liveReloadMin while each reload
// goes on to answer questions, doubling up to liveReloadMax while the hour changes faster
// than that (under a steady ingest its version changes with every batch, and a reload would
// cost more than it saves).
func (c *Cache) reloadLive(at time.Time, stale *liveHour) {
	now := time.Now()
	c.mu.Lock()
	due := now.Sub(c.liveAsked) >= c.liveEvery
	if due {
		c.liveAsked = now
		if stale != nil && stale.served.Load() < liveReloadPays {
			c.liveEvery = min(2*c.liveEvery, liveReloadMax)
		} else {
			c.liveEvery = liveReloadMin
		}
	}
	c.mu.Unlock()
	if due {
		c.want(want{live: at})
	}
}

// loadLive reads hour at whole and keeps it as the hour being written. Device ids are taken
// from the hour it replaces where they were in it (the hour is read again every time it
// changes: mostly the same devices), without holding c.mu while the rows arrive.
func (c *Cache) loadLive(ctx context.Context, db query.DBTX, at time.Time) error {
	var prev map[string]string
	if l := c.wholeLive.Load(); l != nil {
		prev = l.names
	}
	intern := func(id []byte) string {
		if s, ok := prev[string(id)]; ok {
			return s
		}
		return string(id)
	}
	version, rows, err := query.WholeLiveHour(ctx, db, at, intern)
	if err != nil {
		return err
	}
	c.wholeLive.Store(newLiveHour(at, version, rows))
	c.liveCurrent.Store(true)
	return nil
}

// wholeHour adds a whole hour's rollup rows: the vehicle's own, and for each of the meters
// the DC of every vehicle attributed to it and its AC.
func wholeHour(col *query.VehicleCollector, h *hour, vid int32, mids []int32, names []string) {
	var own []row
	if w, ok := h.locate(vid); ok {
		own = h.rows[w.from:w.to]
		for _, r := range own {
			col.Own(names[r.meter], h.at, r.dc, r.tempSum, int(r.readings))
		}
	}
	for _, m := range mids {
		w, ok := h.locate(m)
		if !ok {
			continue
		}
		if w.dc >= 0 {
			includes := slices.ContainsFunc(own, func(r row) bool { return r.meter == m })
			col.MeterDC(names[m], h.at, h.dc[w.dc].total, int(h.dc[w.dc].vehicles), includes)
		}
		if w.meter >= 0 {
			mr := h.meters[w.meter]
			col.MeterRow(names[m], h.at, mr.ac, mr.voltageSum, int(mr.readings))
		}
	}
}

// edgeHour adds the window's part e of a partial hour from its raw history: by meter, the
// readings of the vehicle and those attributed to one of the meters by the vehicles that
// drew from them in the hour, and the meters' AC.
func edgeHour(col *query.VehicleCollector, r *rawHour, e window.Range, vid int32, mids []int32, names []string) {
	from, to := e.From.UnixMicro(), e.To.UnixMicro()
	var us []int32
	if vid >= 0 {
		us = append(us, vid)
	}
	for _, m := range mids {
		if sp, ok := find(r.aspans, m); ok {
			us = append(us, r.attributed[sp.from:sp.to]...)
		}
	}
	slices.Sort(us)
	us = slices.Compact(us)
	type sums struct {
		meter int32
		dc    int64
		temp  float64
		n     int
	}
	var by []sums
	for _, u := range us {
		sp, ok := find(r.vspans, u)
		if !ok {
			continue
		}
		by = by[:0]
		for _, x := range between(r.vehicles[sp.from:sp.to], func(x rawVehicle) int64 { return x.ts }, from, to) {
			if u != vid && !slices.Contains(mids, x.meter) {
				continue
			}
			i := slices.IndexFunc(by, func(s sums) bool { return s.meter == x.meter })
			if i < 0 {
				i = len(by)
				by = append(by, sums{meter: x.meter})
			}
			by[i].dc += x.dc
			by[i].temp += x.temp
			by[i].n++
		}
		for _, s := range by {
			col.VehicleRow(names[u], names[s.meter], r.at, s.dc, s.temp, s.n)
		}
	}
	for _, m := range mids {
		sp, ok := find(r.mspans, m)
		if !ok {
			continue
		}
		var ac int64
		var v float64
		n := 0
		for _, x := range between(r.meters[sp.from:sp.to], func(x rawMeter) int64 { return x.ts }, from, to) {
			ac += x.ac
			v += x.voltage
			n++
		}
		if n > 0 {
			col.MeterRow(names[m], r.at, ac, v, n)
		}
	}
}

// want asks the background loader for w, once while it is pending.
func (c *Cache) want(w want) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[w] {
		return
	}
	select {
	case c.wants <- w:
		c.pending[w] = true
	default: // the loader is busy: a later question asks again
	}
}

// Run loads what questions found missing, one load at a time, until ctx ends. It first
// reads the rollups of the last Config.Recent whole hours (Warm reports when that is done)
// and reads them again every minute when they changed, so that windows ending now find them
// in memory.
func (c *Cache) Run(ctx context.Context) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	c.run(ctx, c.recent())
	c.warm.Store(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.want(c.recent())
		case w := <-c.wants:
			c.run(ctx, w)
			c.mu.Lock()
			delete(c.pending, w)
			c.mu.Unlock()
		}
	}
}

// Warm reports whether Run has made its first read of the last Config.Recent hours (whether
// or not the shard answered it).
func (c *Cache) Warm() bool { return c.warm.Load() }

// run does one load on the shard, logging a failure.
func (c *Cache) run(ctx context.Context, w want) {
	err := c.cfg.Do(ctx, func(ctx context.Context, db query.DBTX) error { return c.load(ctx, db, w) })
	if err != nil && ctx.Err() == nil {
		c.cfg.Logger.Warn("loading hours into the analytics cache", "rollups", w.rollups, "raw", w.raw, "live", w.live, "err", err)
	}
}

// recent is the load of the rollups of the last Config.Recent whole hours (only hours not
// held at their current version are read).
func (c *Cache) recent() want {
	end := window.FloorHour(c.cfg.Now().UTC())
	return want{rollups: window.Range{From: end.Add(-c.cfg.Recent), To: end}}
}

func (c *Cache) load(ctx context.Context, db query.DBTX, w want) error {
	if !w.live.IsZero() {
		return c.loadLive(ctx, db, w.live)
	}
	if w.raw.IsZero() {
		held := c.held(w.rollups)
		known := make(map[time.Time]int64, len(held))
		for t, h := range held {
			known[t] = h.version
		}
		rs, err := query.ChangedHours(ctx, db, w.rollups, known)
		if err != nil {
			return err
		}
		c.store(rs, held)
		return nil
	}
	r, err := c.loadRaw(ctx, db, w.raw)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	r.used = c.tick
	c.dropRaw(r.at)
	c.raw[r.at] = r
	c.bytes += r.bytes
	if c.cfg.Loaded != nil {
		c.cfg.Loaded.Inc()
	}
	c.evict()
	return nil
}
