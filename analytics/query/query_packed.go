package query

import (
	"encoding/binary"
	"fmt"
	"math"
)

// An hour packed by the ingester (rollup_sealed; format in its migration) holds all of the
// hour's meter_hourly rows in one value and all its vehicle_hourly rows in another: rows one
// after another, ids as a 4-byte length and their bytes, floats and integers big-endian.

// packed reads the rows of one packed value.
type packed struct {
	b   []byte
	off int
	err error
}

func (p *packed) more() bool { return p.err == nil && p.off < len(p.b) }

func (p *packed) next(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n < 0 || len(p.b)-p.off < n {
		p.err = fmt.Errorf("packed rollup rows cut short at byte %d of %d", p.off, len(p.b))
		return nil
	}
	b := p.b[p.off : p.off+n : p.off+n]
	p.off += n
	return b
}

func (p *packed) int32() int32 {
	b := p.next(4)
	if b == nil {
		return 0
	}
	return int32(binary.BigEndian.Uint32(b))
}

func (p *packed) int64() int64 {
	b := p.next(8)
	if b == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func (p *packed) float64() float64 {
	b := p.next(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b))
}

// text is an id: its length, then its bytes (valid only as long as the packed value).
func (p *packed) text() []byte { return p.next(int(p.int32())) }

// packedMeters adds the meter_hourly rows packed in b to h.
func (r *rollupReader) packedMeters(h *HourRollups, b []byte) error {
	if b == nil {
		return fmt.Errorf("packed meter rows of %s: NULL", h.Hour)
	}
	p := packed{b: b}
	for p.more() {
		id := p.text()
		m := MeterAC{AC: p.int64(), VoltageSum: p.float64(), Readings: p.int32()}
		if p.err != nil {
			break
		}
		m.Meter = r.id(id)
		h.Meters.Append(m)
	}
	if p.err != nil {
		return fmt.Errorf("packed meter rows of %s: %w", h.Hour, p.err)
	}
	return nil
}

// packedVehicles adds the vehicle_hourly rows packed in b to h.
func (r *rollupReader) packedVehicles(h *HourRollups, b []byte) error {
	if b == nil {
		return fmt.Errorf("packed vehicle rows of %s: NULL", h.Hour)
	}
	p := packed{b: b}
	for p.more() {
		vehicle, meter := p.text(), p.text()
		v := VehicleDC{DC: p.int64(), TempSum: p.float64(), Readings: p.int32()}
		if p.err != nil {
			break
		}
		v.Vehicle, v.Meter = r.id(vehicle), r.id(meter)
		h.Vehicles.Append(v)
	}
	if p.err != nil {
		return fmt.Errorf("packed vehicle rows of %s: %w", h.Hour, p.err)
	}
	return nil
}
