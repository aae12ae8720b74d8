package analytics

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/shards"
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
	first := h.s.cfg.SlotMap.ShardOf(registry.PlacementKey(&m, id, now))
	get := func(shard int) (read.VehicleStatus, bool, error) {
		var st read.VehicleStatus
		var ok bool
		err := h.s.shards.Do(ctx, shard, func(ctx context.Context, db shards.DBTX) error {
			var err error
			st, ok, err = read.GetVehicleStatus(ctx, db, id)
			return err
		})
		return st, ok, err
	}
	st, ok, err := get(first)
	if err != nil {
		return nil, h.s.shardError("reading status of vehicle "+id, err)
	}
	if ok {
		return connect.NewResponse(vehicleStatusMsg(st, first)), nil
	}
	candidates := map[int]bool{h.s.cfg.SlotMap.ShardOf(id): true}
	for _, iv := range m.Intervals {
		candidates[h.s.cfg.SlotMap.ShardOf(iv.MeterID)] = true
	}
	delete(candidates, first)
	var best *analyticsv1.VehicleStatus
	var errs []error
	for shard := range candidates {
		st, ok, err := get(shard)
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
	var st read.MeterStatus
	var ok bool
	err := h.s.shards.Do(ctx, shard, func(ctx context.Context, db shards.DBTX) error {
		var err error
		st, ok, err = read.GetMeterStatus(ctx, db, id)
		return err
	})
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

func cursorToken(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s|%s", at.UTC().Format(time.RFC3339Nano), id))
}

// ListSilentVehicles answers GET /v1/status/vehicles?silentFor=10m: vehicles whose newest
// reading, on any shard, is older than silentFor; longest silent first.
func (h *handler) ListSilentVehicles(ctx context.Context, req *connect.Request[analyticsv1.ListSilentRequest]) (*connect.Response[analyticsv1.ListSilentVehiclesResponse], error) {
	cutoff, cur, size, err := h.silentParams(req.Msg)
	if err != nil {
		return nil, err
	}
	res := &analyticsv1.ListSilentVehiclesResponse{}
	// A vehicle re-mapped to another shard keeps an older row on the shard it left: a row
	// counts only where it is the vehicle's newest. Such rows are skipped, so fetch rounds
	// continue from the last row examined until the page is full or the shards are done.
	for round := 0; round < 100; round++ {
		rows, exhausted, missing := h.silentVehicleRound(ctx, cutoff, cur, size)
		res.MissingShards = mergeMissing(res.MissingShards, missing)
		for _, r := range rows {
			if len(res.Vehicles) == size {
				res.NextPageToken = cursorToken(cur.At, cur.ID)
				return connect.NewResponse(res), nil
			}
			cur = read.Cursor{At: r.status.LastUpdatedAt, ID: r.status.VehicleID}
			if !r.stale {
				res.Vehicles = append(res.Vehicles, vehicleStatusMsg(r.status, r.shard))
			}
		}
		if exhausted {
			return connect.NewResponse(res), nil
		}
	}
	if len(res.Vehicles) > 0 {
		res.NextPageToken = cursorToken(cur.At, cur.ID)
	}
	return connect.NewResponse(res), nil
}

type silentRow struct {
	status read.VehicleStatus
	shard  int
	stale  bool
}

// silentVehicleRound fetches the next rows after cur from every shard, merged in order and
// cut where the first shard's batch ends (beyond it another shard may hold earlier rows);
// exhausted reports that no shard has more.
func (h *handler) silentVehicleRound(ctx context.Context, cutoff time.Time, cur read.Cursor, size int) (rows []silentRow, exhausted bool, missing []int32) {
	var mu sync.Mutex
	var limitAt *read.Cursor
	exhausted = true
	missing = h.s.fanOut(ctx, func(ctx context.Context, shard int) error {
		sts, err := inShard(ctx, h.s, shard, func(ctx context.Context, db shards.DBTX) ([]read.VehicleStatus, error) {
			return read.SilentVehicles(ctx, db, cutoff, cur, size+1)
		})
		mu.Lock()
		defer mu.Unlock()
		for _, st := range sts {
			rows = append(rows, silentRow{status: st, shard: shard})
		}
		if len(sts) == size+1 {
			exhausted = false
			last := sts[len(sts)-1]
			if limitAt == nil || cursorLess(last.LastUpdatedAt, last.VehicleID, limitAt.At, limitAt.ID) {
				limitAt = &read.Cursor{At: last.LastUpdatedAt, ID: last.VehicleID}
			}
		}
		return err
	})
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].status, rows[j].status
		return cursorLess(a.LastUpdatedAt, a.VehicleID, b.LastUpdatedAt, b.VehicleID)
	})
	if limitAt != nil {
		n := sort.Search(len(rows), func(i int) bool {
			return !cursorLess(rows[i].status.LastUpdatedAt, rows[i].status.VehicleID, limitAt.At, limitAt.ID)
		})
		rows = rows[:n+1]
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.status.VehicleID
	}
	if len(ids) == 0 {
		return rows, exhausted, missing
	}
	newest := map[string]time.Time{}
	more := h.s.fanOut(ctx, func(ctx context.Context, shard int) error {
		got, err := inShard(ctx, h.s, shard, func(ctx context.Context, db shards.DBTX) (map[string]time.Time, error) {
			return read.NewestVehicleReadings(ctx, db, ids)
		})
		mu.Lock()
		for id, at := range got {
			if at.After(newest[id]) {
				newest[id] = at
			}
		}
		mu.Unlock()
		return err
	})
	for i := range rows {
		rows[i].stale = newest[rows[i].status.VehicleID].After(rows[i].status.LastUpdatedAt)
	}
	return rows, exhausted, mergeMissing(missing, more)
}

func cursorLess(at time.Time, id string, bt time.Time, bid string) bool {
	if !at.Equal(bt) {
		return at.Before(bt)
	}
	return id < bid
}

// ListSilentMeters answers GET /v1/status/meters?silentFor=10m.
func (h *handler) ListSilentMeters(ctx context.Context, req *connect.Request[analyticsv1.ListSilentRequest]) (*connect.Response[analyticsv1.ListSilentMetersResponse], error) {
	cutoff, cur, size, err := h.silentParams(req.Msg)
	if err != nil {
		return nil, err
	}
	type row struct {
		st    read.MeterStatus
		shard int
	}
	var mu sync.Mutex
	var rows []row
	missing := h.s.fanOut(ctx, func(ctx context.Context, shard int) error {
		sts, err := inShard(ctx, h.s, shard, func(ctx context.Context, db shards.DBTX) ([]read.MeterStatus, error) {
			return read.SilentMeters(ctx, db, cutoff, cur, size+1)
		})
		mu.Lock()
		for _, st := range sts {
			rows = append(rows, row{st, shard})
		}
		mu.Unlock()
		return err
	})
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].st, rows[j].st
		if !a.LastUpdatedAt.Equal(b.LastUpdatedAt) {
			return a.LastUpdatedAt.Before(b.LastUpdatedAt)
		}
		return a.MeterID < b.MeterID
	})
	res := &analyticsv1.ListSilentMetersResponse{MissingShards: missing}
	for i, r := range rows {
		if i == size {
			prev := rows[i-1].st
			res.NextPageToken = cursorToken(prev.LastUpdatedAt, prev.MeterID)
			break
		}
		res.Meters = append(res.Meters, meterStatusMsg(r.st, r.shard))
	}
	return connect.NewResponse(res), nil
}

func mergeMissing(a, b []int32) []int32 {
	seen := map[int32]bool{}
	var out []int32
	for _, x := range append(a, b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// inShard runs one status statement on a shard.
func inShard[T any](ctx context.Context, s *Service, shard int, fn func(ctx context.Context, db shards.DBTX) (T, error)) (T, error) {
	var out T
	err := s.shards.Do(ctx, shard, func(ctx context.Context, db shards.DBTX) error {
		var err error
		out, err = fn(ctx, db)
		return err
	})
	return out, err
}
