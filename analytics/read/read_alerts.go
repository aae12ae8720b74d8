package read

import (
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
