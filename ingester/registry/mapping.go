// Package registry is the vehicle → meter mapping registry over a JetStream KV bucket: one key
// per vehicle whose value carries the current meter and the vehicle's mapping intervals, so
// placement at any time within retention never depends on KV revision history. A write maps
// a vehicle from now on (Set, Unset) or inserts an interval with its own time beside the
// others (Insert: backfill, imports). Writes are compare-and-set on the key's revision;
// readers watch the bucket and keep a copy in memory.
package registry

import (
	"encoding/json"
	"fmt"
	"time"
)

// Interval is one period [From, To) during which a vehicle charged from MeterID.
type Interval struct {
	MeterID string    `json:"meterId"`
	From    time.Time `json:"from"`
	// To is nil while the interval is open (the current mapping).
	To *time.Time `json:"to,omitempty"`
}

// Contains reports whether t falls within [From, To).
func (iv Interval) Contains(t time.Time) bool {
	return !t.Before(iv.From) && (iv.To == nil || t.Before(*iv.To))
}

// Mapping is the value stored under a vehicle's key.
type Mapping struct {
	VehicleID string `json:"vehicleId"`
	// MeterID is the current meter; empty when the vehicle is unmapped now.
	MeterID string `json:"meterId,omitempty"`
	// Intervals are ordered by From and do not overlap; at most the last one is open.
	Intervals []Interval `json:"intervals"`
	UpdatedAt time.Time  `json:"updatedAt"`
	// Revision is the KV revision this value was read at (not stored in the value).
	Revision uint64 `json:"-"`
}

// MeterAt returns the meter the vehicle was mapped to at t.
func (m *Mapping) MeterAt(t time.Time) (string, bool) {
	for i := len(m.Intervals) - 1; i >= 0; i-- {
		iv := m.Intervals[i]
		if iv.Contains(t) {
			return iv.MeterID, true
		}
		if t.After(iv.From) || t.Equal(iv.From) {
			// Intervals are sorted and disjoint: nothing earlier can contain t.
			return "", false
		}
	}
	return "", false
}

// PlacementKey is the key a vehicle reading at t is placed by: the meter the vehicle was
// mapped to at t, or the vehicle's own id where it had no mapping then.
func PlacementKey(m *Mapping, vehicleID string, t time.Time) string {
	if m != nil {
		if meter, ok := m.MeterAt(t); ok {
			return meter
		}
	}
	return vehicleID
}

// withMeter returns a copy of m mapped to meterID from at on: the open interval (if any) is
// closed at at, and a new open one starts there (never before the last interval's start or
// end, so intervals stay sorted and disjoint). Setting the meter it already has is a no-op.
// Intervals that ended before keepSince are trimmed.
func (m Mapping) withMeter(meterID string, at, keepSince time.Time) Mapping {
	if meterID != "" && m.MeterID == meterID {
		return m
	}
	ivs := make([]Interval, 0, len(m.Intervals)+1)
	for _, iv := range m.Intervals {
		if iv.To != nil && iv.To.Before(keepSince) {
			continue
		}
		ivs = append(ivs, iv)
	}
	if n := len(ivs); n > 0 {
		last := &ivs[n-1]
		if at.Before(last.From) {
			// A writer whose clock is behind the last writer's: the change takes effect at
			// the last boundary, so intervals stay ordered and disjoint.
			at = last.From
		}
		if last.To != nil && at.Before(*last.To) {
			// The same for a closed interval written (with its own end) by a writer whose
			// clock is ahead: the change starts where that interval ends.
			at = *last.To
		}
		if last.To == nil {
			end := at
			last.To = &end
			if !last.From.Before(end) {
				// An interval that never covered an instant is dropped.
				ivs = ivs[:n-1]
			}
		}
	}
	if meterID != "" {
		ivs = append(ivs, Interval{MeterID: meterID, From: at})
	}
	m.MeterID = meterID
	m.Intervals = ivs
	m.UpdatedAt = at
	return m
}

func encode(m Mapping) ([]byte, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding mapping of %s: %w", m.VehicleID, err)
	}
	return data, nil
}

func decode(key string, data []byte, rev uint64) (*Mapping, error) {
	var m Mapping
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding mapping of %s: %w", key, err)
	}
	m.VehicleID = key
	m.Revision = rev
	return &m, nil
}
