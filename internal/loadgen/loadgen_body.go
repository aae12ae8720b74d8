package loadgen

import (
	"math"
	"strconv"
	"time"
)

// encoder writes readings as the gateway's JSON, from each device's head (the id and the
// field that follows it) built once.
type encoder struct {
	heads  [][]byte
	meters int
}

func newEncoder(cfg Config) *encoder {
	e := &encoder{heads: make([][]byte, 0, cfg.devices()), meters: cfg.Meters}
	for i := range cfg.Meters {
		e.heads = append(e.heads, []byte(`{"meterId":"`+cfg.meterID(i)+`","kwhConsumedAc":`))
	}
	for i := range cfg.Vehicles {
		e.heads = append(e.heads, []byte(`{"vehicleId":"`+cfg.vehicleID(i)+`","soc":`))
	}
	return e
}

// appendTail appends what ends every reading of an interval stamped at: its timestamp.
func appendTail(dst []byte, at time.Time) []byte {
	dst = append(dst, `,"timestamp":"`...)
	dst = at.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}

// append appends reading r, ended by tail (appendTail of its interval).
func (e *encoder) append(dst []byte, r *reading, tail []byte) []byte {
	dst = append(dst, e.heads[r.device]...)
	if r.device < e.meters {
		dst = appendKWh(dst, r.mwh)
		dst = append(dst, `,"voltage":`...)
		dst = appendTenths(dst, r.voltage)
	} else {
		dst = appendTenths(dst, r.soc)
		dst = append(dst, `,"kwhDeliveredDc":`...)
		dst = appendKWh(dst, r.mwh)
		dst = append(dst, `,"batteryTemp":`...)
		dst = appendTenths(dst, r.temp)
	}
	return append(dst, tail...)
}

// appendKWh appends mwh (≥ 0) in kWh with its exact decimals (at most 6).
func appendKWh(dst []byte, mwh int64) []byte {
	dst = strconv.AppendInt(dst, mwh/mwhPerKWh, 10)
	frac := mwh % mwhPerKWh
	if frac == 0 {
		return dst
	}
	var digits [6]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, digits[:n]...)
}

// appendTenths appends x rounded to one decimal.
func appendTenths(dst []byte, x float64) []byte {
	t := int64(math.Round(x * 10))
	if t < 0 {
		dst = append(dst, '-')
		t = -t
	}
	dst = strconv.AppendInt(dst, t/10, 10)
	return append(dst, '.', byte('0'+t%10))
}
