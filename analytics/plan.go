package analytics

import (
	"slices"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// piece is the part of the window during which a vehicle was mapped to one meter.
type piece struct {
	meterID string
	r       window.Range
}

// pieces clips the mapping's intervals to the window, in time order, and reports whether some
// part of the window had no mapping (the vehicle's readings then live on its own id's shard).
func pieces(m registry.Mapping, w window.Window) (ps []piece, uncovered bool) {
	cursor := w.Start
	for _, iv := range m.Intervals {
		from, to := iv.From, w.End
		if iv.To != nil {
			to = *iv.To
		}
		if from.Before(w.Start) {
			from = w.Start
		}
		if to.After(w.End) {
			to = w.End
		}
		if !from.Before(to) {
			continue
		}
		if from.After(cursor) {
			uncovered = true
		}
		if to.After(cursor) {
			cursor = to
		}
		ps = append(ps, piece{meterID: iv.MeterID, r: window.Range{From: from, To: to}})
	}
	if cursor.Before(w.End) {
		uncovered = true
	}
	return ps, uncovered
}

// shardPlan is what to ask one shard for a vehicle's window.
type shardPlan struct {
	shard  int
	meters []read.MeterSpan
}

// planVehicle asks the shards that held each piece's meter for the piece's hours they held
// it in, and those that held the vehicle's own id when part of the window had no mapping; a
// shard is asked once.
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
			plan := add(o.Shard)
			plan.meters = append(plan.meters, read.MeterSpan{MeterID: p.meterID, Hours: w.HourSpan(window.Range{From: o.From, To: o.To})})
		}
	}
	return plans, nil
}
