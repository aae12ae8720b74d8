// Package hourcache keeps hours of one shard's data in memory for the analytics read path:
// whole hours of rollups (for the fleet alert question and the whole hours of per-vehicle
// windows), hours of raw history (for the partial first and last hours of per-vehicle
// windows), and the rollup rows of the hour being written (for windows ending now). Every hour is held at the version the shard's rollup_hours table gave it when it
// was read (every transaction that changes an hour's data gives it a new version), and every
// question first reads the versions of the hours it needs: an hour is used only at the
// version the shard has now, so answers are the ones Postgres would compute at that moment,
// while a question over hours that did not change reads a few dozen version rows instead of
// every row of its window.
package hourcache

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/analytics/query"
	"github.com/fleetingest/fleetingest/analytics/window"
)

// Config of a cache.
type Config struct {
	// MaxHours is how many hours of rollups the cache holds; the least recently used are
	// dropped first. A question over more hours than this is not answered from the cache.
	// Default 192 (8 days: a 7-day window and the hour it moves into).
	MaxHours int
	// MaxRawHours is how many hours of raw history the cache holds for the partial first and
	// last hours of per-vehicle windows; at least 2. Default 4 (both edges of a window, and of
	// the window an hour later).
	MaxRawHours int
	// MaxBytes bounds the memory the hours held take (an estimate from their sizes); the least
	// recently used hours, of rollups or raw history, are dropped first. Default 512 MiB.
	MaxBytes int64
	// Settle is how long after its end an hour's raw history may be read into memory: until
	// then its readings still arrive with every batch. Default 2m.
	Settle time.Duration
	// Recent is how many of the last whole hours are kept in memory from the start, whether
	// asked for or not (rounded down to hours; at most MaxHours). Default 24h.
	Recent time.Duration
	// Do runs fn on the shard; background loads use it. Without it per-vehicle questions
	// are not answered from memory (the alert sums still are).
	Do func(ctx context.Context, fn func(ctx context.Context, db query.DBTX) error) error
	// Now is the clock Settle is measured on. Default time.Now.
	Now func() time.Time
	// Loaded counts the hours read from the shard. Optional.
	Loaded prometheus.Counter
	// Logger receives background load failures. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxHours    = 192
	DefaultMaxRawHours = 4
	DefaultSettle      = 2 * time.Minute
	DefaultRecent      = 24 * time.Hour
	DefaultMaxBytes    = 512 << 20
)

func (c Config) withDefaults() Config {
	if c.MaxHours <= 0 {
		c.MaxHours = DefaultMaxHours
	}
	if c.MaxRawHours <= 0 {
		c.MaxRawHours = DefaultMaxRawHours
	}
	// A window's two edges must fit, or loading one would drop the other.
	c.MaxRawHours = max(c.MaxRawHours, 2)
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Recent <= 0 {
		c.Recent = DefaultRecent
	}
	c.Recent = min(c.Recent.Truncate(time.Hour), time.Duration(c.MaxHours)*time.Hour)
	if c.Settle <= 0 {
		c.Settle = DefaultSettle
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Cache holds one shard's hours. It is safe for concurrent use; Run does its background
// loads.
type Cache struct {
	cfg      Config
	wants    chan want
	versions *versionReads
	live     *liveReads
	warm     atomic.Bool
	// wholeLive is the hour being written as last read whole; liveCurrent whether the last
	// question to check found it at its current version.
	wholeLive   atomic.Pointer[liveHour]
	liveCurrent atomic.Bool

	mu      sync.Mutex
	hours   map[time.Time]*hour
	raw     map[time.Time]*rawHour
	pending map[want]bool
	bytes   int64 // of the hours and raw hours held
	tick    uint64
	ids     map[string]int32
	names   []string
	// liveAsked is when the hour being written was last asked to be read whole, liveEvery
	// how long until it may be asked again.
	liveAsked time.Time
	liveEvery time.Duration
}

// hour is one hour's rollups at one version. Its data is never changed once built (only its
// use is recorded); a new version is a new hour.
type hour struct {
	at      time.Time
	version int64
	used    uint64
	bytes   int64
	// meters are the hour's meter_hourly rows.
	meters []meterRow
	// rows are the hour's vehicle_hourly rows in (vehicle, meter) order, each with the
	// vehicle's DC-share of the meter's AC.
	rows []row
	// unshared are the meters with AC but no DC attributed.
	unshared []meterAC
	// dc is the DC attributed to each meter and by how many vehicles.
	dc []meterDC
	// index locates each device's entries, by interned id (ids interned after the hour was
	// built are past its end).
	index []where
}

// locate returns where id's entries are in h.
func (h *hour) locate(id int32) (where, bool) {
	if id < 0 || int(id) >= len(h.index) {
		return where{}, false
	}
	w := h.index[id]
	return w, w.from < w.to || w.meter >= 0 || w.dc >= 0
}

// where locates a device's entries in an hour: its rows (a vehicle: rows[from:to]), its
// meter_hourly row and its attributed DC (a meter: meters[meter], dc[dc]; -1 for none).
type where struct{ from, to, meter, dc int32 }

// Energy is in mWh.
type meterDC struct {
	meter, vehicles int32
	total           int64
}

type meterAC struct {
	meter int32
	ac    int64
}

type meterRow struct {
	meter, readings int32
	ac              int64
	voltageSum      float64
}

type row struct {
	vehicle, meter, readings int32
	dc, share                int64
	tempSum                  float64
}

// span is where id's entries are, [from, to), in a slice ordered by id.
type span struct{ id, from, to int32 }

// find returns the span of id in spans (ordered by id).
func find(spans []span, id int32) (span, bool) {
	i := sort.Search(len(spans), func(i int) bool { return spans[i].id >= id })
	if i < len(spans) && spans[i].id == id {
		return spans[i], true
	}
	return span{}, false
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	c := &Cache{
		cfg:       cfg.withDefaults(),
		wants:     make(chan want, 16),
		versions:  newVersionReads(),
		hours:     map[time.Time]*hour{},
		raw:       map[time.Time]*rawHour{},
		pending:   map[want]bool{},
		ids:       map[string]int32{"": 0},
		names:     []string{""},
		liveEvery: liveReloadMin,
	}
	c.live = newLiveReads(c.wholeLive.Load)
	return c
}

// Len is the number of hours of rollups held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hours)
}

// Bytes estimates the memory the hours held take.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// RawLen is the number of hours of raw history held.
func (c *Cache) RawLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.raw)
}

// AlertSums sums the shard's rollups over the whole hours, as query.AlertTotals does in
// Postgres. ok is false, with nothing read, when the hours are more than the cache holds.
func (c *Cache) AlertSums(ctx context.Context, db query.DBTX, hours window.Range) (sums query.AlertSums, ok bool, err error) {
	hours = window.Range{From: hours.From.UTC(), To: hours.To.UTC()} // hours are map keys
	n := int(hours.To.Sub(hours.From) / time.Hour)
	if n > c.cfg.MaxHours {
		return query.AlertSums{}, false, nil
	}
	held := c.held(hours)
	known := make(map[time.Time]int64, len(held))
	for t, h := range held {
		known[t] = h.version
	}
	rs, err := query.ChangedHours(ctx, db, hours, known)
	if err != nil {
		return query.AlertSums{}, true, err
	}
	return c.sum(c.store(rs, held)), true, nil
}

// held returns the hours of r the cache holds, marked as used.
func (c *Cache) held(r window.Range) map[time.Time]*hour {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	out := map[time.Time]*hour{}
	for t := r.From; t.Before(r.To); t = t.Add(time.Hour) {
		if h, ok := c.hours[t]; ok {
			h.used = c.tick
			out[t] = h
		}
	}
	return out
}

// store builds the changed hours read, keeps them, and returns the hour of every version
// read, in time order (hours without rollups are left out).
func (c *Cache) store(rs *query.Rollups, held map[time.Time]*hour) []*hour {
	// Built before taking the lock, so that questions are not held up by it.
	ids, n := c.intern(rs.Names)
	// rank orders the interned ids of these rows as their strings.
	rank := make([]int32, n)
	for local, r := range rs.Ranks() {
		rank[ids[local]] = r
	}
	built := make(map[time.Time]*hour, len(rs.Changed))
	for i := range rs.Changed {
		built[rs.Changed[i].Hour] = build(&rs.Changed[i], ids, rank)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	use := make([]*hour, 0, len(rs.Versions))
	for _, v := range rs.Versions {
		if v.Version == 0 {
			c.dropHour(v.Hour)
			continue
		}
		h := held[v.Hour]
		if b, ok := built[v.Hour]; ok {
			h = b
			h.used = c.tick
			if c.cfg.Loaded != nil {
				c.cfg.Loaded.Inc()
			}
			// Another reader may have stored a later version meanwhile; any version read is
			// exact for its snapshot, and the next read replaces an older one.
			c.dropHour(v.Hour)
			c.hours[v.Hour] = h
			c.bytes += h.bytes
		}
		use = append(use, h)
	}
	c.evict()
	return use
}

// dropHour forgets the rollups of hour t. c.mu is held.
func (c *Cache) dropHour(t time.Time) {
	if h, ok := c.hours[t]; ok {
		c.bytes -= h.bytes
		delete(c.hours, t)
	}
}

// dropRaw forgets the raw history of hour t. c.mu is held.
func (c *Cache) dropRaw(t time.Time) {
	if r, ok := c.raw[t]; ok {
		c.bytes -= r.bytes
		delete(c.raw, t)
	}
}

// evict drops the least recently used hours beyond MaxHours and MaxRawHours, then until the
// hours held take at most MaxBytes. c.mu is held.
func (c *Cache) evict() {
	type held struct {
		raw  bool
		at   time.Time
		used uint64
	}
	all := make([]held, 0, len(c.hours)+len(c.raw))
	for t, h := range c.hours {
		all = append(all, held{at: t, used: h.used})
	}
	for t, r := range c.raw {
		all = append(all, held{raw: true, at: t, used: r.used})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used < all[j].used })
	for _, x := range all {
		over := len(c.hours) > c.cfg.MaxHours || len(c.raw) > c.cfg.MaxRawHours || c.bytes > c.cfg.MaxBytes
		if !over {
			return
		}
		switch {
		case x.raw && (len(c.raw) > c.cfg.MaxRawHours || c.bytes > c.cfg.MaxBytes):
			c.dropRaw(x.at)
		case !x.raw && (len(c.hours) > c.cfg.MaxHours || c.bytes > c.cfg.MaxBytes):
			c.dropHour(x.at)
		}
	}
}

// id interns a device id; c.mu is held.
func (c *Cache) id(s string) int32 {
	if i, ok := c.ids[s]; ok {
		return i
	}
	i := int32(len(c.names))
	c.ids[s] = i
	c.names = append(c.names, strings.Clone(s))
	return i
}

// intern gives each of names its interned id, under one hold of c.mu; n is how many ids are
// interned then.
func (c *Cache) intern(names []string) (ids []int32, n int) {
	ids = make([]int32, len(names))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(names) > len(c.ids) {
		// A cold read names most of the shard's devices at once: make room for them in one
		// step rather than growing the table and the list as each arrives.
		grown := make(map[string]int32, len(c.ids)+len(names))
		maps.Copy(grown, c.ids)
		c.ids = grown
		c.names = slices.Grow(c.names, len(names))
	}
	for i, s := range names {
		ids[i] = c.id(s)
	}
	return ids, len(c.names)
}

// build indexes an hour's rollup rows and gives each (vehicle, meter) row its DC-share of the
// meter's AC (attribution.Share; 0 when the meter's DC is 0 or it has no AC row), as the alert
// statement computes it. The rows name devices by their index in the names
// read with them: ids maps those to interned ids, rank orders interned ids as their strings
// (len(rank) is how many ids are interned).
func build(r *query.HourRollups, ids, rank []int32) *hour {
	n := len(rank)
	h := &hour{at: r.Hour, version: r.Version}
	h.meters = make([]meterRow, r.Meters.Len())
	for i, m := range r.Meters.All() {
		h.meters[i] = meterRow{meter: ids[m.Meter], readings: m.Readings, ac: m.AC, voltageSum: m.VoltageSum}
	}
	// Rows in vehicle order by a counting sort on the vehicles' ranks, then in meter order
	// within each vehicle (a vehicle has a row per meter it drew from in the hour: a few).
	start := make([]int32, n+1)
	for _, v := range r.Vehicles.All() {
		start[rank[ids[v.Vehicle]]+1]++
	}
	for i := 1; i <= n; i++ {
		start[i] += start[i-1]
	}
	h.rows = make([]row, r.Vehicles.Len())
	for _, v := range r.Vehicles.All() {
		id := ids[v.Vehicle]
		p := &start[rank[id]]
		h.rows[*p] = row{vehicle: id, meter: ids[v.Meter], readings: v.Readings, dc: v.DC, tempSum: v.TempSum}
		*p++
	}
	for i := 0; i < len(h.rows); {
		j := i + 1
		for j < len(h.rows) && h.rows[j].vehicle == h.rows[i].vehicle {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(h.rows[i:j], func(a, b row) int { return cmp.Compare(rank[a.meter], rank[b.meter]) })
		}
		i = j
	}

	h.index = make([]where, n)
	for i := range h.index {
		h.index[i] = where{meter: -1, dc: -1}
	}
	for i, m := range h.meters {
		h.index[m.meter].meter = int32(i)
	}
	// Rows are grouped by vehicle (ordered by its id's string).
	for i := 0; i < len(h.rows); {
		j := i
		for j < len(h.rows) && h.rows[j].vehicle == h.rows[i].vehicle {
			j++
		}
		w := &h.index[h.rows[i].vehicle]
		w.from, w.to = int32(i), int32(j)
		i = j
	}
	for _, rw := range h.rows {
		if rw.meter == 0 {
			continue
		}
		w := &h.index[rw.meter]
		if w.dc < 0 {
			w.dc = int32(len(h.dc))
			h.dc = append(h.dc, meterDC{meter: rw.meter})
		}
		h.dc[w.dc].total += rw.dc
		h.dc[w.dc].vehicles++
	}
	for i := range h.rows {
		rw := &h.rows[i]
		if rw.meter == 0 {
			continue
		}
		if w := h.index[rw.meter]; w.meter >= 0 && h.dc[w.dc].total > 0 {
			rw.share = attribution.Share(h.meters[w.meter].ac, rw.dc, h.dc[w.dc].total)
		}
	}
	for _, m := range h.meters {
		if w := h.index[m.meter]; m.ac > 0 && (w.dc < 0 || h.dc[w.dc].total == 0) {
			h.unshared = append(h.unshared, meterAC{meter: m.meter, ac: m.ac})
		}
	}
	h.bytes = int64(len(h.meters))*int64(unsafe.Sizeof(meterRow{})) + int64(len(h.rows))*int64(unsafe.Sizeof(row{})) +
		int64(len(h.unshared))*int64(unsafe.Sizeof(meterAC{})) + int64(len(h.dc))*int64(unsafe.Sizeof(meterDC{})) +
		int64(len(h.index))*int64(unsafe.Sizeof(where{}))
	return h
}

// sum adds the hours up in time order.
func (c *Cache) sum(hours []*hour) query.AlertSums {
	c.mu.Lock()
	names := c.names // only ever appended to: the ids of these hours are all in it
	c.mu.Unlock()
	meterAC := map[int32]int64{}
	pairs := map[uint64]int{} // (vehicle, meter) → index in out.VehicleMeters
	var out query.AlertSums
	for _, h := range hours {
		for _, m := range h.meters {
			meterAC[m.meter] += m.ac
		}
		for _, r := range h.rows {
			k := uint64(uint32(r.vehicle))<<32 | uint64(uint32(r.meter))
			i, ok := pairs[k]
			if !ok {
				i = len(out.VehicleMeters)
				pairs[k] = i
				out.VehicleMeters = append(out.VehicleMeters, query.VehicleMeter{VehicleID: names[r.vehicle], MeterID: names[r.meter]})
			}
			out.VehicleMeters[i].AC += r.share
			out.VehicleMeters[i].DC += r.dc
		}
		for _, u := range h.unshared {
			out.Unshared = append(out.Unshared, query.MeterHour{MeterID: names[u.meter], Hour: h.at, AC: u.ac})
		}
	}
	out.MeterAC = make(map[string]int64, len(meterAC))
	for m, ac := range meterAC {
		if ac > 0 {
			out.MeterAC[names[m]] = ac
		}
	}
	return out
}
