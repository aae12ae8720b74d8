package telemetry

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// Class says why a reading was refused: it could not be parsed, or it parsed but is not
// plausible (or, for a batch, holds too many readings). The HTTP surface maps them to 400,
// 422 and 413.
type Class uint8

const (
	// Malformed is a payload that does not parse: not JSON, wrong type, unknown field, both or neither id, bad id.
	Malformed Class = iota + 1
	// Implausible is a payload that parses, but a value is out of range or the timestamp too old or too new.
	Implausible
	// TooLarge is a batch that holds more readings than the receiver accepts (413).
	TooLarge
)

// FieldViolation names one bad field, as google.rpc.BadRequest.FieldViolation does.
type FieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// Error is a refused reading.
type Error struct {
	Class      Class
	Violations []FieldViolation
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		if v.Field == "" {
			parts[i] = v.Description
		} else {
			parts[i] = v.Field + ": " + v.Description
		}
	}
	return strings.Join(parts, "; ")
}

func malformed(field, format string, args ...any) *Error {
	return &Error{Class: Malformed, Violations: []FieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// Limits bound what is plausible in time. The zero value checks no time bounds (what an
// ingester, which has no receive time to compare with, uses); the gateway starts from
// DefaultLimits.
type Limits struct {
	// MaxLateness is how old a timestamp may be. Default 7 days.
	MaxLateness time.Duration
	// MaxFutureSkew is how far ahead of the receiver's clock a timestamp may be. Default 5 min.
	MaxFutureSkew time.Duration
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{MaxLateness: 7 * 24 * time.Hour, MaxFutureSkew: 5 * time.Minute}
}

// Plausible value ranges (inclusive).
const (
	MaxVoltage     = 2_000.0
	MinBatteryTemp = -60.0
	MaxBatteryTemp = 120.0
)

type violations []FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v *violations) between(field string, x, lo, hi float64) {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		v.add(field, "must be a finite number")
	case x < lo || x > hi:
		v.add(field, "must be between %g and %g, got %g", lo, hi, x)
	}
}

// maxStoredMWh is the largest energy a gateway of any version accepted in one reading (the
// previous version allowed 100,000 kWh): an ingester refuses no message a gateway accepted.
const maxStoredMWh = 100_000 * MWhPerKWh

// energy checks an energy in mWh against 0 kWh to maxMWh.
func (v *violations) energy(field string, mwh, maxMWh int64) {
	switch {
	case mwh < 0:
		v.add(field, "must not be negative")
	case mwh > maxMWh:
		v.add(field, "must be at most %d kWh in one reading", maxMWh/MWhPerKWh)
	}
}

// The timestamps any reading may have, whatever the clock: years 1970 to 9999. Besides being
// implausible, a time outside them may not fit the shard's timestamps or its day partitions,
// and a reading the database refuses would hold up its shard's ingester.
var (
	minTimestamp = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

func (v *violations) timestamp(micros int64, now time.Time, l Limits) {
	ts := time.UnixMicro(micros)
	if ts.Before(minTimestamp) || !ts.Before(maxTimestamp) {
		v.add("timestamp", "must be in the years 1970 to 9999")
		return
	}
	if l == (Limits{}) {
		return
	}
	switch {
	case ts.Before(now.Add(-l.MaxLateness)):
		v.add("timestamp", "is older than the accepted lateness of %s", l.MaxLateness)
	case ts.After(now.Add(l.MaxFutureSkew)):
		v.add("timestamp", "is more than %s in the future", l.MaxFutureSkew)
	}
}

// ValidateMeter checks a decoded meter reading against the id grammar and the limits.
func ValidateMeter(m *telemetrypb.MeterReading, now time.Time, l Limits) *Error {
	return validateMeter(m, now, l, MaxMWh)
}

func validateMeter(m *telemetrypb.MeterReading, now time.Time, l Limits, maxMWh int64) *Error {
	if !placement.ValidDeviceID(m.GetMeterId()) {
		return malformed("meterId", "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
	}
	var v violations
	v.energy("kwhConsumedAc", m.GetMwhConsumedAc(), maxMWh)
	v.between("voltage", m.GetVoltage(), 0, MaxVoltage)
	v.timestamp(m.GetTimestampMicros(), now, l)
	if len(v) > 0 {
		return &Error{Class: Implausible, Violations: v}
	}
	return nil
}

// ValidateVehicle checks a decoded vehicle reading against the id grammar and the limits.
func ValidateVehicle(r *telemetrypb.VehicleReading, now time.Time, l Limits) *Error {
	return validateVehicle(r, now, l, MaxMWh)
}

func validateVehicle(r *telemetrypb.VehicleReading, now time.Time, l Limits, maxMWh int64) *Error {
	if !placement.ValidDeviceID(r.GetVehicleId()) {
		return malformed("vehicleId", "must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
	}
	var v violations
	v.between("soc", r.GetSoc(), 0, 100)
	v.energy("kwhDeliveredDc", r.GetMwhDeliveredDc(), maxMWh)
	v.between("batteryTemp", r.GetBatteryTemp(), MinBatteryTemp, MaxBatteryTemp)
	v.timestamp(r.GetTimestampMicros(), now, l)
	if len(v) > 0 {
		return &Error{Class: Implausible, Violations: v}
	}
	return nil
}

// CheckBatch checks what an ingester can check of a stream message without a clock: ids of
// the right grammar, values in range and timestamps in the years 1970 to 9999. It refuses the whole message on the first bad one.
func CheckBatch(b *telemetrypb.ReadingBatch) error {
	for i, m := range b.GetMeters() {
		if err := validateMeter(m, time.Time{}, Limits{}, maxStoredMWh); err != nil {
			return fmt.Errorf("meter reading %d: %w", i, err)
		}
	}
	for i, r := range b.GetVehicles() {
		if err := validateVehicle(r, time.Time{}, Limits{}, maxStoredMWh); err != nil {
			return fmt.Errorf("vehicle reading %d: %w", i, err)
		}
		if m := r.GetMeterId(); m != "" && !placement.ValidDeviceID(m) {
			return fmt.Errorf("vehicle reading %d: %w", i, malformed("meterId", "attributed meter id %q is not a device id", m))
		}
	}
	return nil
}
