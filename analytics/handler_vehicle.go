package analytics

import (
	"context"
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

func mean(sum float64, n int) *float64 {
	if n == 0 {
		return nil
	}
	return proto.Float64(sum / float64(n))
}

func (h *handler) parseWindow(length, end string) (window.Window, error) {
	w, err := window.Parse(length, end, h.s.cfg.Now())
	if err != nil {
		return window.Window{}, invalid("%v", err)
	}
	return w, nil
}

// GetVehiclePerformance answers GET /v1/analytics/performance/{vehicleId}.
func (h *handler) GetVehiclePerformance(ctx context.Context, req *connect.Request[analyticsv1.GetVehiclePerformanceRequest]) (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error) {
	id := req.Msg.GetVehicleId()
	if err := checkID("vehicle", id); err != nil {
		return nil, err
	}
	w, err := h.parseWindow(req.Msg.GetWindow(), req.Msg.GetEnd())
	if err != nil {
		return nil, err
	}
	m, err := h.s.mapping(ctx, id)
	if err != nil {
		return nil, err
	}
	ans, err := h.s.vehicleWindow(ctx, id, m, w)
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.GetVehiclePerformanceResponse{
		VehicleId: id,
		Period:    w.Period(),
		Energy: &analyticsv1.Energy{
			AcConsumed:      kwh(ans.total.ac),
			DcDelivered:     kwh(ans.total.dc),
			EfficiencyRatio: ratio(ans.total.dc, ans.total.ac),
		},
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
	id := req.Msg.GetVehicleId()
	if err := checkID("vehicle", id); err != nil {
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
	m, err := h.s.mapping(ctx, id)
	if err != nil {
		return nil, err
	}
	ans, err := h.s.vehicleWindow(ctx, id, m, w)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(series(id, w, step, ans.hours, false)), nil
}

// series buckets hourly totals by step, each bucket clipped to the window.
func series(id string, w window.Window, step time.Duration, hours map[time.Time]*hourTotals, meter bool) *analyticsv1.GetSeriesResponse {
	res := &analyticsv1.GetSeriesResponse{
		Id: id, WindowStart: timestamppb.New(w.Start), WindowEnd: timestamppb.New(w.End), Step: step.String(),
	}
	buckets := map[time.Time]*hourTotals{}
	for _, hr := range sortedHours(hours) {
		t := hours[hr]
		b := window.Bucket(hr, step)
		acc, ok := buckets[b]
		if !ok {
			acc = &hourTotals{}
			buckets[b] = acc
		}
		acc.add(t)
	}
	for b := window.Bucket(window.FloorHour(w.Start), step); b.Before(w.End); b = b.Add(step) {
		from, to := b, b.Add(step)
		if from.Before(w.Start) {
			from = w.Start
		}
		if to.After(w.End) {
			to = w.End
		}
		p := &analyticsv1.SeriesPoint{Start: timestamppb.New(from), End: timestamppb.New(to)}
		if t, ok := buckets[b]; ok {
			p.DcDelivered, p.AcConsumed = telemetry.KWh(t.dc), telemetry.KWh(t.ac)
			p.EfficiencyRatio = ratio(t.dc, t.ac)
			if meter {
				p.AvgVoltage = mean(t.voltageSum, t.meterReadings)
				p.AvgTemperature = mean(t.tempSum, t.readings)
				p.Readings = int32(t.meterReadings)
			} else {
				p.AvgTemperature = mean(t.tempSum, t.readings)
				p.Readings = int32(t.readings)
			}
		}
		res.Points = append(res.Points, p)
	}
	return res
}
