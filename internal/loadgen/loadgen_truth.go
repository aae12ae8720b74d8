package loadgen

import (
	"slices"
	"sync/atomic"
)

// Truth is what the fleet alerts should say about a run's accepted readings, at
// FaultThreshold over hours that hold the whole run.
type Truth struct {
	// FaultyMeters are the chargers whose accepted DC (of the vehicles charging there)
	// over accepted AC is below FaultThreshold, among those with AC.
	FaultyMeters []string `json:"faultyMeters"`
	// FaultyVehicles are the vehicles with accepted DC that charged only at such chargers.
	FaultyVehicles []string `json:"faultyVehicles"`
}

// truth derives the Truth from the energy accepted per device (mWh, chargers first). A
// vehicle keeps its one charger, so its efficiency is its charger's.
func (f *fleet) truth(cfg Config, accepted []atomic.Int64) Truth {
	t := Truth{FaultyMeters: []string{}, FaultyVehicles: []string{}}
	meters := len(f.chargers)
	for c := range f.chargers {
		ac, dc := accepted[c].Load(), int64(0)
		for _, v := range f.chargers[c].vehicles {
			dc += accepted[meters+v].Load()
		}
		if ac == 0 || float64(dc) >= FaultThreshold*float64(ac) {
			continue
		}
		t.FaultyMeters = append(t.FaultyMeters, cfg.meterID(c))
		for _, v := range f.chargers[c].vehicles {
			if accepted[meters+v].Load() > 0 {
				t.FaultyVehicles = append(t.FaultyVehicles, cfg.vehicleID(v))
			}
		}
	}
	slices.Sort(t.FaultyMeters)
	slices.Sort(t.FaultyVehicles)
	return t
}
