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

// GetVehicleStatus answers GET /v1/status/vehicles/{vehicleId}: the newest row over the
// shards of the vehicle's placement history (its own id's and those of the meters it was
// mapped to), named with the shard that holds it.
func (h *handler) GetVehicleStatus(ctx context.Context, req *connect.Request[analyticsv1.GetVehicleStatusRequest]) (*connect.Response[analyticsv1.VehicleStatus], error) {
	id := req.Msg.GetVehicleId()
	if err := checkID("vehicle", id); err != nil {
		return nil, err
	}
	m, _ := h.s.reg.Cached(id)
	end := h.s.cfg.Now().Add(time.Hour) // readings are stored up to minutes ahead of the clock
	var shards []int
	add := func(key string, from, to time.Time) error {
		os, err := h.s.owners(key, from, to)
		for _, o := range os {
			if !slices.Contains(shards, o.Shard) {
				shards = append(shards, o.Shard)
			}
		}
		return err
	}
	err := add(id, time.Time{}, end)
	for _, iv := range m.Intervals {
		err = errors.Join(err, add(iv.MeterID, iv.From, cmp.Or(ptrTime(iv.To), end)))
	}
	if err != nil {
		return nil, err
	}
	st, shard, ok, err := newestStatus(ctx, h.s, shards, func(ctx context.Context, r reader) (read.VehicleStatus, bool, error) {
		return r.VehicleStatus(ctx, id)
	})
	switch {
	case err != nil:
		return nil, h.s.shardError("reading status of vehicle "+id, err)
	case !ok:
		return nil, notFound("vehicle %s has not reported", id)
	}
	return connect.NewResponse(vehicleStatusMsg(st, shard)), nil
}

// GetMeterStatus answers GET /v1/status/meters/{meterId}.
func (h *handler) GetMeterStatus(ctx context.Context, req *connect.Request[analyticsv1.GetMeterStatusRequest]) (*connect.Response[analyticsv1.MeterStatus], error) {
	id := req.Msg.GetMeterId()
	if err := checkID("meter", id); err != nil {
		return nil, err
	}
	st, shard, ok, err := h.s.meterStatus(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, notFound("meter %s has not reported", id)
	}
	return connect.NewResponse(meterStatusMsg(st, shard)), nil
}

// meterStatus is the meter's newest row over the shards that held it, and its shard.
func (s *Service) meterStatus(ctx context.Context, id string) (read.MeterStatus, int, bool, error) {
	os, err := s.owners(id, time.Time{}, s.cfg.Now().Add(time.Hour))
	if err != nil {
		return read.MeterStatus{}, 0, false, err
	}
	shards := make([]int, len(os))
	for i, o := range os {
		shards[i] = o.Shard
	}
	st, shard, ok, err := newestStatus(ctx, s, shards, func(ctx context.Context, r reader) (read.MeterStatus, bool, error) {
		return r.MeterStatus(ctx, id)
	})
	if err != nil {
		return st, shard, ok, s.shardError("reading status of meter "+id, err)
	}
	return st, shard, ok, nil
}

// newestStatus asks each shard for a device's row and keeps the newest; found is false when
// none has one, and err tells of the shards that did not answer then.
func newestStatus[T interface{ Cursor() read.Cursor }](ctx context.Context, s *Service, shards []int, get func(context.Context, reader) (T, bool, error)) (best T, shard int, found bool, err error) {
	var errs []error
	for _, i := range shards {
		st, ok, err := get(ctx, s.reader(i))
		if err != nil {
			errs = append(errs, err)
		} else if ok && (!found || st.Cursor().At.After(best.Cursor().At)) {
			best, shard, found = st, i, true
		}
	}
	if !found {
		err = errors.Join(errs...)
	}
	return best, shard, found, err
}

func ptrTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
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
	page, next, missing := silentPage(ctx, h.s, cur, size, fetch, func(ctx context.Context, r reader, ids []string) ([]read.VehicleStatus, error) {
		return r.VehicleStatuses(ctx, ids)
	})
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
	page, next, missing := silentPage(ctx, h.s, cur, size, fetch, func(ctx context.Context, r reader, ids []string) ([]read.MeterStatus, error) {
		return r.MeterStatuses(ctx, ids)
	})
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
// full batch ends (beyond it another shard may hold earlier rows), without the rows that are
// not their device's newest on any shard (a device placed on another shard since keeps an
// older row on the shard it left), until the page is full or the shards are done.
func silentPage[T interface{ Cursor() read.Cursor }](ctx context.Context, s *Service, cur read.Cursor, size int,
	fetch func(ctx context.Context, r reader, after read.Cursor, n int) ([]T, error),
	byID func(ctx context.Context, r reader, ids []string) ([]T, error),
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
		newest, more := newestByID(ctx, s, rows, byID)
		missing = mergeMissing(missing, more)
		for _, r := range rows {
			if len(page) == size {
				return page, cursorToken(cur), missing
			}
			cur = r.row.Cursor()
			if !newest[cur.ID].After(cur.At) {
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

// newestByID reads, for the devices of rows, the newest row any shard holds.
func newestByID[T interface{ Cursor() read.Cursor }](ctx context.Context, s *Service, rows []silent[T], byID func(ctx context.Context, r reader, ids []string) ([]T, error)) (map[string]time.Time, []int32) {
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
		got, err := byID(ctx, s.reader(shard), ids)
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
