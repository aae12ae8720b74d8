package analytics

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// hourTotals is what one hour (the window's part of it) contributes to an answer.
type hourTotals struct {
	dc, ac                  int64 // mWh
	tempSum, voltageSum     float64
	readings, meterReadings int
}

type segKey struct {
	meter string
	hour  time.Time
}

// vehicleAnswer is a vehicle's window, combined over every shard it had data on.
type vehicleAnswer struct {
	total  hourTotals
	shared bool
	meters []piece
	hours  map[time.Time]*hourTotals
}

// mapping returns the vehicle's mapping from the in-memory copy, or from the bucket when the
// copy does not have it (yet).
func (s *Service) mapping(ctx context.Context, vehicleID string) (registry.Mapping, error) {
	if m, ok := s.reg.Cached(vehicleID); ok {
		return m, nil
	}
	m, err := s.reg.Get(ctx, vehicleID)
	if err != nil {
		return registry.Mapping{}, registryError(vehicleID, err)
	}
	return m, nil
}

// vehicleWindow answers a vehicle's window: DC of all its readings on every shard that holds
// some, and for every (meter, hour) it was mapped in, its share of the meter's AC.
func (s *Service) vehicleWindow(ctx context.Context, vehicleID string, w window.Window) (vehicleAnswer, error) {
	m, err := s.mapping(ctx, vehicleID)
	if err != nil {
		return vehicleAnswer{}, err
	}
	ps, uncovered := pieces(m, w)
	plans, err := s.planVehicle(vehicleID, w, ps, uncovered)
	if err != nil {
		return vehicleAnswer{}, err
	}
	results, err := s.readVehicle(ctx, vehicleID, w, plans)
	if err != nil {
		return vehicleAnswer{}, err
	}
	ans := vehicleAnswer{hours: map[time.Time]*hourTotals{}, meters: ps}
	// The parts of each (meter, hour) add up over the shards before the AC is shared; a
	// (meter, hour) belongs to the first piece of that meter that touches the hour.
	segs := map[segKey]*read.VehicleHour{}
	var order []segKey
	for _, vhs := range results {
		for _, vh := range vhs {
			t := entry(ans.hours, vh.Hour)
			t.dc += vh.DC
			t.tempSum += vh.TempSum
			t.readings += vh.Readings
			k := segKey{vh.MeterID, vh.Hour}
			if sg, ok := segs[k]; ok {
				sg.Add(vh)
			} else if vh.MeterID != "" {
				segs[k], order = &vh, append(order, k)
			}
		}
	}
	for _, k := range order {
		if a := ans.pieceOf(w, k.meter, k.hour); a != nil {
			s.attribute(a, ans.hours[k.hour], w, segs[k])
		}
	}
	ans.total = sumHours(ans.hours)
	ans.shared = slices.ContainsFunc(ans.meters, func(p piece) bool { return p.shared })
	return ans, nil
}

// readVehicle reads each planned shard's part of the vehicle's window, the shards at once.
func (s *Service) readVehicle(ctx context.Context, vehicleID string, w window.Window, plans []shardPlan) ([][]read.VehicleHour, error) {
	results := make([][]read.VehicleHour, len(plans))
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Go(func() { results[i], errs[i] = s.reader(p.shard).Vehicle(ctx, vehicleID, w, p.meters) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, s.shardError("reading vehicle "+vehicleID, err)
	}
	return results, nil
}

// pieceOf returns the first piece of meter that touches hour, or nil.
func (ans *vehicleAnswer) pieceOf(w window.Window, meter string, hour time.Time) *piece {
	for i := range ans.meters {
		a := &ans.meters[i]
		if span := w.HourSpan(a.r); a.meterID == meter && !hour.Before(span.From) && hour.Before(span.To) {
			return a
		}
	}
	return nil
}

// attribute adds the vehicle's share of one (meter, hour)'s AC to its piece a and hour t: its
// DC share, or, when no DC was attributed to the meter then, an equal part among the vehicles
// mapped to it.
func (s *Service) attribute(a *piece, t *hourTotals, w window.Window, sg *read.VehicleHour) {
	share, shared := int64(0), sg.Others
	switch {
	case sg.MeterDC > 0:
		share = attribution.Share(sg.MeterAC, sg.DC, sg.MeterDC)
	case sg.MeterAC > 0:
		seg := w.Segment(sg.Hour)
		n := len(s.reg.MappedTo(sg.MeterID, seg.From, seg.To))
		share, shared = attribution.Equal(sg.MeterAC, n), shared || n > 1
	}
	a.ac += share
	a.dc += sg.DC
	a.meterReadings += sg.MeterReadings
	a.shared = a.shared || shared
	t.ac += share
	t.meterReadings += sg.MeterReadings
	t.voltageSum += sg.VoltageSum
}

// sumHours adds the hours up in time order: the battery temperature and voltage sums (floats,
// averaged into answers) then come out the same from the same hours.
func sumHours(hours map[time.Time]*hourTotals) hourTotals {
	var sum hourTotals
	for _, h := range slices.SortedFunc(maps.Keys(hours), time.Time.Compare) {
		sum.add(hours[h])
	}
	return sum
}

func (t *hourTotals) add(o *hourTotals) {
	t.dc += o.dc
	t.ac += o.ac
	t.tempSum += o.tempSum
	t.voltageSum += o.voltageSum
	t.readings += o.readings
	t.meterReadings += o.meterReadings
}

// entry returns m[k], added as a new V on first use.
func entry[K comparable, V any](m map[K]*V, k K) *V {
	v, ok := m[k]
	if !ok {
		v = new(V)
		m[k] = v
	}
	return v
}
