package analytics

import (
	"slices"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// piece is the part of the window during which a vehicle was mapped to one meter, and what
// it drew from the meter then.
type piece struct {
	meterID       string
	r             window.Range
	ac, dc        int64 // mWh
	shared        bool
	meterReadings int
}

// pieces clips the mapping's intervals to the window, in time order, and reports whether some
// part of the window had no mapping (the vehicle's readings then live on its own id's shard).
func pieces(m registry.Mapping, w window.Window) (ps []piece, uncovered bool) {
	cursor := w.Start
	for _, iv := range m.Intervals {
		r := w.Clip(window.Range{From: iv.From, To: until(iv, w.End)})
		if r.Empty() {
			continue
		}
		if r.From.After(cursor) {
			uncovered = true
		}
		if r.To.After(cursor) {
			cursor = r.To
		}
		ps = append(ps, piece{meterID: iv.MeterID, r: r})
	}
	if cursor.Before(w.End) {
		uncovered = true
	}
	return ps, uncovered
}

// until is when iv ends, or open while it goes on.
func until(iv registry.Interval, open time.Time) time.Time {
	if iv.To == nil {
		return open
	}
	return *iv.To
}

// shardPlan is what to ask one shard for a vehicle's window.
type shardPlan struct {
	shard  int
	meters []string
}

// planVehicle asks, once each, the shards that held each piece's meter while it was mapped
// (for that meter), and those that held the vehicle's id when part of the window had no mapping.
func (s *Service) planVehicle(vehicleID string, w window.Window, ps []piece, uncovered bool) ([]shardPlan, error) {
	var plans []shardPlan
	add := func(shard int) *shardPlan {
		i := slices.IndexFunc(plans, func(p shardPlan) bool { return p.shard == shard })
		if i < 0 {
			plans, i = append(plans, shardPlan{shard: shard}), len(plans)
		}
		return &plans[i]
	}
	if uncovered {
		os, err := s.owners(vehicleID, w.Start, w.End)
		if err != nil {
			return nil, err
		}
		for _, o := range os {
			add(o.Shard)
		}
	}
	for _, p := range ps {
		os, err := s.owners(p.meterID, p.r.From, p.r.To)
		if err != nil {
			return nil, err
		}
		for _, o := range os {
			if plan := add(o.Shard); !slices.Contains(plan.meters, p.meterID) {
				plan.meters = append(plan.meters, p.meterID)
			}
		}
	}
	return plans, nil
}
