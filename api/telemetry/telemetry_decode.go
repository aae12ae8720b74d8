package telemetry

import (
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// JSON field names of the two device payloads.
const (
	FieldMeterID        = "meterId"
	FieldVehicleID      = "vehicleId"
	FieldTimestamp      = "timestamp"
	FieldKwhConsumedAc  = "kwhConsumedAc"
	FieldVoltage        = "voltage"
	FieldSoc            = "soc"
	FieldKwhDeliveredDc = "kwhDeliveredDc"
	FieldBatteryTemp    = "batteryTemp"
)

// field indexes a payload field; fieldSet is a bit set of them.
type field uint8

const (
	fMeterID field = iota
	fVehicleID
	fTimestamp
	fKwhConsumedAc
	fVoltage
	fSoc
	fKwhDeliveredDc
	fBatteryTemp
	numFields
)

type fieldSet uint16

func (s fieldSet) has(f field) bool { return s&(1<<f) != 0 }

var fieldNames = [numFields]string{
	FieldMeterID, FieldVehicleID, FieldTimestamp, FieldKwhConsumedAc, FieldVoltage,
	FieldSoc, FieldKwhDeliveredDc, FieldBatteryTemp,
}

// The fields of each kind, in the order missing ones are reported.
var (
	meterFields   = []field{fMeterID, fKwhConsumedAc, fVoltage, fTimestamp}
	vehicleFields = []field{fVehicleID, fSoc, fKwhDeliveredDc, fBatteryTemp, fTimestamp}
)

const (
	meterSet   = fieldSet(1<<fMeterID | 1<<fKwhConsumedAc | 1<<fVoltage | 1<<fTimestamp)
	vehicleSet = fieldSet(1<<fVehicleID | 1<<fSoc | 1<<fKwhDeliveredDc | 1<<fBatteryTemp | 1<<fTimestamp)
)

func lookupField(key []byte) (field, bool) {
	switch string(key) {
	case FieldMeterID:
		return fMeterID, true
	case FieldVehicleID:
		return fVehicleID, true
	case FieldTimestamp:
		return fTimestamp, true
	case FieldKwhConsumedAc:
		return fKwhConsumedAc, true
	case FieldVoltage:
		return fVoltage, true
	case FieldSoc:
		return fSoc, true
	case FieldKwhDeliveredDc:
		return fKwhDeliveredDc, true
	case FieldBatteryTemp:
		return fBatteryTemp, true
	}
	return 0, false
}

// payload is what the object decoder saw, before the kind is decided.
type payload struct {
	seen   fieldSet
	id     [2]string // meterId, vehicleId
	ts     int64     // Unix microseconds
	values [numFields]float64
	mwh    int64 // the energy field's value (consumed AC or delivered DC), in mWh
}

// DecodeReading strictly decodes one device reading (a JSON object of either kind) and
// validates it against l at the receiver's clock now.
//
// It refuses, as Malformed: anything that is not one JSON object (with only whitespace
// around it), a value of the wrong type (null included), an unknown or repeated field, a
// missing field, both or neither of meterId and vehicleId, a field of the other kind, an id
// outside the device-id grammar, and a timestamp that is not RFC 3339. It refuses as
// Implausible what ValidateMeter and ValidateVehicle refuse. Timestamps are truncated to
// whole microseconds (the stream and store precision).
func DecodeReading(data []byte, now time.Time, l Limits) (Reading, *Error) {
	d := decoder{data: data}
	var p payload
	d.skipSpace()
	if err := d.object(&p); err != nil {
		return Reading{}, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return Reading{}, malformed("", "unexpected data after the reading at offset %d", d.pos)
	}
	return p.reading(now, l)
}

func (p *payload) reading(now time.Time, l Limits) (Reading, *Error) {
	isMeter, isVehicle := p.seen.has(fMeterID), p.seen.has(fVehicleID)
	switch {
	case isMeter && isVehicle:
		return Reading{}, &Error{Class: Malformed, Violations: []FieldViolation{
			{Field: FieldMeterID, Description: "only one of meterId and vehicleId may be present"},
			{Field: FieldVehicleID, Description: "only one of meterId and vehicleId may be present"},
		}}
	case !isMeter && !isVehicle:
		return Reading{}, &Error{Class: Malformed, Violations: []FieldViolation{
			{Field: FieldMeterID, Description: "one of meterId and vehicleId is required"},
			{Field: FieldVehicleID, Description: "one of meterId and vehicleId is required"},
		}}
	}
	want, fields, kind := meterSet, meterFields, KindMeter
	if isVehicle {
		want, fields, kind = vehicleSet, vehicleFields, KindVehicle
	}
	var v violations
	if extra := p.seen &^ want; extra != 0 {
		for f := field(0); f < numFields; f++ {
			if extra.has(f) {
				v.add(fieldNames[f], "is not a field of a %s reading", kind)
			}
		}
	}
	for _, f := range fields {
		if !p.seen.has(f) {
			v.add(fieldNames[f], "is required")
		}
	}
	if len(v) > 0 {
		return Reading{}, &Error{Class: Malformed, Violations: v}
	}
	if isMeter {
		m := &telemetrypb.MeterReading{
			MeterId:         p.id[0],
			MwhConsumedAc:   p.mwh,
			KwhConsumedAc:   KWh(p.mwh), //nolint:staticcheck // written for ingesters of the previous version
			Voltage:         p.values[fVoltage],
			TimestampMicros: p.ts,
		}
		if err := ValidateMeter(m, now, l); err != nil {
			return Reading{}, err
		}
		return Reading{Meter: m}, nil
	}
	r := &telemetrypb.VehicleReading{
		VehicleId:       p.id[1],
		Soc:             p.values[fSoc],
		MwhDeliveredDc:  p.mwh,
		KwhDeliveredDc:  KWh(p.mwh), //nolint:staticcheck // written for ingesters of the previous version
		BatteryTemp:     p.values[fBatteryTemp],
		TimestampMicros: p.ts,
	}
	if err := ValidateVehicle(r, now, l); err != nil {
		return Reading{}, err
	}
	return Reading{Vehicle: r}, nil
}

// decoder is a small JSON tokenizer over one payload. It never allocates on the success path
// except for the id strings it returns.
type decoder struct {
	data    []byte
	pos     int
	scratch []byte
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) syntax(what string) *Error {
	if d.pos >= len(d.data) {
		return malformed("", "invalid JSON: unexpected end of input, expected %s", what)
	}
	return malformed("", "invalid JSON at offset %d: expected %s, found %s", d.pos, what, quoteByte(d.data[d.pos]))
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

// object decodes the one JSON object of a payload into p.
func (d *decoder) object(p *payload) *Error {
	if d.pos >= len(d.data) || d.data[d.pos] != '{' {
		return d.syntax("a JSON object")
	}
	d.pos++
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return d.syntax("a field name")
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		f, known := lookupField(key)
		if !known {
			return malformed(displayKey(key), "unknown field")
		}
		if p.seen.has(f) {
			return malformed(fieldNames[f], "appears more than once")
		}
		p.seen |= 1 << f
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return d.syntax("':'")
		}
		d.pos++
		d.skipSpace()
		if err := d.value(p, f); err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return d.syntax("',' or '}'")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.syntax("',' or '}'")
		}
	}
}

// value decodes the value of field f.
func (d *decoder) value(p *payload, f field) *Error {
	name := fieldNames[f]
	if d.pos >= len(d.data) {
		return d.syntax("a value")
	}
	c := d.data[d.pos]
	switch f {
	case fMeterID, fVehicleID, fTimestamp:
		if c != '"' {
			if t := jsonType(c); t != "" {
				return malformed(name, "must be a string, got %s", t)
			}
			return d.syntax("a value")
		}
		s, err := d.str()
		if err != nil {
			return err
		}
		if f == fTimestamp {
			ts, ok := parseRFC3339Micros(s)
			if !ok {
				return malformed(name, "must be an RFC 3339 timestamp such as 2026-11-20T08:00:00Z")
			}
			p.ts = ts
			return nil
		}
		p.id[f] = string(s)
		return nil
	default:
		if c != '-' && (c < '0' || c > '9') {
			if t := jsonType(c); t != "" {
				return malformed(name, "must be a number, got %s", t)
			}
			return d.syntax("a value")
		}
		if f == fKwhConsumedAc || f == fKwhDeliveredDc {
			text, err := d.scanNumber()
			if err != nil {
				return err
			}
			switch mwh, kind := parseMWh(text); kind {
			case energyNegative:
				p.mwh = -1 // refused by validation as below zero
			case energyTooLarge:
				p.mwh = MaxMWh + 1 // refused by validation as above the maximum
			default:
				p.mwh = mwh
			}
			return nil
		}
		x, err := d.number()
		if err != nil {
			return err
		}
		p.values[f] = x
		return nil
	}
}

// jsonType names the JSON type a value starting with c has, or "" if no value starts so.
func jsonType(c byte) string {
	switch c {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return ""
}

// number scans a JSON number (RFC 8259 grammar) and parses it. A number too large for a
// float64 becomes ±Inf, which validation refuses as not finite.
func (d *decoder) number() (float64, *Error) {
	text, derr := d.scanNumber()
	if derr != nil {
		return 0, derr
	}
	x, err := strconv.ParseFloat(string(text), 64)
	if err != nil && !math.IsInf(x, 0) {
		return 0, malformed("", "invalid number at offset %d", d.pos-len(text))
	}
	return x, nil
}

// scanNumber scans a JSON number (RFC 8259 grammar) and returns its text.
func (d *decoder) scanNumber() ([]byte, *Error) {
	start := d.pos
	b := d.data
	i := d.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, d.syntax("a digit")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			return nil, d.syntax("a digit after the decimal point")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			return nil, d.syntax("a digit in the exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return b[start:i], nil
}

// str scans a JSON string at d.pos and returns its decoded bytes. The result aliases the
// input when the string holds no escape, and the decoder's scratch buffer otherwise: it is
// valid until the next call.
func (d *decoder) str() ([]byte, *Error) {
	b := d.data
	start := d.pos + 1
	i := start
	ascii := true
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.pos = i + 1
			if !ascii && !utf8.Valid(b[start:i]) {
				return nil, malformed("", "invalid JSON: string at offset %d is not valid UTF-8", start-1)
			}
			return b[start:i], nil
		case c == '\\':
			return d.escapedStr(start)
		case c < 0x20:
			d.pos = i
			return nil, d.syntax("a string character (control characters must be escaped)")
		case c >= 0x80:
			ascii = false
		}
		i++
	}
	d.pos = i
	return nil, d.syntax("'\"' closing the string")
}

// escapedStr is the slow path of str for strings that hold escapes.
func (d *decoder) escapedStr(start int) ([]byte, *Error) {
	b := d.data
	out := d.scratch[:0]
	i := start
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.pos = i + 1
			d.scratch = out
			if !utf8.Valid(out) {
				return nil, malformed("", "invalid JSON: string at offset %d is not valid UTF-8", start-1)
			}
			return out, nil
		case c < 0x20:
			d.pos = i
			return nil, d.syntax("a string character (control characters must be escaped)")
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		i++
		if i >= len(b) {
			d.pos = i
			return nil, d.syntax("an escape character")
		}
		switch b[i] {
		case '"', '\\', '/':
			out = append(out, b[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n, ok := hex4(b[i+1:])
			if !ok {
				d.pos = i + 1
				return nil, d.syntax("four hex digits after \\u")
			}
			i += n
			if utf16.IsSurrogate(r) {
				// A high surrogate pairs with a following \uXXXX low surrogate; a lone one
				// decodes to U+FFFD, as encoding/json does.
				if i+2 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if r2, n2, ok := hex4(b[i+3:]); ok {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
							i += 2 + n2
						} else {
							r = utf8.RuneError
						}
					}
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			d.pos = i
			return nil, d.syntax("a valid escape character")
		}
		i++
	}
	d.pos = i
	d.scratch = out
	return nil, d.syntax("'\"' closing the string")
}

func hex4(b []byte) (rune, int, bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, 4, true
}

// displayKey makes an unknown field name safe to echo: valid UTF-8, at most 64 bytes.
func displayKey(key []byte) string {
	const maxLen = 64
	if len(key) > maxLen {
		key = key[:maxLen]
		for len(key) > 0 && !utf8.Valid(key) {
			key = key[:len(key)-1]
		}
		return string(key) + "…"
	}
	return string(key)
}

// parseRFC3339Micros parses an RFC 3339 date-time (2006-01-02T15:04:05[.frac](Z|±hh:mm)),
// exactly the strings time.Parse(time.RFC3339, …) accepts on its fast path, into Unix
// microseconds, truncating sub-microsecond digits.
func parseRFC3339Micros(s []byte) (int64, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return 0, false
	}
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	year, ok1 := digits(s[0:4], 0, 9999)
	month, ok2 := digits(s[5:7], 1, 12)
	hour, ok3 := digits(s[11:13], 0, 23)
	minute, ok4 := digits(s[14:16], 0, 59)
	sec, ok5 := digits(s[17:19], 0, 59)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return 0, false
	}
	day, ok := digits(s[8:10], 1, daysIn(month, year))
	if !ok {
		return 0, false
	}
	rest := s[19:]
	var micros int64
	if len(rest) >= 2 && rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			if n <= 6 {
				micros = micros*10 + int64(rest[n]-'0')
			}
			n++
		}
		for k := n; k <= 6; k++ {
			micros *= 10
		}
		rest = rest[n:]
	}
	var offset int64
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		hh, okh := digits(rest[1:3], 0, 23)
		mm, okm := digits(rest[4:6], 0, 59)
		if !okh || !okm {
			return 0, false
		}
		offset = int64(hh*60+mm) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	unix := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC).Unix() - offset
	return unix*1_000_000 + micros, true
}

func digits(s []byte, lo, hi int) (int, bool) {
	x := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		x = x*10 + int(c-'0')
	}
	return x, x >= lo && x <= hi
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
