package analytics

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
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

// meterUse is a vehicle's use of one meter during one piece of the window.
type meterUse struct {
	meterID       string
	r             window.Range
	ac, dc        int64 // mWh
	shared        bool
	meterReadings int
}

// vehicleAnswer is a vehicle's window, combined over every shard it had data on.
type vehicleAnswer struct {
	total  hourTotals
	shared bool
	meters []meterUse
	hours  map[time.Time]*hourTotals
}

type segKey struct {
	meterID string
	hour    time.Time
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
func (s *Service) vehicleWindow(ctx context.Context, vehicleID string, m registry.Mapping, w window.Window) (vehicleAnswer, error) {
	ps, uncovered := pieces(m, w)
	results, err := s.readVehicle(ctx, vehicleID, w, planVehicle(s.cfg.SlotMap, vehicleID, w, ps, uncovered))
	if err != nil {
		return vehicleAnswer{}, err
	}
	n := 0
	for _, rows := range results {
		n += len(rows.Own) + len(rows.AC) + len(rows.DC)
	}
	ans := vehicleAnswer{hours: make(map[time.Time]*hourTotals, n/2+2)}
	segs := ans.mergeSegments(results, n)

	// One meterUse per piece; a (meter, hour) belongs to the first piece of that meter
	// that touches the hour.
	ans.meters = make([]meterUse, len(ps))
	for i, p := range ps {
		ans.meters[i] = meterUse{meterID: p.meterID, r: p.r}
	}
	for _, sg := range segs {
		if a := ans.pieceOf(w, sg.segKey); a != nil {
			s.attribute(&ans, a, w, sg)
		} // else: DC attributed to a meter outside the mapped pieces (not expected)
	}
	for _, h := range sortedHours(ans.hours) {
		t := ans.hours[h]
		ans.total.dc += t.dc
		ans.total.ac += t.ac
		ans.total.tempSum += t.tempSum
		ans.total.readings += t.readings
		ans.total.meterReadings += t.meterReadings
	}
	for _, a := range ans.meters {
		ans.shared = ans.shared || a.shared
	}
	return ans, nil
}

// readVehicle reads each planned shard's rows of the vehicle's window, the shards at once.
func (s *Service) readVehicle(ctx context.Context, vehicleID string, w window.Window, plans []shardPlan) ([]read.VehicleRows, error) {
	results := make([]read.VehicleRows, len(plans))
	errs := make([]error, len(plans))
	ask := func(i int) {
		results[i], errs[i] = s.reader(plans[i].shard).Vehicle(ctx, vehicleID, w, plans[i].meters)
	}
	if len(plans) == 1 {
		ask(0)
	} else {
		var wg sync.WaitGroup
		for i := range plans {
			wg.Go(func() { ask(i) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, s.shardError("reading vehicle "+vehicleID, err)
	}
	return results, nil
}

// seg is one (meter, hour) the shards returned something for: the vehicle's own DC there,
// the meter's AC and the DC of every vehicle attributed to it.
type seg struct {
	segKey
	mine int64 // mWh
	ac   *read.MeterHour
	dc   *read.MeterDC
}

// hour returns the totals of hour h, added on first use.
func (ans *vehicleAnswer) hour(h time.Time) *hourTotals {
	t, ok := ans.hours[h]
	if !ok {
		t = &hourTotals{}
		ans.hours[h] = t
	}
	return t
}

// mergeSegments adds the vehicle's own rows to its hours and returns every (meter, hour)
// the shards returned something for, merged in (hour, meter) order. A meter lives on one
// shard, so each of the three parts comes at most once per (meter, hour).
func (ans *vehicleAnswer) mergeSegments(results []read.VehicleRows, n int) []seg {
	segs := make([]seg, 0, n)
	for r := range results {
		rows := &results[r]
		for _, o := range rows.Own {
			t := ans.hour(o.Hour)
			t.dc += o.DC
			t.tempSum += o.TempSum
			t.readings += o.Readings
			if o.MeterID != "" {
				segs = append(segs, seg{segKey: segKey{o.MeterID, o.Hour}, mine: o.DC})
			}
		}
		for i := range rows.AC {
			segs = append(segs, seg{segKey: segKey{rows.AC[i].MeterID, rows.AC[i].Hour}, ac: &rows.AC[i]})
		}
		for i := range rows.DC {
			segs = append(segs, seg{segKey: segKey{rows.DC[i].MeterID, rows.DC[i].Hour}, dc: &rows.DC[i]})
		}
	}
	slices.SortFunc(segs, func(a, b seg) int {
		if c := a.hour.Compare(b.hour); c != 0 {
			return c
		}
		return strings.Compare(a.meterID, b.meterID)
	})
	merged := segs[:0]
	for _, x := range segs {
		k := len(merged) - 1
		if k < 0 || merged[k].meterID != x.meterID || !merged[k].hour.Equal(x.hour) {
			merged = append(merged, x)
			continue
		}
		m := &merged[k]
		m.mine += x.mine
		if x.ac != nil {
			m.ac = x.ac
		}
		if x.dc != nil {
			m.dc = x.dc
		}
	}
	return merged
}

// pieceOf returns the attribution of the first piece of meter k.meterID that touches hour
// k.hour, or nil.
func (ans *vehicleAnswer) pieceOf(w window.Window, k segKey) *meterUse {
	for i := range ans.meters {
		a := &ans.meters[i]
		if a.meterID != k.meterID {
			continue
		}
		span := w.HourSpan(a.r)
		if !k.hour.Before(span.From) && k.hour.Before(span.To) {
			return a
		}
	}
	return nil
}

// attribute adds the vehicle's share of one (meter, hour)'s AC to its piece and its hour.
func (s *Service) attribute(ans *vehicleAnswer, a *meterUse, w window.Window, sg seg) {
	k := sg.segKey
	var ac read.MeterHour
	var dc read.MeterDC
	if sg.ac != nil {
		ac = *sg.ac
	}
	if sg.dc != nil {
		dc = *sg.dc
	}
	my := sg.mine
	share, shared := int64(0), dc.Vehicles > 1 || (dc.Vehicles == 1 && !dc.Includes)
	switch {
	case dc.Total > 0:
		share = attribution.Share(ac.AC, my, dc.Total)
	case ac.AC > 0:
		seg := w.Segment(k.hour)
		n := len(s.reg.MappedTo(k.meterID, seg.From, seg.To))
		share = attribution.Equal(ac.AC, n)
		shared = shared || n > 1
	}
	a.ac += share
	a.dc += my
	a.meterReadings += ac.Readings
	a.shared = a.shared || shared
	t := ans.hour(k.hour)
	t.ac += share
	t.meterReadings += ac.Readings
	t.voltageSum += ac.VoltageSum
}

// sortedHours lists the hours in time order: the battery temperature and voltage sums (floats,
// averaged into answers) then come out the same from the same hours.
func sortedHours(hours map[time.Time]*hourTotals) []time.Time {
	hs := make([]time.Time, 0, len(hours))
	for h := range hours {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Before(hs[j]) })
	return hs
}
