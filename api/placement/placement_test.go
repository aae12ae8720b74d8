package placement

import (
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestSlotIsXXHash64ModSlots(t *testing.T) {
	for _, key := range []string{"meter-001", "EV-101", "a", strings.Repeat("z", 64)} {
		want := int(xxhash.Sum64String(key) % 4096)
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestNewSlotMapGivesContiguousRanges(t *testing.T) {
	tests := []struct {
		name   string
		shards int
		want   []SlotRange
	}{
		{"one shard owns every slot", 1, []SlotRange{{0, 0, 4095}}},
		{"two shards split in half", 2, []SlotRange{{0, 0, 2047}, {1, 2048, 4095}}},
		{"three shards follow slot*n/4096", 3, []SlotRange{{0, 0, 1365}, {1, 1366, 2730}, {2, 2731, 4095}}},
		{"four shards", 4, []SlotRange{{0, 0, 1023}, {1, 1024, 2047}, {2, 2048, 3071}, {3, 3072, 4095}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewSlotMap(tt.shards)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Ranges) != len(tt.want) {
				t.Fatalf("ranges = %v, want %v", m.Ranges, tt.want)
			}
			for i := range tt.want {
				if m.Ranges[i] != tt.want[i] {
					t.Errorf("range %d = %v, want %v", i, m.Ranges[i], tt.want[i])
				}
			}
			for slot := 0; slot < Slots; slot++ {
				if got, want := m.ShardOfSlot(slot), slot*tt.shards/Slots; got != want {
					t.Fatalf("slot %d on shard %d, want %d", slot, got, want)
				}
			}
		})
	}
}

func TestNewSlotMapRejectsBadCounts(t *testing.T) {
	for _, n := range []int{0, -1, Slots + 1} {
		if _, err := NewSlotMap(n); err == nil {
			t.Errorf("NewSlotMap(%d) succeeded, want error", n)
		}
	}
}

func TestSlotMapRoundTripsThroughJSON(t *testing.T) {
	m := MustSlotMap(5)
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSlotMap(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"meter-1", "meter-2", "EV-9", "x"} {
		if back.ShardOf(key) != m.ShardOf(key) {
			t.Errorf("%q: shard %d after round trip, want %d", key, back.ShardOf(key), m.ShardOf(key))
		}
	}
}

func TestParseSlotMapRejectsInvalidMaps(t *testing.T) {
	tests := []struct {
		name string
		json string
	}{
		{"not json", `{`},
		{"gap between ranges", `{"shards":2,"ranges":[{"shard":0,"start":0,"end":10},{"shard":1,"start":12,"end":4095}]}`},
		{"overlap", `{"shards":2,"ranges":[{"shard":0,"start":0,"end":10},{"shard":1,"start":10,"end":4095}]}`},
		{"shard out of range", `{"shards":1,"ranges":[{"shard":1,"start":0,"end":4095}]}`},
		{"short of the last slot", `{"shards":1,"ranges":[{"shard":0,"start":0,"end":4000}]}`},
		{"no shards", `{"shards":0,"ranges":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSlotMap([]byte(tt.json)); err == nil {
				t.Errorf("ParseSlotMap(%s) succeeded, want error", tt.json)
			}
		})
	}
}

func TestValidDeviceID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"EV-101", true},
		{"meter-001", true},
		{"a", true},
		{"A.b_c-d", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"-leading-dash", false},
		{".leading-dot", false},
		{"has space", false},
		{"semi;colon", false},
		{"quote'", false},
		{"star*", false},
		{"gt>", false},
		{"slash/", false},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		if got := ValidDeviceID(tt.id); got != tt.want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
