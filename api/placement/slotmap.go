package placement

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// SlotRange is a contiguous, inclusive range of slots owned by one shard.
type SlotRange struct {
	// Shard is the index of the owning shard, 0-based.
	Shard int `json:"shard"`
	// Start is the first slot of the range.
	Start int `json:"start"`
	// End is the last slot of the range (inclusive).
	End int `json:"end"`
}

// SlotMap assigns every slot to exactly one shard. Its JSON form is what the operator writes
// into the CR status and the shard-map ConfigMap.
type SlotMap struct {
	// Shards is the number of shards.
	Shards int `json:"shards"`
	// Ranges covers slots 0..Slots-1 exactly once, sorted by Start.
	Ranges []SlotRange `json:"ranges"`

	owner []uint16 // slot → shard, built by index()
}

// NewSlotMap returns the initial slot map for n shards: shard = slot × n / Slots, so each
// shard owns one contiguous range of Slots/n slots (±1).
func NewSlotMap(n int) (*SlotMap, error) {
	if n < 1 || n > Slots {
		return nil, fmt.Errorf("shard count %d out of range 1..%d", n, Slots)
	}
	m := &SlotMap{Shards: n}
	start := 0
	for slot := 1; slot <= Slots; slot++ {
		if slot == Slots || slot*n/Slots != (slot-1)*n/Slots {
			m.Ranges = append(m.Ranges, SlotRange{Shard: (slot - 1) * n / Slots, Start: start, End: slot - 1})
			start = slot
		}
	}
	if err := m.index(); err != nil {
		return nil, err
	}
	return m, nil
}

// MustSlotMap is NewSlotMap for shard counts known to be valid; it panics otherwise.
func MustSlotMap(n int) *SlotMap {
	m, err := NewSlotMap(n)
	if err != nil {
		panic(err)
	}
	return m
}

// ShardOfSlot returns the shard that owns slot.
func (m *SlotMap) ShardOfSlot(slot int) int {
	return int(m.owner[slot])
}

// ShardOf returns the shard that owns a placement key.
func (m *SlotMap) ShardOf(key string) int {
	return int(m.owner[Slot(key)])
}

// Validate checks that the ranges cover every slot exactly once with shards in 0..Shards-1.
func (m *SlotMap) Validate() error {
	if m.Shards < 1 || m.Shards > Slots {
		return fmt.Errorf("shard count %d out of range 1..%d", m.Shards, Slots)
	}
	rs := append([]SlotRange(nil), m.Ranges...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	next := 0
	for _, r := range rs {
		if r.Shard < 0 || r.Shard >= m.Shards {
			return fmt.Errorf("range %d-%d names shard %d, want 0..%d", r.Start, r.End, r.Shard, m.Shards-1)
		}
		if r.Start != next || r.End < r.Start {
			return fmt.Errorf("range %d-%d leaves a gap or overlap at slot %d", r.Start, r.End, next)
		}
		next = r.End + 1
	}
	if next != Slots {
		return fmt.Errorf("ranges end at slot %d, want %d", next-1, Slots-1)
	}
	return nil
}

func (m *SlotMap) index() error {
	if err := m.Validate(); err != nil {
		return err
	}
	m.owner = make([]uint16, Slots)
	for _, r := range m.Ranges {
		for s := r.Start; s <= r.End; s++ {
			m.owner[s] = uint16(r.Shard)
		}
	}
	return nil
}

// Marshal returns the JSON form of the slot map.
func (m *SlotMap) Marshal() ([]byte, error) {
	return json.Marshal(m)
}

// ParseSlotMap reads and validates the JSON form of a slot map.
func ParseSlotMap(data []byte) (*SlotMap, error) {
	var m SlotMap
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding slot map: %w", err)
	}
	if err := m.index(); err != nil {
		return nil, fmt.Errorf("validating slot map: %w", err)
	}
	return &m, nil
}

// ErrNoSlotMap is returned where a component needs a slot map and none was given.
var ErrNoSlotMap = errors.New("no slot map")
