package query

import (
	"time"
)

// VehicleCollector groups the rows of a per-vehicle question on one shard — whole hours and
// the window's part of its edge hours, read by the statement or from memory — into
// VehicleRows: the vehicle's own DC by hour and meter, and for the hours of each meter span
// the meter's AC and the DC of every vehicle attributed to it.
type VehicleCollector struct {
	vehicleID string
	meters    []MeterSpan
	out       VehicleRows
	dcs       map[collectKey]int // index in out.DC
}

type collectKey struct {
	meter string
	hour  time.Time
}

// NewVehicleCollector collects vehicleID's rows for the meter spans on one shard; hours is
// how many hours the window touches (a capacity hint).
func NewVehicleCollector(vehicleID string, meters []MeterSpan, hours int) *VehicleCollector {
	c := &VehicleCollector{vehicleID: vehicleID, meters: meters}
	c.out.Own = make([]HourDC, 0, hours)
	c.out.AC = make([]MeterHour, 0, hours*len(meters))
	c.out.DC = make([]MeterDC, 0, hours*len(meters))
	return c
}

// VehicleRow adds a vehicle's DC attributed to meter ("" for none) in hour (the window's
// part of it). Every (vehicle, meter, hour) is added once.
func (c *VehicleCollector) VehicleRow(vehicle, meter string, hour time.Time, dc int64, tempSum float64, readings int) {
	if vehicle == c.vehicleID {
		c.out.Own = append(c.out.Own, HourDC{MeterID: meter, VehicleID: vehicle, Hour: hour, DC: dc, TempSum: tempSum, Readings: readings})
	}
	if meter == "" || !inSpan(c.meters, meter, hour) {
		return
	}
	d := c.meterDC(meter, hour)
	d.Total += dc
	d.Vehicles++
	d.Includes = d.Includes || vehicle == c.vehicleID
}

// Own adds a row of the vehicle's own DC in hour (the window's part of it) attributed to
// meter, without adding it to the meter's DC (see MeterDC).
func (c *VehicleCollector) Own(meter string, hour time.Time, dc int64, tempSum float64, readings int) {
	c.out.Own = append(c.out.Own, HourDC{MeterID: meter, VehicleID: c.vehicleID, Hour: hour, DC: dc, TempSum: tempSum, Readings: readings})
}

// MeterDC adds the DC attributed to meter in hour by all its vehicles, summed already: total
// over vehicles (the number of vehicles), includes telling whether the asked vehicle is one.
// It is left out outside the meter's spans. A (meter, hour) given here is given once, and
// never in VehicleRow.
func (c *VehicleCollector) MeterDC(meter string, hour time.Time, total int64, vehicles int, includes bool) {
	if inSpan(c.meters, meter, hour) {
		c.out.DC = append(c.out.DC, MeterDC{MeterID: meter, Hour: hour, Total: total, Vehicles: vehicles, Includes: includes})
	}
}

// meterDC is the DC entry of (meter, hour), added on first use.
func (c *VehicleCollector) meterDC(meter string, hour time.Time) *MeterDC {
	if c.dcs == nil {
		c.dcs = map[collectKey]int{}
	}
	k := collectKey{meter, hour}
	i, ok := c.dcs[k]
	if !ok {
		i = len(c.out.DC)
		c.dcs[k] = i
		c.out.DC = append(c.out.DC, MeterDC{MeterID: meter, Hour: hour})
	}
	return &c.out.DC[i]
}

// MeterRow adds a meter's AC in hour (the window's part of it); rows outside the meter's
// spans are left out.
func (c *VehicleCollector) MeterRow(meter string, hour time.Time, ac int64, voltageSum float64, readings int) {
	if inSpan(c.meters, meter, hour) {
		c.out.AC = append(c.out.AC, MeterHour{MeterID: meter, Hour: hour, AC: ac, VoltageSum: voltageSum, Readings: readings})
	}
}

// Rows is what was collected.
func (c *VehicleCollector) Rows() VehicleRows { return c.out }
