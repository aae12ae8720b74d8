package analytics

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

func vehicleStatusMsg(st read.VehicleStatus, shard int) *analyticsv1.VehicleStatus {
	return &analyticsv1.VehicleStatus{
		VehicleId: st.VehicleID, Soc: proto.Float64(st.SOC), LastKwhDeliveredDc: kwh(st.DC),
		BatteryTemp: proto.Float64(st.Temp), MeterId: st.MeterID,
		LastUpdatedAt: timestamppb.New(st.LastUpdatedAt), Shard: int32(shard),
	}
}

func meterStatusMsg(st read.MeterStatus, shard int) *analyticsv1.MeterStatus {
	return &analyticsv1.MeterStatus{
		MeterId: st.MeterID, LastKwhConsumedAc: kwh(st.AC), Voltage: proto.Float64(st.Voltage),
		LastUpdatedAt: timestamppb.New(st.LastUpdatedAt), Shard: int32(shard),
	}
}

// GetVehicleStatus answers GET /v1/status/vehicles/{vehicleId} from the shard of the vehicle's
// current placement, falling back to the shards of its earlier placements when that one has
// no row yet (a vehicle re-mapped but silent since).
func (h *handler) GetVehicleStatus(ctx context.Context, req *connect.Request[analyticsv1.GetVehicleStatusRequest]) (*connect.Response[analyticsv1.VehicleStatus], error) {
	id := req.Msg.GetVehicleId()
	if err := checkID("vehicle", id); err != nil {
		return nil, err
	}
	m, _ := h.s.reg.Cached(id)
	now := h.s.cfg.Now()
	first := h.s.shardOf(registry.PlacementKey(&m, id, now), now)
	st, ok, err := h.s.reader(first).VehicleStatus(ctx, id)
	if err != nil {
		return nil, h.s.shardError("reading status of vehicle "+id, err)
	}
	if ok {
		return connect.NewResponse(vehicleStatusMsg(st, first)), nil
	}
	candidates := map[int]bool{h.s.shardOf(id, now): true}
	for _, iv := range m.Intervals {
		candidates[h.s.shardOf(iv.MeterID, iv.From)] = true
	}
	delete(candidates, first)
	var best *analyticsv1.VehicleStatus
	var errs []error
	for shard := range candidates {
		st, ok, err := h.s.reader(shard).VehicleStatus(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok && (best == nil || st.LastUpdatedAt.After(best.LastUpdatedAt.AsTime())) {
			best = vehicleStatusMsg(st, shard)
		}
	}
	if best != nil {
		return connect.NewResponse(best), nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, h.s.shardError("reading status of vehicle "+id, err)
	}
	return nil, notFound("vehicle %s has not reported", id)
}

// GetMeterStatus answers GET /v1/status/meters/{meterId}.
func (h *handler) GetMeterStatus(ctx context.Context, req *connect.Request[analyticsv1.GetMeterStatusRequest]) (*connect.Response[analyticsv1.MeterStatus], error) {
	id := req.Msg.GetMeterId()
	if err := checkID("meter", id); err != nil {
		return nil, err
	}
	shard := h.s.cfg.SlotMap.ShardOf(id)
	st, ok, err := h.s.reader(shard).MeterStatus(ctx, id)
	if err != nil {
		return nil, h.s.shardError("reading status of meter "+id, err)
	}
	if !ok {
		return nil, notFound("meter %s has not reported", id)
	}
	return connect.NewResponse(meterStatusMsg(st, shard)), nil
}

func (h *handler) silentParams(msg *analyticsv1.ListSilentRequest) (cutoff time.Time, cur read.Cursor, size int, err error) {
	spec := msg.GetSilentFor()
	if spec == "" {
		spec = "10m"
	}
	d, err := window.ParseDuration(spec)
	if err != nil || d <= 0 || d > window.MaxLength {
		return cutoff, cur, 0, invalid("silentFor %s must be a positive duration up to %dd, such as 10m", window.Quote(spec), int(window.MaxLength/(24*time.Hour)))
	}
	if size, err = pageSize(msg.GetPageSize()); err != nil {
		return cutoff, cur, 0, err
	}
	if tok := msg.GetPageToken(); tok != "" {
		raw, derr := base64.RawURLEncoding.DecodeString(tok)
		at, id, found := strings.Cut(string(raw), "|")
		t, perr := time.Parse(time.RFC3339Nano, at)
		if derr != nil || !found || perr != nil {
			return cutoff, cur, 0, invalid("pageToken %s is not one this service issued", window.Quote(tok))
		}
		cur = read.Cursor{At: t, ID: id}
	}
	return h.s.cfg.Now().Add(-d), cur, size, nil
}

func cursorToken(c read.Cursor) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s|%s", c.At.UTC().Format(time.RFC3339Nano), c.ID))
}

// ListSilentVehicles answers GET /v1/status/vehicles?silentFor=10m: vehicles whose newest
// reading, on any shard, is older than silentFor; longest silent first.
func (h *handler) ListSilentVehicles(ctx context.Context, req *connect.Request[analyticsv1.ListSilentRequest]) (*connect.Response[analyticsv1.ListSilentVehiclesResponse], error) {
	cutoff, cur, size, err := h.silentParams(req.Msg)
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context, r reader, after read.Cursor, n int) ([]read.VehicleStatus, error) {
		return r.SilentVehicles(ctx, cutoff, after, n)
	}
	page, next, missing := silentPage(ctx, h.s, cur, size, fetch, h.staleVehicles)
	res := &analyticsv1.ListSilentVehiclesResponse{NextPageToken: next, MissingShards: missing}
	for _, r := range page {
		res.Vehicles = append(res.Vehicles, vehicleStatusMsg(r.row, r.shard))
	}
	return connect.NewResponse(res), nil
}

// ListSilentMeters answers GET /v1/status/meters?silentFor=10m.
func (h *handler) ListSilentMeters(ctx context.Context, req *connect.Request[analyticsv1.ListSilentRequest]) (*connect.Response[analyticsv1.ListSilentMetersResponse], error) {
	cutoff, cur, size, err := h.silentParams(req.Msg)
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context, r reader, after read.Cursor, n int) ([]read.MeterStatus, error) {
		return r.SilentMeters(ctx, cutoff, after, n)
	}
	page, next, missing := silentPage(ctx, h.s, cur, size, fetch, nil)
	res := &analyticsv1.ListSilentMetersResponse{NextPageToken: next, MissingShards: missing}
	for _, r := range page {
		res.Meters = append(res.Meters, meterStatusMsg(r.row, r.shard))
	}
	return connect.NewResponse(res), nil
}

// silent is a status row and its shard.
type silent[T interface{ Cursor() read.Cursor }] struct {
	row   T
	shard int
}

// silentPage lists a page of status rows after cur over every shard, in (last heard, id)
// order. Rows are fetched in rounds: each shard's next rows, merged and cut where the first
// full batch ends (beyond it another shard may hold earlier rows), without the rows stale
// finds outdated (a vehicle re-mapped keeps an older row on the shard it left), until the
// page is full or the shards are done.
func silentPage[T interface{ Cursor() read.Cursor }](ctx context.Context, s *Service, cur read.Cursor, size int,
	fetch func(ctx context.Context, r reader, after read.Cursor, n int) ([]T, error),
	stale func(ctx context.Context, rows []silent[T]) ([]bool, []int32),
) (page []silent[T], next string, missing []int32) {
	for range 100 {
		var mu sync.Mutex
		var rows []silent[T]
		var cut *read.Cursor
		missing = mergeMissing(missing, s.fanOut(ctx, func(ctx context.Context, shard int) error {
			got, err := fetch(ctx, s.reader(shard), cur, size+1)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range got {
				rows = append(rows, silent[T]{r, shard})
			}
			if last := len(got) - 1; last == size && (cut == nil || got[last].Cursor().Compare(*cut) < 0) {
				c := got[last].Cursor()
				cut = &c
			}
			return err
		}))
		slices.SortFunc(rows, func(a, b silent[T]) int { return a.row.Cursor().Compare(b.row.Cursor()) })
		if cut != nil {
			rows = rows[:slices.IndexFunc(rows, func(r silent[T]) bool { return r.row.Cursor().Compare(*cut) == 0 })+1]
		}
		skip := make([]bool, len(rows))
		if stale != nil && len(rows) > 0 {
			var more []int32
			skip, more = stale(ctx, rows)
			missing = mergeMissing(missing, more)
		}
		for i, r := range rows {
			if len(page) == size {
				return page, cursorToken(cur), missing
			}
			cur = r.row.Cursor()
			if !skip[i] {
				page = append(page, r)
			}
		}
		if cut == nil {
			return page, "", missing
		}
	}
	if len(page) > 0 {
		next = cursorToken(cur)
	}
	return page, next, missing
}

// staleVehicles tells which rows are not their vehicle's newest on any shard.
func (h *handler) staleVehicles(ctx context.Context, rows []silent[read.VehicleStatus]) ([]bool, []int32) {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.row.VehicleID
	}
	var mu sync.Mutex
	newest := map[string]time.Time{}
	missing := h.s.fanOut(ctx, func(ctx context.Context, shard int) error {
		got, err := h.s.reader(shard).NewestVehicleReadings(ctx, ids)
		mu.Lock()
		defer mu.Unlock()
		for _, st := range got {
			if st.LastUpdatedAt.After(newest[st.VehicleID]) {
				newest[st.VehicleID] = st.LastUpdatedAt
			}
		}
		return err
	})
	out := make([]bool, len(rows))
	for i, r := range rows {
		out[i] = newest[r.row.VehicleID].After(r.row.LastUpdatedAt)
	}
	return out, missing
}

func mergeMissing(a, b []int32) []int32 {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
