package analytics

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// MappingSaved is the seed's confirmation text for mapping writes.
const MappingSaved = "Vehicle-meter mapping created/updated successfully"

func intervalsMsg(m registry.Mapping) []*analyticsv1.MappingInterval {
	out := make([]*analyticsv1.MappingInterval, len(m.Intervals))
	for i, iv := range m.Intervals {
		out[i] = &analyticsv1.MappingInterval{MeterId: iv.MeterID, From: timestamppb.New(iv.From)}
		if iv.To != nil {
			out[i].To = timestamppb.New(*iv.To)
		}
	}
	return out
}

func mappingResponse(m registry.Mapping, message string) *analyticsv1.MappingResponse {
	res := &analyticsv1.MappingResponse{
		VehicleId: m.VehicleID, MeterId: m.MeterID, Message: message, Intervals: intervalsMsg(m),
	}
	if !m.UpdatedAt.IsZero() {
		res.UpdatedAt = timestamppb.New(m.UpdatedAt)
	}
	return res
}

// CreateMapping answers POST /v1/analytics/mappings: creates or updates, as the seed does,
// from now on; or, with from (and to), writes that interval (mappings_backfill.go).
func (h *handler) CreateMapping(ctx context.Context, req *connect.Request[analyticsv1.CreateMappingRequest]) (*connect.Response[analyticsv1.MappingResponse], error) {
	return h.writeMapping(ctx, req.Msg, false)
}

// UpdateMapping answers PUT /v1/analytics/mappings/{vehicleId}: as CreateMapping, only for a
// vehicle that has been mapped before.
func (h *handler) UpdateMapping(ctx context.Context, req *connect.Request[analyticsv1.UpdateMappingRequest]) (*connect.Response[analyticsv1.MappingResponse], error) {
	return h.writeMapping(ctx, req.Msg, true)
}

// mappingWrite is a request to write a vehicle's mapping.
type mappingWrite interface {
	GetVehicleId() string
	GetMeterId() string
	GetFrom() *timestamppb.Timestamp
	GetTo() *timestamppb.Timestamp
}

// writeMapping maps the vehicle from now on, or writes the interval that from (and to) name
// (mappings_backfill.go); an update needs a vehicle that has been mapped before.
func (h *handler) writeMapping(ctx context.Context, req mappingWrite, update bool) (*connect.Response[analyticsv1.MappingResponse], error) {
	id, meterID := req.GetVehicleId(), req.GetMeterId()
	if err := checkID("vehicle", id); err != nil {
		return nil, err
	}
	if err := checkID("meter", meterID); err != nil {
		return nil, err
	}
	if update {
		if _, err := h.s.reg.Get(ctx, id); err != nil {
			return nil, registryError(id, err)
		}
	}
	if req.GetFrom() == nil && req.GetTo() == nil {
		m, err := h.s.reg.Set(ctx, id, meterID)
		if err != nil {
			return nil, registryError(id, err)
		}
		h.s.cfg.Logger.Info("vehicle mapped", "vehicle", id, "meter", meterID)
		return connect.NewResponse(mappingResponse(m, MappingSaved)), nil
	}
	iv, err := backfillInterval(meterID, req.GetFrom(), req.GetTo(), h.s.cfg.Now(), h.s.cfg.MaxLateness)
	if err != nil {
		return nil, err
	}
	m, err := h.s.reg.Insert(ctx, id, iv, func(ctx context.Context) error { return h.s.checkNoUnmappedReadings(ctx, id, iv) })
	if err != nil {
		return nil, h.s.intervalError(id, err)
	}
	h.s.cfg.Logger.Info("vehicle mapping interval written", "vehicle", id, "interval", iv.String())
	return connect.NewResponse(mappingResponse(m, MappingSaved)), nil
}

// GetMapping answers GET /v1/analytics/mappings/{vehicleId} from the bucket.
func (h *handler) GetMapping(ctx context.Context, req *connect.Request[analyticsv1.GetMappingRequest]) (*connect.Response[analyticsv1.MappingResponse], error) {
	return vehicleMapping(ctx, req.Msg.GetVehicleId(), "", h.s.reg.Get)
}

// DeleteMapping answers DELETE /v1/analytics/mappings/{vehicleId}: ends the current interval
// now and keeps the history.
func (h *handler) DeleteMapping(ctx context.Context, req *connect.Request[analyticsv1.DeleteMappingRequest]) (*connect.Response[analyticsv1.MappingResponse], error) {
	res, err := vehicleMapping(ctx, req.Msg.GetVehicleId(), "Vehicle-meter mapping ended; its history is kept", h.s.reg.Unset)
	if err == nil {
		h.s.cfg.Logger.Info("vehicle unmapped", "vehicle", req.Msg.GetVehicleId())
	}
	return res, err
}

// vehicleMapping checks the vehicle id, then answers with the mapping op returns for it.
func vehicleMapping(ctx context.Context, id, message string, op func(context.Context, string) (registry.Mapping, error)) (*connect.Response[analyticsv1.MappingResponse], error) {
	if err := checkID("vehicle", id); err != nil {
		return nil, err
	}
	m, err := op(ctx, id)
	if err != nil {
		return nil, registryError(id, err)
	}
	return connect.NewResponse(mappingResponse(m, message)), nil
}

// ListMappings answers GET /v1/analytics/mappings from the in-memory copy, in vehicle-id
// order; the page token is the last vehicle id of the previous page.
func (h *handler) ListMappings(ctx context.Context, req *connect.Request[analyticsv1.ListMappingsRequest]) (*connect.Response[analyticsv1.ListMappingsResponse], error) {
	size, err := pageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	after := req.Msg.GetPageToken()
	if err := checkID("pageToken", after); after != "" && err != nil {
		return nil, err
	}
	if err := h.s.reg.WaitReady(ctx); err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the mapping copy has not caught up yet"))
	}
	ms, more := h.s.reg.ListCached(after, size)
	res := &analyticsv1.ListMappingsResponse{}
	for _, m := range ms {
		res.Mappings = append(res.Mappings, &analyticsv1.Mapping{
			VehicleId: m.VehicleID, MeterId: m.MeterID, Intervals: intervalsMsg(m), UpdatedAt: timestamppb.New(m.UpdatedAt),
		})
	}
	if more && len(ms) > 0 {
		res.NextPageToken = ms[len(ms)-1].VehicleID
	}
	return connect.NewResponse(res), nil
}
