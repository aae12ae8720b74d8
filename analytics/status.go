package analytics

import (
	"cmp"
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

// statusKind is how one kind of device's status is read and answered.
type statusKind[M any] struct {
	name string
	kind read.Kind
	msg  func(st read.Status, shard int) *M
}

var (
	vehicleStatus = statusKind[analyticsv1.VehicleStatus]{
		name: "vehicle", kind: read.Vehicles,
		msg: func(st read.Status, shard int) *analyticsv1.VehicleStatus {
			return &analyticsv1.VehicleStatus{
				VehicleId: st.ID, Soc: proto.Float64(st.SOC), LastKwhDeliveredDc: kwh(st.Energy),
				BatteryTemp: proto.Float64(st.Temp), MeterId: st.MeterID,
				LastUpdatedAt: timestamppb.New(st.LastUpdatedAt), Shard: int32(shard),
			}
		},
	}
	meterStatus = statusKind[analyticsv1.MeterStatus]{
		name: "meter", kind: read.Meters,
		msg: func(st read.Status, shard int) *analyticsv1.MeterStatus {
			return &analyticsv1.MeterStatus{
				MeterId: st.ID, LastKwhConsumedAc: kwh(st.Energy), Voltage: proto.Float64(st.Voltage),
				LastUpdatedAt: timestamppb.New(st.LastUpdatedAt), Shard: int32(shard),
			}
		},
	}
)

// GetVehicleStatus answers GET /v1/status/vehicles/{vehicleId}.
func (h *handler) GetVehicleStatus(ctx context.Context, req *connect.Request[analyticsv1.GetVehicleStatusRequest]) (*connect.Response[analyticsv1.VehicleStatus], error) {
	m, _ := h.s.reg.Cached(req.Msg.GetVehicleId())
	return getStatus(ctx, h.s, vehicleStatus, req.Msg.GetVehicleId(), m.Intervals)
}

// GetMeterStatus answers GET /v1/status/meters/{meterId}.
func (h *handler) GetMeterStatus(ctx context.Context, req *connect.Request[analyticsv1.GetMeterStatusRequest]) (*connect.Response[analyticsv1.MeterStatus], error) {
	return getStatus(ctx, h.s, meterStatus, req.Msg.GetMeterId(), nil)
}

// getStatus answers a device's newest row, named with the shard that holds it.
func getStatus[M any](ctx context.Context, s *Service, k statusKind[M], id string, intervals []registry.Interval) (*connect.Response[M], error) {
	if err := checkID(k.name, id); err != nil {
		return nil, err
	}
	st, shard, ok, err := newestStatus(ctx, s, k, id, intervals)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, notFound("%s %s has not reported", k.name, id)
	}
	return connect.NewResponse(k.msg(st, shard)), nil
}

// newestStatus is a device's newest row over the shards of its own id and its intervals'
// meters; found is false when no shard has one, and err then tells of those not answering.
func newestStatus[M any](ctx context.Context, s *Service, k statusKind[M], id string, intervals []registry.Interval) (best read.Status, shard int, found bool, err error) {
	end := s.cfg.Now().Add(time.Hour) // readings are stored up to minutes ahead of the clock
	owners, err := s.owners(id, time.Time{}, end)
	for _, iv := range intervals {
		os, ierr := s.owners(iv.MeterID, iv.From, until(iv, end))
		owners, err = append(owners, os...), errors.Join(err, ierr)
	}
	if err != nil {
		return best, 0, false, err
	}
	var asked []int
	var errs []error
	for _, o := range owners {
		if slices.Contains(asked, o.Shard) {
			continue
		}
		asked = append(asked, o.Shard)
		rows, err := s.readers[o.Shard].Statuses(ctx, k.kind, []string{id})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, st := range rows {
			if !found || st.Cursor().At.After(best.Cursor().At) {
				best, shard, found = st, o.Shard, true
			}
		}
	}
	if !found && len(errs) > 0 {
		return best, 0, false, s.shardError("reading status of "+k.name+" "+id, errors.Join(errs...))
	}
	return best, shard, found, nil
}

func (h *handler) silentParams(msg *analyticsv1.ListSilentRequest) (cutoff time.Time, cur read.Cursor, size int, err error) {
	spec := cmp.Or(msg.GetSilentFor(), "10m")
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
	return listSilent(ctx, h, vehicleStatus, req.Msg, func(page []*analyticsv1.VehicleStatus, next string, missing []int32) *analyticsv1.ListSilentVehiclesResponse {
		return &analyticsv1.ListSilentVehiclesResponse{Vehicles: page, NextPageToken: next, MissingShards: missing}
	})
}

// ListSilentMeters answers GET /v1/status/meters?silentFor=10m.
func (h *handler) ListSilentMeters(ctx context.Context, req *connect.Request[analyticsv1.ListSilentRequest]) (*connect.Response[analyticsv1.ListSilentMetersResponse], error) {
	return listSilent(ctx, h, meterStatus, req.Msg, func(page []*analyticsv1.MeterStatus, next string, missing []int32) *analyticsv1.ListSilentMetersResponse {
		return &analyticsv1.ListSilentMetersResponse{Meters: page, NextPageToken: next, MissingShards: missing}
	})
}

// silent is a status row and its shard.
type silent struct {
	row   read.Status
	shard int
}

// listSilent lists a page of devices silent for the time asked, in (last heard, id) order,
// over every shard, in rounds until the page is full: each shard's next rows, merged and cut
// where the first full batch ends (another shard may hold rows beyond it), less the rows not
// their device's newest on any shard (a device placed on another shard since left one); res
// makes the answer of a page.
func listSilent[M, R any](ctx context.Context, h *handler, k statusKind[M], msg *analyticsv1.ListSilentRequest, res func(page []*M, next string, missing []int32) *R) (*connect.Response[R], error) {
	cutoff, cur, size, err := h.silentParams(msg)
	if err != nil {
		return nil, err
	}
	var page []*M
	var missing []int32
	s := h.s
	for range 100 {
		var mu sync.Mutex
		var rows []silent
		var cut *read.Cursor
		missing = mergeMissing(missing, s.fanOut(ctx, func(ctx context.Context, shard int) error {
			got, err := s.readers[shard].Silent(ctx, k.kind, cutoff, cur, size+1)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range got {
				rows = append(rows, silent{r, shard})
			}
			if last := len(got) - 1; last == size && (cut == nil || got[last].Cursor().Compare(*cut) < 0) {
				cut = new(got[last].Cursor())
			}
			return err
		}))
		slices.SortFunc(rows, func(a, b silent) int { return a.row.Cursor().Compare(b.row.Cursor()) })
		if cut != nil {
			rows = rows[:slices.IndexFunc(rows, func(r silent) bool { return r.row.Cursor().Compare(*cut) == 0 })+1]
		}
		newest, more := newestByID(ctx, s, k, rows)
		missing = mergeMissing(missing, more)
		for _, r := range rows {
			if len(page) == size {
				return connect.NewResponse(res(page, cursorToken(cur), missing)), nil
			}
			cur = r.row.Cursor()
			if !newest[cur.ID].After(cur.At) {
				page = append(page, k.msg(r.row, r.shard))
			}
		}
		if cut == nil {
			return connect.NewResponse(res(page, "", missing)), nil
		}
	}
	next := ""
	if len(page) > 0 {
		next = cursorToken(cur)
	}
	return connect.NewResponse(res(page, next, missing)), nil
}

// newestByID reads, for the devices of rows, the newest row any shard holds.
func newestByID[M any](ctx context.Context, s *Service, k statusKind[M], rows []silent) (map[string]time.Time, []int32) {
	newest := map[string]time.Time{}
	if len(rows) == 0 || s.shards.Len() == 1 {
		return newest, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.row.Cursor().ID
	}
	var mu sync.Mutex
	missing := s.fanOut(ctx, func(ctx context.Context, shard int) error {
		got, err := s.readers[shard].Statuses(ctx, k.kind, ids)
		mu.Lock()
		defer mu.Unlock()
		for _, st := range got {
			if c := st.Cursor(); c.At.After(newest[c.ID]) {
				newest[c.ID] = c.At
			}
		}
		return err
	})
	return newest, missing
}

func mergeMissing(a, b []int32) []int32 {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
