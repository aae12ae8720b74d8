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
	var mapped []string
	for _, p := range ps {
		if !slices.Contains(mapped, p.meterID) {
			mapped = append(mapped, p.meterID)
		}
	}
	hours, err := s.readParts("reading vehicle "+vehicleID, len(plans), func(i int) ([]*read.Hour, error) {
		return s.readers[plans[i].shard].Vehicle(ctx, vehicleID, w, plans[i].meters)
	}, func(h *read.Hour) *read.Hour { return h.Of(vehicleID, mapped) })
	if err != nil {
		return vehicleAnswer{}, err
	}
	ans := vehicleAnswer{hours: map[time.Time]*hourTotals{}, meters: ps}
	// Each (meter, hour) belongs to the first piece of that meter that touches the hour.
	for _, h := range hours {
		t := entry(ans.hours, h.At)
		dc := map[string]int64{}
		for _, v := range h.Vehicle(vehicleID) {
			t.dc += v.DC
			t.tempSum += v.TempSum
			t.readings += int(v.Readings)
			dc[v.Meter] = v.DC
		}
		for _, m := range mapped {
			if a := ans.pieceOf(w, m, h.At); a != nil {
				s.attribute(a, t, w, h, m, vehicleID, dc[m])
			}
		}
	}
	ans.total = sumHours(ans.hours)
	ans.shared = slices.ContainsFunc(ans.meters, func(p piece) bool { return p.shared })
	return ans, nil
}

// readParts asks n shards at once for their parts of a window and adds them up (read.Merge,
// an hour held by several first limited to the rows of).
func (s *Service) readParts(what string, n int, ask func(i int) ([]*read.Hour, error), of func(*read.Hour) *read.Hour) ([]*read.Hour, error) {
	parts := make([][]*read.Hour, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { parts[i], errs[i] = ask(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, s.shardError(what, err)
	}
	if n == 1 { // one shard's hours are distinct
		return parts[0], nil
	}
	return read.Merge(slices.Concat(parts...), of), nil
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

// attribute adds the vehicle's share of one (meter, hour)'s AC to its piece a and hour t: by
// DC, or, with no DC attributed to the meter then, equally among the vehicles mapped to it.
func (s *Service) attribute(a *piece, t *hourTotals, w window.Window, h *read.Hour, meter, vehicleID string, dc int64) {
	m, total, shared := h.MeterDC(meter, vehicleID)
	share := int64(0)
	switch {
	case total > 0:
		share = attribution.Share(m.AC, dc, total)
	case m.AC > 0:
		seg := w.Segment(h.At)
		n := len(s.reg.MappedTo(meter, seg.From, seg.To))
		share, shared = attribution.Equal(m.AC, n), shared || n > 1
	}
	a.ac += share
	a.dc += dc
	a.meterReadings += int(m.Readings)
	a.shared = a.shared || shared
	t.ac += share
	t.meterReadings += int(m.Readings)
	t.voltageSum += m.VoltageSum
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
