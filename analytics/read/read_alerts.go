package read

import (
	"slices"
	"sort"
	"strings"

	"github.com/fleetingest/fleetingest/analytics/attribution"
)

// VehicleMeter is a vehicle's DC attributed to one meter ("" for none) over whole hours,
// and its share of that meter's AC (attribution.Share, hour by hour).
type VehicleMeter struct {
	VehicleID, MeterID string
	AC, DC             int64
}

// AlertSums are what one shard holds of the alert question over whole hours, before the
// threshold: every meter's AC (meters with AC > 0), every (vehicle, meter)'s DC and share of
// the meter's AC, and the meter hours with AC but no DC attributed (to be split among the
// vehicles mapped to the meter then).
type AlertSums struct {
	MeterAC       map[string]int64
	VehicleMeters []VehicleMeter
	Unshared      []MeterHour
}

// alertSums adds hours up.
type alertSums struct {
	meterAC  map[string]int64
	pairs    map[[2]string]*VehicleMeter
	unshared []MeterHour
}

func newAlertSums() *alertSums {
	return &alertSums{meterAC: map[string]int64{}, pairs: map[[2]string]*VehicleMeter{}}
}

// add adds one whole hour: each meter's AC, each (vehicle, meter)'s DC and share.
func (a *alertSums) add(h *Hour) {
	for _, m := range h.Meters {
		a.meterAC[m.Meter] += m.AC
		var total int64
		h.attributed(m.Meter, func(v VehicleRow) { total += v.DC })
		if total == 0 && m.AC > 0 {
			a.unshared = append(a.unshared, MeterHour{MeterID: m.Meter, Hour: h.At, AC: m.AC})
		}
		h.attributed(m.Meter, func(v VehicleRow) { a.pair(v).AC += attribution.Share(m.AC, v.DC, total) })
	}
	for _, v := range h.Vehicles {
		a.pair(v).DC += v.DC
	}
}

func (a *alertSums) pair(v VehicleRow) *VehicleMeter {
	k := [2]string{v.Vehicle, v.Meter}
	p := a.pairs[k]
	if p == nil {
		p = &VehicleMeter{VehicleID: v.Vehicle, MeterID: v.Meter}
		a.pairs[k] = p
	}
	return p
}

func (a *alertSums) result() AlertSums {
	out := AlertSums{MeterAC: map[string]int64{}, Unshared: a.unshared}
	for m, ac := range a.meterAC {
		if ac > 0 {
			out.MeterAC[m] = ac
		}
	}
	for _, p := range a.pairs {
		out.VehicleMeters = append(out.VehicleMeters, *p)
	}
	return out
}

// SiteTotals is a meter's AC and the DC attributed to it over whole hours.
type SiteTotals struct {
	MeterID    string
	AC, DC     int64
	VehicleIDs []string
}

// VehicleTotals is a vehicle's DC on one shard over whole hours and the AC attributed to it
// there (hours where its meter had no DC are in AlertRows.Unshared instead).
type VehicleTotals struct {
	VehicleID string
	AC, DC    int64
	MeterIDs  []string
}

// AlertRows is what one shard contributes to the fleet alert question.
type AlertRows struct {
	// Sites whose DC/AC is below the threshold.
	Sites []SiteTotals
	// Every vehicle with readings on the shard in the hours.
	Vehicles []VehicleTotals
	// Meter hours with AC but no DC attributed.
	Unshared []MeterHour
}

// Rows applies the threshold: the sites below it, and every vehicle with its meters.
func (s AlertSums) Rows(threshold float64) AlertRows {
	out := AlertRows{Unshared: s.Unshared}
	vms := slices.Clone(s.VehicleMeters) // in (vehicle, meter) order, so every list is sorted
	slices.SortFunc(vms, func(a, b VehicleMeter) int {
		if c := strings.Compare(a.VehicleID, b.VehicleID); c != 0 {
			return c
		}
		return strings.Compare(a.MeterID, b.MeterID)
	})
	siteDC := map[string]int64{}
	siteVehicles := map[string][]string{}
	for i, vm := range vms {
		if i == 0 || vms[i-1].VehicleID != vm.VehicleID {
			out.Vehicles = append(out.Vehicles, VehicleTotals{VehicleID: vm.VehicleID})
		}
		v := &out.Vehicles[len(out.Vehicles)-1]
		v.AC += vm.AC
		v.DC += vm.DC
		if vm.MeterID != "" {
			v.MeterIDs = append(v.MeterIDs, vm.MeterID)
			siteDC[vm.MeterID] += vm.DC
			siteVehicles[vm.MeterID] = append(siteVehicles[vm.MeterID], vm.VehicleID)
		}
	}
	meters := make([]string, 0, len(s.MeterAC))
	for m := range s.MeterAC {
		meters = append(meters, m)
	}
	sort.Strings(meters)
	for _, m := range meters {
		ac, dc := s.MeterAC[m], siteDC[m]
		if float64(dc)/float64(ac) >= threshold {
			continue
		}
		ids := siteVehicles[m]
		if ids == nil {
			ids = []string{}
		}
		out.Sites = append(out.Sites, SiteTotals{MeterID: m, AC: ac, DC: dc, VehicleIDs: ids})
	}
	return out
}
