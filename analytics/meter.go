package analytics

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

type vehicleShare struct {
	vehicleID string
	dc, ac    int64 // mWh
	readings  int
}

// meterAnswer is a meter's window: its AC, the DC of every vehicle attributed to it, and each
// vehicle's share of the AC.
type meterAnswer struct {
	total        hourTotals
	unattributed int64 // mWh
	vehicles     map[string]*vehicleShare
	hours        map[time.Time]*hourTotals
	known        bool
}

// meterWindow reads the meter's window from the shards that held it and splits each hour's AC
// among the vehicles by DC share (equally among the vehicles mapped then when no DC was
// attributed; unattributed when none was mapped). An hour split at a shard map's cutover has
// a part on each shard: the parts add up before the AC is shared.
func (s *Service) meterWindow(ctx context.Context, meterID string, w window.Window) (meterAnswer, error) {
	os, err := s.owners(meterID, w.Start, w.End)
	if err != nil {
		return meterAnswer{}, err
	}
	var rows read.MeterRows
	for _, o := range os {
		r, err := s.reader(o.Shard).Meter(ctx, meterID, w)
		if err != nil {
			return meterAnswer{}, s.shardError("reading meter "+meterID, err)
		}
		rows.AC, rows.DC = append(rows.AC, r.AC...), append(rows.DC, r.DC...)
	}
	ans := meterAnswer{vehicles: map[string]*vehicleShare{}, hours: map[time.Time]*hourTotals{}, known: len(rows.AC)+len(rows.DC) > 0}
	if !ans.known {
		if _, _, ans.known, err = s.meterStatus(ctx, meterID); err != nil {
			return meterAnswer{}, err
		}
	}
	veh := func(id string) *vehicleShare {
		v := entry(ans.vehicles, id)
		v.vehicleID = id
		return v
	}
	dcs := map[time.Time]map[string]int64{} // by hour and vehicle
	for _, d := range rows.DC {
		t := entry(ans.hours, d.Hour)
		t.dc += d.DC
		t.tempSum += d.TempSum
		t.readings += d.Readings
		v := veh(d.VehicleID)
		v.dc += d.DC
		v.readings += d.Readings
		if dcs[d.Hour] == nil {
			dcs[d.Hour] = map[string]int64{}
		}
		dcs[d.Hour][d.VehicleID] += d.DC
	}
	for _, a := range rows.AC {
		t := entry(ans.hours, a.Hour)
		t.ac += a.AC
		t.voltageSum += a.VoltageSum
		t.meterReadings += a.Readings
	}
	for h, t := range ans.hours {
		if t.ac == 0 {
			continue
		}
		if t.dc > 0 {
			for id, dc := range dcs[h] {
				veh(id).ac += attribution.Share(t.ac, dc, t.dc)
			}
			continue
		}
		seg := w.Segment(h)
		mapped := s.reg.MappedTo(meterID, seg.From, seg.To)
		if len(mapped) == 0 {
			ans.unattributed += t.ac
		}
		for _, id := range mapped {
			veh(id).ac += attribution.Equal(t.ac, len(mapped))
		}
	}
	ans.total = sumHours(ans.hours)
	return ans, nil
}

// GetMeterPerformance answers GET /v1/analytics/meters/{meterId}/performance.
func (h *handler) GetMeterPerformance(ctx context.Context, req *connect.Request[analyticsv1.GetMeterPerformanceRequest]) (*connect.Response[analyticsv1.GetMeterPerformanceResponse], error) {
	id := req.Msg.GetMeterId()
	if err := checkID("meter", id); err != nil {
		return nil, err
	}
	w, err := h.parseWindow(req.Msg.GetWindow(), req.Msg.GetEnd())
	if err != nil {
		return nil, err
	}
	ans, err := h.s.meterWindow(ctx, id, w)
	if err != nil {
		return nil, err
	}
	if !ans.known {
		return nil, notFound("meter %s has never reported", id)
	}
	res := &analyticsv1.GetMeterPerformanceResponse{
		MeterId: id,
		Period:  w.Period(),
		Energy: &analyticsv1.Energy{
			AcConsumed:      kwh(ans.total.ac),
			DcDelivered:     kwh(ans.total.dc),
			EfficiencyRatio: ratio(ans.total.dc, ans.total.ac),
		},
		WindowStart:     timestamppb.New(w.Start),
		WindowEnd:       timestamppb.New(w.End),
		MeterReadings:   int32(ans.total.meterReadings),
		VehicleReadings: int32(ans.total.readings),
		AvgVoltage:      mean(ans.total.voltageSum, ans.total.meterReadings),
		UnattributedAc:  telemetry.KWh(ans.unattributed),
	}
	vs := make([]*vehicleShare, 0, len(ans.vehicles))
	for _, v := range ans.vehicles {
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, b *vehicleShare) int {
		return cmp.Or(cmp.Compare(b.dc, a.dc), strings.Compare(a.vehicleID, b.vehicleID))
	})
	for _, v := range vs {
		res.Vehicles = append(res.Vehicles, &analyticsv1.VehicleShare{
			VehicleId: v.vehicleID, DcDelivered: telemetry.KWh(v.dc), AcConsumed: telemetry.KWh(v.ac),
			EfficiencyRatio: ratio(v.dc, v.ac), Readings: int32(v.readings),
		})
	}
	return connect.NewResponse(res), nil
}

// GetMeterSeries answers GET /v1/analytics/meters/{meterId}/series.
func (h *handler) GetMeterSeries(ctx context.Context, req *connect.Request[analyticsv1.GetMeterSeriesRequest]) (*connect.Response[analyticsv1.GetSeriesResponse], error) {
	id := req.Msg.GetMeterId()
	if err := checkID("meter", id); err != nil {
		return nil, err
	}
	w, err := h.parseWindow(req.Msg.GetWindow(), req.Msg.GetEnd())
	if err != nil {
		return nil, err
	}
	step, err := window.ParseStep(req.Msg.GetStep())
	if err != nil {
		return nil, invalid("%v", err)
	}
	ans, err := h.s.meterWindow(ctx, id, w)
	if err != nil {
		return nil, err
	}
	if !ans.known {
		return nil, notFound("meter %s has never reported", id)
	}
	return connect.NewResponse(series(id, w, step, ans.hours, true)), nil
}
