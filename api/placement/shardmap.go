package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// ShardMap is placement over time: a list of slot-map versions, each in force for readings
// whose timestamp t satisfies From <= t < next.From. A reading is placed by the version in
// force at its own timestamp, so appending a version never moves data already placed.
//
// Its JSON form is
//
//	{"versions":[
//	  {"shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]},
//	  {"from":"2025-03-01T00:00:00Z","shards":2,"ranges":[{"shard":0,"start":0,"end":2047},{"shard":1,"start":2048,"end":4095}]}
//	]}
//
// The first version holds from the beginning: Marshal omits its "from", and ParseShardMap
// accepts it absent or as "0001-01-01T00:00:00Z". Every other "from" is an RFC 3339 time.
// ParseShardMap also accepts a single SlotMap's JSON ({"shards":N,"ranges":[...]}) as a
// one-version map.
//
// A valid ShardMap has at least one version, the first with the zero From, versions strictly
// ordered by From, every version's SlotMap valid, and a shard count that never decreases.
// Its slot maps are shared with the maps Grow derives from it and must not be modified.
type ShardMap struct {
	// Versions are the slot maps in force over time, ordered by From.
	Versions []Version `json:"versions"`
}

// Version is one slot map and the time from which it is in force.
type Version struct {
	// From is the first reading timestamp the version places; the zero time for the first
	// version, which holds from the beginning.
	From time.Time `json:"from,omitzero"`
	// SlotMap assigns every slot to a shard from From until the next version's From.
	*SlotMap
}

// Owner is a span of time [From, To) during which one shard owned a key.
type Owner struct {
	// Shard is the index of the owning shard.
	Shard int
	// From is the start of the span (inclusive).
	From time.Time
	// To is the end of the span (exclusive).
	To time.Time
}

// NewShardMap returns a shard map of one version, in force from the beginning, equal to
// NewSlotMap(n).
func NewShardMap(n int) (*ShardMap, error) {
	sm, err := NewSlotMap(n)
	if err != nil {
		return nil, fmt.Errorf("creating shard map: %w", err)
	}
	return &ShardMap{Versions: []Version{{SlotMap: sm}}}, nil
}

// MustShardMap is NewShardMap for shard counts known to be valid; it panics otherwise.
func MustShardMap(n int) *ShardMap {
	m, err := NewShardMap(n)
	if err != nil {
		panic(err)
	}
	return m
}

// At returns the slot map in force at t. Times before the first version's From fall in the
// first version, which holds from the beginning.
func (m *ShardMap) At(t time.Time) *SlotMap {
	return m.Versions[m.versionAt(t)].SlotMap
}

// versionAt returns the index of the version in force at t.
func (m *ShardMap) versionAt(t time.Time) int {
	next := sort.Search(len(m.Versions), func(i int) bool { return m.Versions[i].From.After(t) })
	return max(next-1, 0)
}

// ShardOf returns the shard that owns a placement key for a reading taken at t.
func (m *ShardMap) ShardOf(key string, t time.Time) int {
	return m.At(t).ShardOf(key)
}

// Latest returns the newest version's slot map: the placement of readings from its From on.
func (m *ShardMap) Latest() *SlotMap {
	return m.Versions[len(m.Versions)-1].SlotMap
}

// Shards returns the number of shards, the latest version's count (counts never shrink).
func (m *ShardMap) Shards() int {
	return m.Latest().Shards
}

// Cutovers returns the From of every version after the first, in order: the times at which
// placement changes.
func (m *ShardMap) Cutovers() []time.Time {
	out := make([]time.Time, 0, len(m.Versions)-1)
	for _, v := range m.Versions[1:] {
		out = append(out, v.From)
	}
	return out
}

// Owners returns the shards that owned key over [from, to), in time order: one span per
// version overlapping the window, clipped to it, with consecutive spans of the same shard
// merged. It returns nil when the window is empty.
func (m *ShardMap) Owners(key string, from, to time.Time) []Owner {
	if !from.Before(to) {
		return nil
	}
	slot := Slot(key)
	var out []Owner
	for i := m.versionAt(from); i < len(m.Versions); i++ {
		if i > 0 && !m.Versions[i].From.Before(to) {
			break
		}
		start, end := from, to
		if i > 0 && m.Versions[i].From.After(from) {
			start = m.Versions[i].From
		}
		if i+1 < len(m.Versions) && m.Versions[i+1].From.Before(to) {
			end = m.Versions[i+1].From
		}
		shard := m.Versions[i].ShardOfSlot(slot)
		if n := len(out); n > 0 && out[n-1].Shard == shard {
			out[n-1].To = end
			continue
		}
		out = append(out, Owner{Shard: shard, From: start, To: end})
	}
	return out
}

// Validate checks that the map has at least one version, the first from the beginning,
// versions strictly ordered by From, every slot map valid and no shard count decreasing.
func (m *ShardMap) Validate() error {
	if len(m.Versions) == 0 {
		return errors.New("shard map has no versions")
	}
	for i, v := range m.Versions {
		sm := v.SlotMap
		if sm == nil {
			return fmt.Errorf("version %d (from %s) has no slot map", i, formatFrom(v.From))
		}
		if err := sm.Validate(); err != nil {
			return fmt.Errorf("version %d (from %s): %w", i, formatFrom(v.From), err)
		}
		if i == 0 {
			if !v.From.IsZero() {
				return fmt.Errorf("version 0 is from %s, want the zero time: the first version holds from the beginning",
					formatFrom(v.From))
			}
			continue
		}
		prev := m.Versions[i-1]
		if !v.From.After(prev.From) {
			return fmt.Errorf("version %d is from %s, not after version %d from %s: versions must be ordered by from",
				i, formatFrom(v.From), i-1, formatFrom(prev.From))
		}
		if v.Shards < prev.Shards {
			return fmt.Errorf("version %d has %d shards, fewer than version %d's %d: shard counts never decrease",
				i, v.Shards, i-1, prev.Shards)
		}
	}
	return nil
}

// Marshal returns the JSON form of the shard map (the versions form, see ShardMap).
func (m *ShardMap) Marshal() ([]byte, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding shard map: %w", err)
	}
	return data, nil
}

// ParseShardMap reads and validates the JSON form of a shard map: the versions form, or a
// single SlotMap's JSON, which becomes a one-version map in force from the beginning.
func ParseShardMap(data []byte) (*ShardMap, error) {
	var probe struct {
		Versions json.RawMessage `json:"versions"`
		Shards   json.RawMessage `json:"shards"`
		Ranges   json.RawMessage `json:"ranges"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("decoding shard map: %w", err)
	}
	if probe.Versions == nil {
		sm, err := ParseSlotMap(data)
		if err != nil {
			return nil, fmt.Errorf("reading single slot map as a shard map: %w", err)
		}
		return &ShardMap{Versions: []Version{{SlotMap: sm}}}, nil
	}
	if probe.Shards != nil || probe.Ranges != nil {
		return nil, errors.New(`decoding shard map: "versions" beside a top-level "shards" or "ranges"; use one form`)
	}
	var m ShardMap
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding shard map: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("validating shard map: %w", err)
	}
	for i, v := range m.Versions {
		if err := v.index(); err != nil {
			return nil, fmt.Errorf("indexing shard map version %d: %w", i, err)
		}
	}
	return &m, nil
}

// Grow returns a copy of m with a version appended at from that spreads the slots over
// shards shards; m is unchanged. from must be after the latest version's From, and shards
// more than the current count and at most Slots.
//
// The new version gives every shard Slots/shards slots or one more, so after any sequence of
// growths (even from an uneven hand-written map) the slot counts differ by at most one. It
// moves only what must move: shards holding more than their even share give up their
// highest slots, in whole contiguous ranges, and nothing else changes owner.
func Grow(m *ShardMap, shards int, from time.Time) (*ShardMap, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("growing shard map: %w", err)
	}
	latest := m.Versions[len(m.Versions)-1]
	switch {
	case shards <= latest.Shards:
		return nil, fmt.Errorf("growing shard map to %d shards: it already has %d; shard counts only grow",
			shards, latest.Shards)
	case shards > Slots:
		return nil, fmt.Errorf("growing shard map to %d shards: at most %d (one slot each)", shards, Slots)
	case !from.After(latest.From):
		return nil, fmt.Errorf("growing shard map from %s: not after the latest version's from %s",
			formatFrom(from), formatFrom(latest.From))
	}
	from = from.UTC()
	if from.Year() > 9999 {
		return nil, fmt.Errorf("growing shard map from %s: past year 9999, not representable in RFC 3339",
			formatFrom(from))
	}
	sm, err := grownSlotMap(latest.SlotMap, shards)
	if err != nil {
		return nil, fmt.Errorf("growing shard map to %d shards: %w", shards, err)
	}
	return &ShardMap{Versions: slices.Concat(m.Versions, []Version{{From: from, SlotMap: sm}})}, nil
}

// grownSlotMap returns old spread over n shards with the fewest slot moves: every shard over
// its even target gives up its highest slots, and the freed slots, in slot order, fill the
// shards under their target in shard order.
func grownSlotMap(old *SlotMap, n int) (*SlotMap, error) {
	owner := make([]int, Slots)
	counts := make([]int, n)
	for _, r := range old.Ranges {
		for s := r.Start; s <= r.End; s++ {
			owner[s] = r.Shard
		}
		counts[r.Shard] += r.End - r.Start + 1
	}
	targets := evenTargets(counts)

	freed := make([]bool, Slots)
	for s := Slots - 1; s >= 0; s-- {
		if o := owner[s]; counts[o] > targets[o] {
			counts[o]--
			freed[s] = true
		}
	}
	receiver := 0
	for s := range Slots {
		if !freed[s] {
			continue
		}
		for counts[receiver] >= targets[receiver] {
			receiver++
		}
		owner[s] = receiver
		counts[receiver]++
	}
	return slotMapOf(n, owner)
}

// evenTargets returns each shard's share of the slots, Slots/n or one more, giving the larger
// shares to the shards that hold most now (ties to the lower index) so the fewest slots move.
func evenTargets(counts []int) []int {
	n := len(counts)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return counts[b] - counts[a] })
	targets := make([]int, n)
	for rank, shard := range order {
		targets[shard] = Slots / n
		if rank < Slots%n {
			targets[shard]++
		}
	}
	return targets
}

// slotMapOf builds the indexed slot map of n shards from a slot → shard table, merging runs
// of the same shard into one range.
func slotMapOf(n int, owner []int) (*SlotMap, error) {
	m := &SlotMap{Shards: n}
	for s, shard := range owner {
		if last := len(m.Ranges) - 1; last >= 0 && m.Ranges[last].Shard == shard {
			m.Ranges[last].End = s
			continue
		}
		m.Ranges = append(m.Ranges, SlotRange{Shard: shard, Start: s, End: s})
	}
	if err := m.index(); err != nil {
		return nil, err
	}
	return m, nil
}

// formatFrom formats a version's From for error messages.
func formatFrom(t time.Time) string {
	if t.IsZero() {
		return "the beginning"
	}
	return t.Format(time.RFC3339Nano)
}

// Source gives the shard map in force: a copy that follows the fleet's map (ingester.ShardMaps)
// or a map that never changes (Fixed).
type Source interface {
	// Current is the map; nil while none has arrived.
	Current() *ShardMap
	// Ready reports whether a map has arrived.
	Ready() bool
}

// Fixed is a Source of one map that never changes: a tool's or a test's.
type Fixed struct{ Map *ShardMap }

// Current is the map.
func (f Fixed) Current() *ShardMap { return f.Map }

// Ready reports whether there is a map.
func (f Fixed) Ready() bool { return f.Map != nil }
