package loadgen

import (
	"math"
	"math/rand/v2"
)

// Physical constants of the simulation.
const (
	// taperFrom is the state of charge (%) above which charging power tapers, to
	// taperFloor of the rating at 100 %.
	taperFrom, taperFloor = 80.0, 0.15
	// heatPerKW is how far above ambient (°C) a battery settles per kW of charging power,
	// and warmMinutes the time constant it gets there with.
	heatPerKW, warmMinutes = 0.35, 20.0
	// sagPerKW is the voltage drop at a charger per kW drawn from the grid.
	sagPerKW = 0.08
	// mwhPerKWh converts energies.
	mwhPerKWh = 1_000_000
)

// charger is a meter: the grid connection of a charging site, which one or more vehicles
// charge at.
type charger struct {
	efficiency float64
	faulty     bool
	// powerKW is the rating of each of its connectors.
	powerKW float64
	// voltage is the site's nominal voltage.
	voltage float64
	// vehicles are the indices of the vehicles that charge here.
	vehicles []int
	// dcMWh and acMWh are what its vehicles and it have reported so far.
	dcMWh, acMWh int64
}

// consume turns the DC its vehicles drew in an interval into the AC of its reading:
// rounded from the running total, so the remainder is carried to the next reading and the
// totals keep DC/AC = efficiency to within 1 mWh.
func (c *charger) consume(dcMWh int64) int64 {
	c.dcMWh += dcMWh
	ac := int64(math.Round(float64(c.dcMWh)/c.efficiency)) - c.acMWh
	c.acMWh += ac
	return ac
}

// vehicle is an EV that plugs in once in the run.
type vehicle struct {
	charger     int
	capacityKWh float64
	powerKW     float64 // the most it accepts
	soc, target float64 // state of charge now and where charging stops, %
	temp        float64 // battery temperature, °C
	ambient     float64
	// from and to bound the time it is plugged in, in intervals: [from, to).
	from, to int
	// carry is the energy charged and not reported yet, in mWh (less than 1).
	carry float64
}

// charge advances the vehicle by one interval k of hours at a charger of chargerKW, and
// returns the whole mWh to report and the mean power drawn.
func (v *vehicle) charge(k int, chargerKW, hours, warm float64) (mwh int64, kw float64) {
	if k >= v.from && k < v.to && v.soc < v.target {
		kw = min(chargerKW, v.powerKW) * taper(v.soc)
		kwh := min(kw*hours, (v.target-v.soc)/100*v.capacityKWh)
		v.soc = min(v.soc+kwh/v.capacityKWh*100, 100)
		exact := kwh*mwhPerKWh + v.carry
		mwh = int64(exact)
		v.carry = exact - float64(mwh)
		kw = kwh / hours
	}
	v.temp += (v.ambient + heatPerKW*kw - v.temp) * warm
	return mwh, kw
}

// taper is the share of its rating a battery accepts at soc %.
func taper(soc float64) float64 {
	if soc <= taperFrom {
		return 1
	}
	return 1 - (1-taperFloor)*(soc-taperFrom)/(100-taperFrom)
}

// reading is what one device reports for one interval.
type reading struct {
	// device indexes the run's devices: chargers first (0 … Meters-1), then vehicles.
	device int
	mwh    int64
	// soc and temp of a vehicle, voltage of a charger.
	soc, temp, voltage float64
}

// fleet is the state of every device, advanced one interval at a time.
type fleet struct {
	chargers  []charger
	vehicles  []vehicle
	intervals int
	hours     float64 // one interval
	warm      float64 // the share of the way to its settled temperature a battery goes in one interval
	rng       *rand.Rand
}

// newFleet draws the fleet of cfg (defaults applied) from its seed: the chargers, which
// of them are faulty, the vehicles and when they plug in.
func newFleet(cfg Config) *fleet {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	f := &fleet{
		chargers:  make([]charger, cfg.Meters),
		vehicles:  make([]vehicle, cfg.Vehicles),
		intervals: cfg.intervals(),
		hours:     cfg.Interval.Hours(),
		rng:       rng,
	}
	f.warm = 1 - math.Exp(-cfg.Interval.Minutes()/warmMinutes)
	faulty := int(math.Round(cfg.Faulty * float64(cfg.Meters)))
	for i, c := range rng.Perm(cfg.Meters) {
		ch := &f.chargers[c]
		ch.faulty = i < faulty
		lo, hi := HealthyEfficiencyMin, HealthyEfficiencyMax
		if ch.faulty {
			lo, hi = FaultyEfficiencyMin, FaultyEfficiencyMax
		}
		ch.efficiency = between(rng, lo, hi)
		ch.powerKW = between(rng, 7, 22)
		ch.voltage = between(rng, 226, 234)
	}
	// A vehicle is plugged in for a quarter to a half of the run, so every one charges.
	shortest := max(1, (f.intervals+3)/4)
	longest := max(shortest, f.intervals/2)
	for i := range f.vehicles {
		v := &f.vehicles[i]
		v.charger = i % cfg.Meters
		f.chargers[v.charger].vehicles = append(f.chargers[v.charger].vehicles, i)
		v.capacityKWh = between(rng, 40, 100)
		v.powerKW = between(rng, 11, 50)
		v.soc = between(rng, 10, 50)
		v.target = between(rng, 80, 100)
		v.ambient = between(rng, 5, 30)
		v.temp = v.ambient
		length := shortest + rng.IntN(longest-shortest+1)
		v.from = rng.IntN(max(f.intervals-length, 0) + 1)
		v.to = v.from + length
	}
	return f
}

func between(rng *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }

// step advances every device by interval k and appends their readings to out, charger by
// charger: the readings of its vehicles, then its own.
func (f *fleet) step(k int, out []reading) []reading {
	meters := len(f.chargers)
	for c := range f.chargers {
		ch := &f.chargers[c]
		var dc int64
		var kw float64
		for _, i := range ch.vehicles {
			v := &f.vehicles[i]
			mwh, p := v.charge(k, ch.powerKW, f.hours, f.warm)
			dc += mwh
			kw += p
			out = append(out, reading{device: meters + i, mwh: mwh, soc: v.soc, temp: v.temp})
		}
		volts := ch.voltage - sagPerKW*kw/ch.efficiency + (f.rng.Float64()-0.5)*0.6
		out = append(out, reading{device: c, mwh: ch.consume(dc), voltage: volts})
	}
	return out
}

// faultyChargers counts the chargers drawn faulty.
func (f *fleet) faultyChargers() int {
	n := 0
	for i := range f.chargers {
		if f.chargers[i].faulty {
			n++
		}
	}
	return n
}
