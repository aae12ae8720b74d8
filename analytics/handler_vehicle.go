package analytics

import (
	"context"
	"maps"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

// efficiency is DC / AC, two exact sums of mWh.
func efficiency(dc, ac int64) float64 { return float64(dc) / float64(ac) }

// ratio is the efficiency, absent without AC.
func ratio(dc, ac int64) *float64 {
	if ac == 0 {
		return nil
	}
	return proto.Float64(efficiency(dc, ac))
}

// kwh is an energy of an answer, in kWh.
func kwh(mwh int64) *float64 { return proto.Float64(telemetry.KWh(mwh)) }

// energy is the energy of an answer's totals.
func energy(t hourTotals) *analyticsv1.Energy {
	return &analyticsv1.Energy{AcConsumed: kwh(t.ac), DcDelivered: kwh(t.dc), EfficiencyRatio: ratio(t.dc, t.ac)}
}

func mean(sum float64, n int) *float64 {
	if n == 0 {
		return nil
	}
	return proto.Float64(sum / float64(n))
}

// windowed is a question about a window.
type windowed interface {
	GetWindow() string
	GetEnd() string
}

func (h *handler) parseWindow(req windowed) (window.Window, error) {
	w, err := window.Parse(req.GetWindow(), req.GetEnd(), h.s.cfg.Now())
	if err != nil {
		return window.Window{}, invalid("%v", err)
	}
	return w, nil
}

// deviceWindow checks a question about one device's window: the id, then the window.
func (h *handler) deviceWindow(kind, id string, req windowed) (window.Window, error) {
	if err := checkID(kind, id); err != nil {
		return window.Window{}, err
	}
	return h.parseWindow(req)
}

// deviceSeries answers a series question about one device (kind "vehicle" or "meter"): the
// id, the window and the step checked in this order, then the device's hours bucketed.
func (h *handler) deviceSeries(ctx context.Context, kind, id string, req interface {
	windowed
	GetStep() string
}, hours func(ctx context.Context, id string, w window.Window) (map[time.Time]*hourTotals, error),
) (*connect.Response[analyticsv1.GetSeriesResponse], error) {
	w, err := h.deviceWindow(kind, id, req)
	if err != nil {
		return nil, err
	}
	step, err := window.ParseStep(req.GetStep())
	if err != nil {
		return nil, invalid("%v", err)
	}
	hs, err := hours(ctx, id, w)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(series(id, w, step, hs, kind == "meter")), nil
}

// GetVehiclePerformance answers GET /v1/analytics/performance/{vehicleId}.
func (h *handler) GetVehiclePerformance(ctx context.Context, req *connect.Request[analyticsv1.GetVehiclePerformanceRequest]) (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error) {
	id := req.Msg.GetVehicleId()
	w, err := h.deviceWindow("vehicle", id, req.Msg)
	if err != nil {
		return nil, err
	}
	ans, err := h.s.vehicleWindow(ctx, id, w)
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.GetVehiclePerformanceResponse{
		VehicleId:       id,
		Period:          w.Period(),
		Energy:          energy(ans.total),
		Battery:         &analyticsv1.Battery{AvgTemperature: mean(ans.total.tempSum, ans.total.readings)},
		WindowStart:     timestamppb.New(w.Start),
		WindowEnd:       timestamppb.New(w.End),
		VehicleReadings: int32(ans.total.readings),
		MeterReadings:   int32(ans.total.meterReadings),
		SharedMeter:     ans.shared,
	}
	for _, a := range ans.meters {
		res.Meters = append(res.Meters, &analyticsv1.MeterAttribution{
			MeterId:       a.meterID,
			From:          timestamppb.New(a.r.From),
			To:            timestamppb.New(a.r.To),
			AcConsumed:    telemetry.KWh(a.ac),
			DcDelivered:   telemetry.KWh(a.dc),
			Shared:        a.shared,
			MeterReadings: int32(a.meterReadings),
		})
	}
	return connect.NewResponse(res), nil
}

// GetVehicleSeries answers GET /v1/analytics/vehicles/{vehicleId}/series.
func (h *handler) GetVehicleSeries(ctx context.Context, req *connect.Request[analyticsv1.GetVehicleSeriesRequest]) (*connect.Response[analyticsv1.GetSeriesResponse], error) {
	return h.deviceSeries(ctx, "vehicle", req.Msg.GetVehicleId(), req.Msg, func(ctx context.Context, id string, w window.Window) (map[time.Time]*hourTotals, error) {
		ans, err := h.s.vehicleWindow(ctx, id, w)
		return ans.hours, err
	})
}

// series buckets hourly totals by step, each bucket clipped to the window.
func series(id string, w window.Window, step time.Duration, hours map[time.Time]*hourTotals, meter bool) *analyticsv1.GetSeriesResponse {
	res := &analyticsv1.GetSeriesResponse{
		Id: id, WindowStart: timestamppb.New(w.Start), WindowEnd: timestamppb.New(w.End), Step: step.String(),
	}
	buckets := map[time.Time]*hourTotals{}
	for _, hr := range slices.SortedFunc(maps.Keys(hours), time.Time.Compare) {
		entry(buckets, window.Bucket(hr, step)).add(hours[hr])
	}
	for b := window.Bucket(window.FloorHour(w.Start), step); b.Before(w.End); b = b.Add(step) {
		r := w.Clip(window.Range{From: b, To: b.Add(step)})
		p := &analyticsv1.SeriesPoint{Start: timestamppb.New(r.From), End: timestamppb.New(r.To)}
		if t, ok := buckets[b]; ok {
			p.DcDelivered, p.AcConsumed = telemetry.KWh(t.dc), telemetry.KWh(t.ac)
			p.EfficiencyRatio = ratio(t.dc, t.ac)
			p.AvgTemperature = mean(t.tempSum, t.readings)
			p.Readings = int32(t.readings)
			if meter {
				p.AvgVoltage = mean(t.voltageSum, t.meterReadings)
				p.Readings = int32(t.meterReadings)
			}
		}
		res.Points = append(res.Points, p)
	}
	return res
}
