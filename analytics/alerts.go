package analytics

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

// Page sizes of list RPCs.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func pageSize(n int32) (int, error) {
	if n < 0 {
		return 0, invalid("pageSize %d is negative", n)
	}
	return cmp.Or(min(int(n), maxPageSize), defaultPageSize), nil
}

// parseThreshold is the alert threshold asked for, or def.
func parseThreshold(t *float64, def float64) (float64, error) {
	if t == nil {
		return def, nil
	}
	if math.IsNaN(*t) || math.IsInf(*t, 0) || *t <= 0 {
		return 0, invalid("threshold %v must be a ratio above 0, such as 0.85", *t)
	}
	return *t, nil
}

// maxOffset bounds the offsets page tokens carry, so that offset + page size never overflows.
const maxOffset = 1 << 30

func offsetToken(tok string) (int, error) {
	if tok == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(tok)
	if err != nil || n < 0 || n > maxOffset {
		return 0, invalid("pageToken %s is not one this service issued", window.Quote(tok))
	}
	return n, nil
}

// fanOut runs fn on every shard in parallel; shards that fail are returned, not fatal.
func (s *Service) fanOut(ctx context.Context, fn func(ctx context.Context, shard int) error) (missing []int32) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range s.shards.Len() {
		wg.Go(func() {
			if err := fn(ctx, i); err != nil {
				// A request its caller cancelled is not the shard's failure.
				if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(err, context.Canceled) {
					s.metrics.missing.Inc()
					s.cfg.Logger.Warn("shard did not answer a fan-out query", "shard", i, "err", err)
				}
				mu.Lock()
				missing = append(missing, int32(i))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if m := s.cfg.ShardMap.Current(); m != nil {
		for i := s.shards.Len(); i < m.Shards(); i++ {
			missing = append(missing, int32(i)) // no DSN in this replica yet
		}
	}
	slices.Sort(missing)
	return missing
}

// alertHours is the whole hours an alert query evaluates: the window's length rounded up to
// whole hours, ending at the start of the hour that holds the window's end.
func alertHours(w window.Window) window.Range {
	end := window.FloorHour(w.End)
	n := int64(math.Ceil(w.End.Sub(w.Start).Hours()))
	return window.Range{From: end.Add(-time.Duration(n) * time.Hour), To: end}
}

// ListAlerts answers GET /v1/analytics/alerts.
func (h *handler) ListAlerts(ctx context.Context, req *connect.Request[analyticsv1.ListAlertsRequest]) (*connect.Response[analyticsv1.ListAlertsResponse], error) {
	threshold, err := parseThreshold(req.Msg.Threshold, h.s.cfg.DefaultThreshold)
	if err != nil {
		return nil, err
	}
	w, err := h.parseWindow(req.Msg)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.Msg.GetPageSize())
	if err != nil {
		return nil, err
	}
	offset, err := offsetToken(req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	hours := alertHours(w)

	// Hours a cutover of the shard map splits are held in part by two shards.
	var split []time.Time
	if m := h.s.cfg.ShardMap.Current(); m != nil {
		for _, c := range m.Cutovers() {
			if at := window.FloorHour(c); !at.Equal(c) && !at.Before(hours.From) && at.Before(hours.To) {
				split = append(split, at)
			}
		}
	}
	parts := make([]read.AlertSums, h.s.shards.Len())
	missing := h.s.fanOut(ctx, func(ctx context.Context, shard int) (err error) {
		parts[shard], err = h.s.readers[shard].Alerts(ctx, hours, split)
		return err
	})
	if ctx.Err() != nil {
		return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}

	sites, valerts := h.s.alertLists(parts, threshold, len(missing) == 0)
	if len(missing) > 0 {
		// Sums a missing shard held part of would be partial: those sites and vehicles are
		// left out, as the missing shard's own are.
		partial := func(key string) bool {
			os, _ := h.s.owners(key, hours.From, hours.To)
			return slices.ContainsFunc(os, func(o placement.Owner) bool { return slices.Contains(missing, int32(o.Shard)) })
		}
		sites = slices.DeleteFunc(sites, func(a *analyticsv1.SiteAlert) bool { return partial(a.MeterId) })
		valerts = slices.DeleteFunc(valerts, func(a *analyticsv1.VehicleAlert) bool {
			return partial(a.VehicleId) || slices.ContainsFunc(a.MeterIds, partial)
		})
	}
	res := &analyticsv1.ListAlertsResponse{
		Threshold:     threshold,
		HoursStart:    timestamppb.New(hours.From),
		HoursEnd:      timestamppb.New(hours.To),
		MissingShards: missing,
		TotalSites:    int32(len(sites)),
		TotalVehicles: int32(len(valerts)),
		Sites:         page(sites, offset, size),
		Vehicles:      page(valerts, offset, size),
	}
	if offset+size < len(sites) || offset+size < len(valerts) {
		res.NextPageToken = strconv.Itoa(offset + size)
	}
	return connect.NewResponse(res), nil
}

// alertAnswer is the last alert lists made of sums every shard made from memory, keyed by
// their Made numbers (each stands for a shard's window, split and hours' versions).
type alertAnswer struct {
	threshold float64
	made      []uint64 // read.AlertSums.Made by shard
	mappings  uint64   // registry.Registry.Applied
	sites     []*analyticsv1.SiteAlert
	vehicles  []*analyticsv1.VehicleAlert
}

func (a *alertAnswer) same(o *alertAnswer) bool {
	return a.threshold == o.threshold && slices.Equal(a.made, o.made) && a.mappings == o.mappings
}

// alertLists merges the shards' sums into the lists below threshold (whole: every shard
// answered). While every shard returns the sums it made from memory before and the mappings
// have not moved, the lists made then answer (never changed; pages are slices of them).
func (s *Service) alertLists(parts []read.AlertSums, threshold float64, whole bool) ([]*analyticsv1.SiteAlert, []*analyticsv1.VehicleAlert) {
	key := &alertAnswer{threshold: threshold, mappings: s.reg.Applied()}
	for _, p := range parts {
		key.made = append(key.made, p.Made)
	}
	reusable := whole && !slices.Contains(key.made, 0) // lists of a whole fleet only, never filtered after
	if last := s.lastAlerts.Load(); reusable && last != nil && last.same(key) {
		return last.sites, last.vehicles
	}
	key.sites, key.vehicles = s.mergeAlerts(read.MergeAlertSums(parts), threshold)
	if reusable {
		s.lastAlerts.Store(key)
	}
	return key.sites, key.vehicles
}

// mergeAlerts lists the sites and vehicles below threshold, worst first; an hour's AC of a
// meter without DC is split equally among the vehicles mapped to it then.
func (s *Service) mergeAlerts(sums read.AlertSums, threshold float64) ([]*analyticsv1.SiteAlert, []*analyticsv1.VehicleAlert) {
	type veh struct {
		ac, dc int64 // mWh
		meters []string
	}
	vehicles := map[string]*veh{}
	use := func(id, meter string, ac, dc int64) {
		v := entry(vehicles, id)
		v.ac, v.dc = v.ac+ac, v.dc+dc
		if meter != "" && !slices.Contains(v.meters, meter) {
			v.meters = append(v.meters, meter)
		}
	}
	siteDC, siteVehicles := map[string]int64{}, map[string][]string{}
	for _, vm := range sums.Pairs {
		use(vm.VehicleID, vm.MeterID, vm.AC, vm.DC)
		if vm.MeterID != "" {
			siteDC[vm.MeterID] += vm.DC
			siteVehicles[vm.MeterID] = append(siteVehicles[vm.MeterID], vm.VehicleID)
		}
	}
	for _, u := range sums.Unshared {
		mapped := s.reg.MappedTo(u.MeterID, u.Hour, u.Hour.Add(time.Hour))
		for _, id := range mapped {
			use(id, u.MeterID, attribution.Equal(u.AC, len(mapped)), 0)
		}
	}
	var sites []*analyticsv1.SiteAlert
	for m, ac := range sums.MeterAC {
		if dc := siteDC[m]; ac > 0 && efficiency(dc, ac) < threshold {
			slices.Sort(siteVehicles[m])
			sites = append(sites, &analyticsv1.SiteAlert{
				MeterId: m, AcConsumed: telemetry.KWh(ac), DcDelivered: telemetry.KWh(dc), EfficiencyRatio: efficiency(dc, ac), VehicleIds: siteVehicles[m],
			})
		}
	}
	var valerts []*analyticsv1.VehicleAlert
	for id, v := range vehicles {
		if v.ac <= 0 || efficiency(v.dc, v.ac) >= threshold {
			continue
		}
		slices.Sort(v.meters)
		valerts = append(valerts, &analyticsv1.VehicleAlert{
			VehicleId: id, AcConsumed: telemetry.KWh(v.ac), DcDelivered: telemetry.KWh(v.dc), EfficiencyRatio: efficiency(v.dc, v.ac), MeterIds: v.meters,
		})
	}
	slices.SortFunc(sites, func(a, b *analyticsv1.SiteAlert) int {
		return cmp.Or(cmp.Compare(a.EfficiencyRatio, b.EfficiencyRatio), strings.Compare(a.MeterId, b.MeterId))
	})
	slices.SortFunc(valerts, func(a, b *analyticsv1.VehicleAlert) int {
		return cmp.Or(cmp.Compare(a.EfficiencyRatio, b.EfficiencyRatio), strings.Compare(a.VehicleId, b.VehicleId))
	})
	return sites, valerts
}

func page[T any](xs []T, offset, size int) []T {
	if offset >= len(xs) {
		return nil
	}
	return xs[offset:min(offset+size, len(xs))]
}
