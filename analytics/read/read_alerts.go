package read

import (
	"sync/atomic"

	"github.com/fleetingest/fleetingest/analytics/attribution"
)

// VehicleMeter is a vehicle's DC attributed to one meter ("" for none) over whole hours,
// and its share of that meter's AC (attribution.Share, hour by hour).
type VehicleMeter struct {
	VehicleID, MeterID string
	AC, DC             int64
}

// AlertSums are one shard's part of the alert question over whole hours, before the
// threshold: every meter's AC, every (vehicle, meter)'s DC and share of it, and the meter
// hours with AC but no DC (split among the vehicles mapped then). Never changed once made.
type AlertSums struct {
	MeterAC map[string]int64
	// Pairs are by [vehicle, meter].
	Pairs    map[[2]string]*VehicleMeter
	Unshared []MeterHour
	// Split are the rows of the hours asked as split: each shard holds a part of them.
	Split []*Hour
	// Made identifies sums made from memory (0 for sums read from Postgres), unique across
	// shards and windows: a shard returns the same Made for the same window and split while
	// its hours stay at the versions the sums were made of.
	Made uint64
}

// made numbers the sums made from memory, for AlertSums.Made.
var made atomic.Uint64

func newAlertSums() *AlertSums {
	return &AlertSums{MeterAC: map[string]int64{}, Pairs: map[[2]string]*VehicleMeter{}}
}

// add adds one whole hour: each meter's AC, each (vehicle, meter)'s DC and share.
func (a *AlertSums) add(h *Hour) {
	for _, m := range h.Meters {
		a.MeterAC[m.Meter] += m.AC
		_, total, _ := h.MeterDC(m.Meter, "")
		if total == 0 && m.AC > 0 {
			a.Unshared = append(a.Unshared, MeterHour{MeterID: m.Meter, Hour: h.At, AC: m.AC})
		}
		h.Attributed(m.Meter, func(v VehicleRow) { a.pair(v).AC += attribution.Share(m.AC, v.DC, total) })
	}
	for _, v := range h.Vehicles {
		a.pair(v).DC += v.DC
	}
}

func (a *AlertSums) pair(v VehicleRow) *VehicleMeter {
	k := [2]string{v.Vehicle, v.Meter}
	p := a.Pairs[k]
	if p == nil {
		p = &VehicleMeter{VehicleID: v.Vehicle, MeterID: v.Meter}
		a.Pairs[k] = p
	}
	return p
}

// MergeAlertSums adds up the shards' sums; the parts of a split hour first row by row (Merge),
// then shared as any whole hour.
func MergeAlertSums(parts []AlertSums) AlertSums {
	a := newAlertSums()
	var split []*Hour
	for _, p := range parts {
		for m, ac := range p.MeterAC {
			a.MeterAC[m] += ac
		}
		for _, vm := range p.Pairs {
			pair := a.pair(VehicleRow{Vehicle: vm.VehicleID, Meter: vm.MeterID})
			pair.AC += vm.AC
			pair.DC += vm.DC
		}
		a.Unshared = append(a.Unshared, p.Unshared...)
		split = append(split, p.Split...)
	}
	for _, h := range Merge(split, nil) {
		a.add(h)
	}
	return *a
}
