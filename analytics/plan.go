package analytics

import (
	"sort"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/placement"
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

// planVehicle groups the meters' hour spans by shard; every shard that may hold the vehicle's
// readings is in the plan, with or without meters.
func planVehicle(sm *placement.SlotMap, vehicleID string, w window.Window, ps []piece, uncovered bool) []shardPlan {
	spans := map[string][]window.Range{}
	var order []string
	for _, p := range ps {
		if _, ok := spans[p.meterID]; !ok {
			order = append(order, p.meterID)
		}
		spans[p.meterID] = append(spans[p.meterID], w.HourSpan(p.r))
	}
	byShard := map[int]*shardPlan{}
	var plans []*shardPlan
	get := func(shard int) *shardPlan {
		if p, ok := byShard[shard]; ok {
			return p
		}
		p := &shardPlan{shard: shard}
		byShard[shard] = p
		plans = append(plans, p)
		return p
	}
	if uncovered {
		get(sm.ShardOf(vehicleID))
	}
	for _, meter := range order {
		p := get(sm.ShardOf(meter))
		for _, r := range mergeRanges(spans[meter]) {
			p.meters = append(p.meters, read.MeterSpan{MeterID: meter, Hours: r})
		}
	}
	out := make([]shardPlan, len(plans))
	for i, p := range plans {
		out[i] = *p
	}
	return out
}

// mergeRanges merges overlapping or touching ranges.
func mergeRanges(rs []window.Range) []window.Range {
	sort.Slice(rs, func(i, j int) bool { return rs[i].From.Before(rs[j].From) })
	var out []window.Range
	for _, r := range rs {
		if n := len(out); n > 0 && !r.From.After(out[n-1].To) {
			if r.To.After(out[n-1].To) {
				out[n-1].To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
