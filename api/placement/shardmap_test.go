package placement

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	cutover1 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	cutover2 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

// grownMap is 1 shard from the beginning, 2 from cutover1 and 4 from cutover2:
//
//	slots      0-1023  1024-2047  2048-3071  3072-4095
//	version 0     0        0          0          0
//	version 1     0        0          1          1
//	version 2     0        2          1          3
func grownMap(t *testing.T) *ShardMap {
	t.Helper()
	m, err := Grow(MustShardMap(1), 2, cutover1)
	if err != nil {
		t.Fatal(err)
	}
	m, err = Grow(m, 4, cutover2)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// keyInSlots returns a placement key whose slot lies in [lo, hi].
func keyInSlots(t *testing.T, lo, hi int) string {
	t.Helper()
	for i := range 1_000_000 {
		key := fmt.Sprintf("meter-%d", i)
		if s := Slot(key); s >= lo && s <= hi {
			return key
		}
	}
	t.Fatalf("no key found in slots %d-%d", lo, hi)
	return ""
}

func TestNewShardMapHasOneVersionFromTheBeginning(t *testing.T) {
	m, err := NewShardMap(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Versions) != 1 || !m.Versions[0].From.IsZero() {
		t.Fatalf("versions = %+v, want one from the zero time", m.Versions)
	}
	if !slices.Equal(m.Latest().Ranges, MustSlotMap(3).Ranges) || m.Shards() != 3 {
		t.Errorf("latest = %+v, want NewSlotMap(3)", m.Latest())
	}
	if len(m.Cutovers()) != 0 {
		t.Errorf("cutovers = %v, want none", m.Cutovers())
	}
	for _, n := range []int{0, -1, Slots + 1} {
		if _, err := NewShardMap(n); err == nil {
			t.Errorf("NewShardMap(%d) succeeded, want error", n)
		}
	}
}

func TestShardOfUsesTheVersionInForceAtTheReadingsTime(t *testing.T) {
	m := grownMap(t)
	key := keyInSlots(t, 3072, 4095) // shard 0, then 1, then 3
	tests := []struct {
		name string
		at   time.Time
		want int
	}{
		{"the zero time is in the first version", time.Time{}, 0},
		{"a time before year 1 is in the first version", time.Date(-100, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"just before the first cutover", cutover1.Add(-time.Nanosecond), 0},
		{"at the first cutover", cutover1, 1},
		{"between the cutovers", cutover1.Add(24 * time.Hour), 1},
		{"at the second cutover in another zone", cutover2.In(time.FixedZone("X", 5*3600)), 3},
		{"long after the last cutover", cutover2.AddDate(10, 0, 0), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.ShardOf(key, tt.at); got != tt.want {
				t.Errorf("ShardOf(%q, %s) = %d, want %d", key, tt.at, got, tt.want)
			}
		})
	}
	if got := m.Cutovers(); !slices.EqualFunc(got, []time.Time{cutover1, cutover2}, time.Time.Equal) {
		t.Errorf("cutovers = %v, want [%s %s]", got, cutover1, cutover2)
	}
	if m.Shards() != 4 {
		t.Errorf("shards = %d, want 4", m.Shards())
	}
}

func TestOwnersSplitsAtCutoversAndMergesRunsOfOneShard(t *testing.T) {
	m := grownMap(t)
	day := 24 * time.Hour
	tests := []struct {
		name     string
		lo, hi   int // the key's slot lies in [lo, hi]
		from, to time.Time
		want     []Owner
	}{
		{"no cutover in the window", 3072, 4095, cutover1.Add(day), cutover1.Add(2 * day),
			[]Owner{{1, cutover1.Add(day), cutover1.Add(2 * day)}}},
		{"one cutover, the shard changes", 3072, 4095, cutover1.Add(-day), cutover1.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover1}, {1, cutover1, cutover1.Add(day)}}},
		{"one cutover, the shard stays", 0, 1023, cutover1.Add(-day), cutover1.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover1.Add(day)}}},
		{"two cutovers, three shards", 3072, 4095, cutover1.Add(-day), cutover2.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover1}, {1, cutover1, cutover2}, {3, cutover2, cutover2.Add(day)}}},
		{"two cutovers, the shard never changes", 0, 1023, cutover1.Add(-day), cutover2.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover2.Add(day)}}},
		{"two cutovers, the first two spans merge", 1024, 2047, cutover1.Add(-day), cutover2.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover2}, {2, cutover2, cutover2.Add(day)}}},
		{"two cutovers, the last two spans merge", 2048, 3071, cutover1.Add(-day), cutover2.Add(day),
			[]Owner{{0, cutover1.Add(-day), cutover1}, {1, cutover1, cutover2.Add(day)}}},
		{"a window starting at a cutover", 3072, 4095, cutover1, cutover1.Add(time.Hour),
			[]Owner{{1, cutover1, cutover1.Add(time.Hour)}}},
		{"a window ending at a cutover", 3072, 4095, cutover1.Add(-time.Hour), cutover1,
			[]Owner{{0, cutover1.Add(-time.Hour), cutover1}}},
		{"a window before year 1", 3072, 4095, time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-4, 1, 1, 0, 0, 0, 0, time.UTC),
			[]Owner{{0, time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-4, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"an empty window", 3072, 4095, cutover1, cutover1, nil},
		{"a reversed window", 3072, 4095, cutover2, cutover1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := keyInSlots(t, tt.lo, tt.hi)
			got := m.Owners(key, tt.from, tt.to)
			if !slices.EqualFunc(got, tt.want, func(a, b Owner) bool {
				return a.Shard == b.Shard && a.From.Equal(b.From) && a.To.Equal(b.To)
			}) {
				t.Errorf("Owners(%q, %s, %s) =\n %v\nwant\n %v", key, tt.from, tt.to, got, tt.want)
			}
		})
	}
}

func TestGrowSpreadsSlotsEvenlyAndMovesOnlyWhatMustMove(t *testing.T) {
	uneven, err := ParseShardMap([]byte(`{"shards":2,"ranges":[{"shard":0,"start":0,"end":99},{"shard":1,"start":100,"end":4095}]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		old  *ShardMap
		to   int
		want []SlotRange // nil: only the invariants are checked
	}{
		{"1 to 2 moves the upper half", MustShardMap(1), 2, []SlotRange{{0, 0, 2047}, {1, 2048, 4095}}},
		{"2 to 3 takes the top of each old shard", MustShardMap(2), 3,
			[]SlotRange{{0, 0, 1365}, {2, 1366, 2047}, {1, 2048, 3412}, {2, 3413, 4095}}},
		{"3 to 4", MustShardMap(3), 4,
			[]SlotRange{{0, 0, 1023}, {3, 1024, 1365}, {1, 1366, 2389}, {3, 2390, 2730}, {2, 2731, 3754}, {3, 3755, 4095}}},
		{"2 to 5 fills new shards in order", MustShardMap(2), 5,
			[]SlotRange{{0, 0, 819}, {2, 820, 1638}, {3, 1639, 2047}, {1, 2048, 2866}, {3, 2867, 3276}, {4, 3277, 4095}}},
		{"1 to 7", MustShardMap(1), 7,
			[]SlotRange{{0, 0, 585}, {1, 586, 1170}, {2, 1171, 1755}, {3, 1756, 2340}, {4, 2341, 2925}, {5, 2926, 3510}, {6, 3511, 4095}}},
		{"1 to Slots gives one slot each", MustShardMap(1), Slots, nil},
		{"Slots-1 to Slots", MustShardMap(Slots - 1), Slots, nil},
		{"an uneven hand-written map is evened out", uneven, 3,
			[]SlotRange{{0, 0, 99}, {1, 100, 1465}, {0, 1466, 2730}, {2, 2731, 4095}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grown, err := Grow(tt.old, tt.to, cutover1)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !slices.Equal(grown.Latest().Ranges, tt.want) {
				t.Errorf("ranges =\n %v\nwant\n %v", grown.Latest().Ranges, tt.want)
			}
			checkGrowth(t, tt.old.Latest(), grown.Latest())
		})
	}
}

func TestGrowRefuses(t *testing.T) {
	m := grownMap(t) // 4 shards, latest from cutover2
	after := cutover2.Add(time.Hour)
	tests := []struct {
		name    string
		shards  int
		from    time.Time
		wantErr string
	}{
		{"fewer shards", 3, after, "already has 4"},
		{"the same shard count", 4, after, "already has 4"},
		{"more shards than slots", Slots + 1, after, "at most 4096"},
		{"from equal to the latest version's", 5, cutover2, "not after the latest"},
		{"from before the latest version's", 5, cutover1, "not after the latest"},
		{"from in the beginning", 5, time.Time{}, "not after the latest"},
		{"from past year 9999 in UTC", 5, time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("W", -5*3600)), "past year 9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Grow(m, tt.shards, tt.from)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Grow(%d, %s) = %v, %v; want an error containing %q", tt.shards, tt.from, got, err, tt.wantErr)
			}
		})
	}
	if _, err := Grow(&ShardMap{}, 2, after); err == nil {
		t.Error("growing a map without versions succeeded, want error")
	}
}

func TestGrowLeavesTheOriginalMapUnchanged(t *testing.T) {
	m := grownMap(t)
	before, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Leave room in the slice so an append in Grow would write into m's backing array.
	m.Versions = slices.Grow(m.Versions, 4)
	grown, err := Grow(m, 6, cutover2.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Grow(m, 5, cutover2.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	after, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) || len(m.Versions) != 3 {
		t.Errorf("m changed by Grow:\n%s\n%s", before, after)
	}
	if grown.Shards() != 6 || len(grown.Versions) != 4 {
		t.Errorf("grown has %d shards in %d versions, want 6 in 4", grown.Shards(), len(grown.Versions))
	}
}

// TestGrowKeepsThePastAndStaysEven grows random maps with a seeded generator and checks, after
// every growth, that placement before the new version's from is unchanged, that placement
// from it on is the new version's, and that slot counts differ by at most one. Every growth
// sequence reaches that evenness: each new version is computed from the target counts
// Slots/n and Slots/n+1, whatever the previous version held.
func TestGrowKeepsThePastAndStaysEven(t *testing.T) {
	rng := rand.New(rand.NewPCG(20250301, 7))
	for trial := range 40 {
		m := MustShardMap(1 + rng.IntN(8))
		last := cutover1
		for step := 0; step < 8 && m.Shards() < Slots; step++ {
			n := m.Shards() + 1 + rng.IntN(6)
			if rng.IntN(5) == 0 {
				n = m.Shards() + 1 + rng.IntN(Slots-m.Shards())
			}
			n = min(n, Slots)
			from := last.Add(time.Duration(1+rng.IntN(72*60)) * time.Minute)
			grown, err := Grow(m, n, from)
			if err != nil {
				t.Fatalf("trial %d: growing %d to %d: %v", trial, m.Shards(), n, err)
			}
			for range 40 {
				key := fmt.Sprintf("EV-%d", rng.Uint64())
				span := from.Sub(cutover1) + 48*time.Hour
				past := []time.Time{{}, from.Add(-time.Nanosecond), from.Add(-span).Add(time.Duration(rng.Int64N(int64(span))))}
				past = append(past, m.Cutovers()...)
				for _, at := range past {
					if was, is := m.ShardOf(key, at), grown.ShardOf(key, at); was != is {
						t.Fatalf("trial %d: %q at %s moved from shard %d to %d when growing to %d at %s",
							trial, key, at, was, is, n, from)
					}
				}
				at := from.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour))))
				if got, want := grown.ShardOf(key, at), grown.Latest().ShardOf(key); got != want {
					t.Fatalf("trial %d: %q at %s on shard %d, want the new version's %d", trial, key, at, got, want)
				}
			}
			if err := grown.Validate(); err != nil {
				t.Fatalf("trial %d: grown map invalid: %v", trial, err)
			}
			for _, v := range grown.Versions {
				checkEverySlotOwnedOnce(t, v.SlotMap)
			}
			checkGrowth(t, m.Latest(), grown.Latest())
			m, last = grown, from
		}
	}
}

func TestParseShardMapAcceptsBothForms(t *testing.T) {
	tests := []struct {
		name       string
		json       string
		wantFroms  []time.Time
		wantShards []int
	}{
		{"today's single slot map", `{"shards":2,"ranges":[{"shard":0,"start":0,"end":2047},{"shard":1,"start":2048,"end":4095}]}`,
			[]time.Time{{}}, []int{2}},
		{"versions with the first from omitted", `{"versions":[
			{"shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]},
			{"from":"2025-03-01T00:00:00Z","shards":2,"ranges":[{"shard":1,"start":2048,"end":4095},{"shard":0,"start":0,"end":2047}]}]}`,
			[]time.Time{{}, cutover1}, []int{1, 2}},
		{"versions with the first from explicit", `{"versions":[
			{"from":"0001-01-01T00:00:00Z","shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]},
			{"from":"2025-03-01T01:00:00+01:00","shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]}]}`,
			[]time.Time{{}, cutover1}, []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseShardMap([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			var froms []time.Time
			var shards []int
			for _, v := range m.Versions {
				froms = append(froms, v.From)
				shards = append(shards, v.Shards)
			}
			if !slices.EqualFunc(froms, tt.wantFroms, time.Time.Equal) || !slices.Equal(shards, tt.wantShards) {
				t.Errorf("froms %v shards %v, want %v %v", froms, shards, tt.wantFroms, tt.wantShards)
			}
			key := keyInSlots(t, 3000, 3100)
			if got, want := m.ShardOf(key, cutover2), Slot(key)*m.Shards()/Slots; got != want {
				t.Errorf("ShardOf(%q) = %d in the latest version, want %d", key, got, want)
			}
		})
	}
}

func TestParseShardMapRejectsInvalidMaps(t *testing.T) {
	one := `{"shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]}`
	two := `{"shards":2,"ranges":[{"shard":0,"start":0,"end":2047},{"shard":1,"start":2048,"end":4095}]}`
	at := func(from, slotMap string) string { return `{"from":"` + from + `",` + slotMap[1:] }
	tests := []struct {
		name    string
		json    string
		wantErr string
	}{
		{"not json", `{`, "decoding shard map"},
		{"not an object", `[1,2]`, "decoding shard map"},
		{"versions not a list", `{"versions":{}}`, "decoding shard map"},
		{"a bad time", `{"versions":[` + one + `,` + at("yesterday", two) + `]}`, "decoding shard map"},
		{"no versions", `{"versions":[]}`, "no versions"},
		{"null versions", `{"versions":null}`, "no versions"},
		{"both forms at once", `{"versions":[` + one + `],"shards":1}`, "use one form"},
		{"a version without a slot map", `{"versions":[` + one + `,{"from":"2025-03-01T00:00:00Z"}]}`, "has no slot map"},
		{"the first version not from the beginning", `{"versions":[` + at("2025-03-01T00:00:00Z", one) + `]}`, "want the zero time"},
		{"unordered versions", `{"versions":[` + one + `,` + at("2025-06-01T00:00:00Z", two) + `,` + at("2025-03-01T00:00:00Z", two) + `]}`,
			"not after version 1"},
		{"two versions from the same time", `{"versions":[` + one + `,` + at("2025-03-01T00:00:00Z", two) + `,` + at("2025-03-01T01:00:00+01:00", two) + `]}`,
			"not after version 1"},
		{"a gap in a version", `{"versions":[` + one + `,` + at("2025-03-01T00:00:00Z",
			`{"shards":2,"ranges":[{"shard":0,"start":0,"end":2000},{"shard":1,"start":2048,"end":4095}]}`) + `]}`, "version 1"},
		{"an overlap in a version", `{"versions":[` + one + `,` + at("2025-03-01T00:00:00Z",
			`{"shards":2,"ranges":[{"shard":0,"start":0,"end":2048},{"shard":1,"start":2048,"end":4095}]}`) + `]}`, "gap or overlap"},
		{"a shrinking shard count", `{"versions":[` + two + `,` + at("2025-03-01T00:00:00Z", one) + `]}`, "never decrease"},
		{"an invalid single slot map", `{"shards":2,"ranges":[{"shard":2,"start":0,"end":4095}]}`, "single slot map"},
		{"an empty object", `{}`, "single slot map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseShardMap([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseShardMap(%s) = %v, %v; want an error containing %q", tt.json, m, err, tt.wantErr)
			}
		})
	}
}

func TestShardMapRoundTripsThroughJSON(t *testing.T) {
	m := grownMap(t)
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), `{"versions":[{"shards":1,`) {
		t.Errorf("the first version should be written without from: %s", data)
	}
	if !strings.Contains(string(data), `"from":"2025-03-01T00:00:00Z"`) {
		t.Errorf("cutovers should be written in RFC 3339: %s", data)
	}
	back, err := ParseShardMap(data)
	if err != nil {
		t.Fatal(err)
	}
	if !equalShardMaps(m, back) {
		t.Errorf("round trip changed the map:\n%s", data)
	}
}

// FuzzParseShardMap checks that parsing never panics and that whatever parses is valid,
// answers lookups and survives Marshal and ParseShardMap unchanged.
// Run with `go test -fuzz FuzzParseShardMap ./api/placement`.
func FuzzParseShardMap(f *testing.F) {
	f.Add([]byte(`{"shards":2,"ranges":[{"shard":0,"start":0,"end":2047},{"shard":1,"start":2048,"end":4095}]}`))
	f.Add([]byte(`{"versions":[{"shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]},` +
		`{"from":"2025-03-01T00:00:00+01:00","shards":2,"ranges":[{"shard":1,"start":2048,"end":4095},{"shard":0,"start":0,"end":2047}]}]}`))
	f.Add([]byte(`{"versions":[{"from":"0001-01-01T00:00:00Z","shards":1,"ranges":[{"shard":0,"start":0,"end":4095}]}]}`))
	f.Add([]byte(`{"versions":null}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseShardMap(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed map is invalid: %v", err)
		}
		for _, v := range m.Versions {
			_ = m.ShardOf("meter-1", v.From)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("marshaling a parsed map: %v", err)
		}
		back, err := ParseShardMap(out)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		if !equalShardMaps(m, back) {
			t.Fatalf("round trip changed the map:\n%s\n%s", data, out)
		}
	})
}

// checkGrowth checks one growth from old to grown: counts differ by at most one, ranges are
// sorted and merged, and exactly the minimum number of slots changed shard.
func checkGrowth(t *testing.T, old, grown *SlotMap) {
	t.Helper()
	checkEverySlotOwnedOnce(t, grown)
	oldCounts, counts := slotCounts(old), slotCounts(grown)
	if hi, lo := slices.Max(counts), slices.Min(counts); hi-lo > 1 {
		t.Errorf("%d→%d shards: slot counts range %d..%d, want max-min <= 1", old.Shards, grown.Shards, lo, hi)
	}
	moved := 0
	for s := range Slots {
		if old.ShardOfSlot(s) != grown.ShardOfSlot(s) {
			moved++
		}
	}
	if want := minMoves(oldCounts, grown.Shards); moved != want {
		t.Errorf("%d→%d shards: %d slots moved, want the minimum %d", old.Shards, grown.Shards, moved, want)
	}
}

// minMoves is the fewest slot moves that take the old counts to n shards of Slots/n or
// Slots/n+1 slots: every old shard sheds its excess over Slots/n, less one for each shard
// holding more than that which may keep one of the Slots%n larger shares.
func minMoves(oldCounts []int, n int) int {
	q, r := Slots/n, Slots%n
	over, big := 0, 0
	for _, c := range oldCounts {
		if c > q {
			over += c - q
			big++
		}
	}
	return over - min(r, big)
}

func slotCounts(m *SlotMap) []int {
	counts := make([]int, m.Shards)
	for _, r := range m.Ranges {
		counts[r.Shard] += r.End - r.Start + 1
	}
	return counts
}

func checkEverySlotOwnedOnce(t *testing.T, m *SlotMap) {
	t.Helper()
	next := 0
	for i, r := range m.Ranges {
		if r.Start != next || r.End < r.Start || r.Shard < 0 || r.Shard >= m.Shards {
			t.Fatalf("range %d %+v: want a range of shard 0..%d starting at slot %d", i, r, m.Shards-1, next)
		}
		if i > 0 && m.Ranges[i-1].Shard == r.Shard {
			t.Fatalf("ranges %d and %d of shard %d are adjacent but not merged", i-1, i, r.Shard)
		}
		next = r.End + 1
	}
	if next != Slots {
		t.Fatalf("ranges end at slot %d, want %d", next-1, Slots-1)
	}
}

func equalShardMaps(a, b *ShardMap) bool {
	return slices.EqualFunc(a.Versions, b.Versions, func(x, y Version) bool {
		return x.From.Equal(y.From) && x.Shards == y.Shards && slices.Equal(x.Ranges, y.Ranges)
	})
}
