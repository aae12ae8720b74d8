package analytics

import (
	"cmp"
	"context"
	"maps"
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
}

// meterWindow reads the meter's window from the shards that held it (an hour split at a
// cutover added up first) and splits each hour's AC among the vehicles by DC share (equally
// among those mapped then without DC; unattributed when none was). A meter that has never
// reported is NotFound.
func (s *Service) meterWindow(ctx context.Context, meterID string, w window.Window) (meterAnswer, error) {
	os, err := s.owners(meterID, w.Start, w.End)
	if err != nil {
		return meterAnswer{}, err
	}
	hours, err := s.readParts("reading meter "+meterID, len(os), func(i int) ([]*read.Hour, error) {
		return s.readers[os[i].Shard].Meter(ctx, meterID, w)
	}, func(h *read.Hour) *read.Hour { return h.Of("", []string{meterID}) })
	if err != nil {
		return meterAnswer{}, err
	}
	ans := meterAnswer{vehicles: map[string]*vehicleShare{}, hours: map[time.Time]*hourTotals{}}
	veh := func(id string) *vehicleShare {
		v := entry(ans.vehicles, id)
		v.vehicleID = id
		return v
	}
	for _, h := range hours {
		m, total, _ := h.MeterDC(meterID, "")
		t := entry(ans.hours, h.At)
		t.ac, t.voltageSum, t.meterReadings = m.AC, m.VoltageSum, int(m.Readings)
		h.Attributed(meterID, func(v read.VehicleRow) {
			t.dc += v.DC
			t.tempSum += v.TempSum
			t.readings += int(v.Readings)
			sh := veh(v.Vehicle)
			sh.dc += v.DC
			sh.readings += int(v.Readings)
			sh.ac += attribution.Share(m.AC, v.DC, total)
		})
		if m.AC == 0 || total > 0 {
			continue
		}
		seg := w.Segment(h.At)
		mapped := s.reg.MappedTo(meterID, seg.From, seg.To)
		if len(mapped) == 0 {
			ans.unattributed += m.AC
		}
		for _, id := range mapped {
			veh(id).ac += attribution.Equal(m.AC, len(mapped))
		}
	}
	ans.total = sumHours(ans.hours)
	if ans.total.meterReadings+ans.total.readings == 0 { // no row of the meter in the window
		switch _, _, known, err := newestStatus(ctx, s, meterStatus, meterID, nil); {
		case err != nil:
			return meterAnswer{}, err
		case !known:
			return meterAnswer{}, notFound("meter %s has never reported", meterID)
		}
	}
	return ans, nil
}

// GetMeterPerformance answers GET /v1/analytics/meters/{meterId}/performance.
func (h *handler) GetMeterPerformance(ctx context.Context, req *connect.Request[analyticsv1.GetMeterPerformanceRequest]) (*connect.Response[analyticsv1.GetMeterPerformanceResponse], error) {
	id := req.Msg.GetMeterId()
	w, err := h.deviceWindow("meter", id, req.Msg)
	if err != nil {
		return nil, err
	}
	ans, err := h.s.meterWindow(ctx, id, w)
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.GetMeterPerformanceResponse{
		MeterId:         id,
		Period:          w.Period(),
		Energy:          energy(ans.total),
		WindowStart:     timestamppb.New(w.Start),
		WindowEnd:       timestamppb.New(w.End),
		MeterReadings:   int32(ans.total.meterReadings),
		VehicleReadings: int32(ans.total.readings),
		AvgVoltage:      mean(ans.total.voltageSum, ans.total.meterReadings),
		UnattributedAc:  telemetry.KWh(ans.unattributed),
	}
	for _, v := range slices.SortedFunc(maps.Values(ans.vehicles), func(a, b *vehicleShare) int {
		return cmp.Or(cmp.Compare(b.dc, a.dc), strings.Compare(a.vehicleID, b.vehicleID))
	}) {
		res.Vehicles = append(res.Vehicles, &analyticsv1.VehicleShare{
			VehicleId: v.vehicleID, DcDelivered: telemetry.KWh(v.dc), AcConsumed: telemetry.KWh(v.ac),
			EfficiencyRatio: ratio(v.dc, v.ac), Readings: int32(v.readings),
		})
	}
	return connect.NewResponse(res), nil
}

// GetMeterSeries answers GET /v1/analytics/meters/{meterId}/series.
func (h *handler) GetMeterSeries(ctx context.Context, req *connect.Request[analyticsv1.GetMeterSeriesRequest]) (*connect.Response[analyticsv1.GetSeriesResponse], error) {
	return h.deviceSeries(ctx, "meter", req.Msg.GetMeterId(), req.Msg, func(ctx context.Context, id string, w window.Window) (map[time.Time]*hourTotals, error) {
		ans, err := h.s.meterWindow(ctx, id, w)
		return ans.hours, err
	})
}
