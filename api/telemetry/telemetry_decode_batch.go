package telemetry

import (
	"strconv"
	"time"
)

// BatchFormat is the envelope of a batch of readings.
type BatchFormat uint8

const (
	// BatchJSON is one JSON array of reading objects (Content-Type application/json).
	BatchJSON BatchFormat = iota + 1
	// BatchNDJSON is one reading object per line (Content-Type application/x-ndjson); blank
	// lines are skipped and not counted.
	BatchNDJSON
)

// DefaultMaxBatchReadings is the largest batch a gateway accepts by default.
const DefaultMaxBatchReadings = 10_000

// BatchItem is one reading of a batch: its 0-based position among the batch's readings and
// either the decoded reading or why it was refused.
type BatchItem struct {
	Index   int
	Reading Reading
	Err     *Error
}

// DecodeBatch splits a batch into its readings and decodes each independently with
// DecodeReading, so one bad reading refuses only itself. The whole batch is refused as
// Malformed when its envelope is broken (not an array, an element whose extent cannot be
// found, data after the array), and as TooLarge when it holds more than maxReadings readings.
func DecodeBatch(data []byte, f BatchFormat, now time.Time, l Limits, maxReadings int) ([]BatchItem, *Error) {
	var items []BatchItem
	add := func(raw []byte) *Error {
		if len(items) >= maxReadings {
			return &Error{Class: TooLarge, Violations: []FieldViolation{{Description: "a batch may hold at most " + strconv.Itoa(maxReadings) + " readings"}}}
		}
		r, err := DecodeReading(raw, now, l)
		items = append(items, BatchItem{Index: len(items), Reading: r, Err: err})
		return nil
	}
	switch f {
	case BatchNDJSON:
		for start := 0; start < len(data); {
			end := start
			for end < len(data) && data[end] != '\n' {
				end++
			}
			line := data[start:end]
			start = end + 1
			if isBlank(line) {
				continue
			}
			if err := add(line); err != nil {
				return nil, err
			}
		}
		return items, nil
	case BatchJSON:
		if err := splitArray(data, add); err != nil {
			return nil, err
		}
		return items, nil
	default:
		return nil, malformed("", "unknown batch format %d", f)
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// splitArray calls fn with the raw bytes of each element of a JSON array. It checks only
// the envelope: elements are delimited by balancing brackets and skipping strings, and each
// is left to DecodeReading to judge.
func splitArray(data []byte, fn func([]byte) *Error) *Error {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(data) || data[d.pos] != '[' {
		return envelope(d.syntax("a JSON array of readings"))
	}
	d.pos++
	d.skipSpace()
	if d.pos < len(data) && data[d.pos] == ']' {
		d.pos++
	} else {
		for {
			d.skipSpace()
			start := d.pos
			if err := d.skipElement(); err != nil {
				return envelope(err)
			}
			if err := fn(data[start:d.pos]); err != nil {
				return err
			}
			d.skipSpace()
			if d.pos >= len(data) {
				return envelope(d.syntax("',' or ']'"))
			}
			if data[d.pos] == ']' {
				d.pos++
				break
			}
			if data[d.pos] != ',' {
				return envelope(d.syntax("',' or ']'"))
			}
			d.pos++
		}
	}
	d.skipSpace()
	if d.pos != len(data) {
		return malformed("", "unexpected data after the array at offset %d", d.pos)
	}
	return nil
}

func envelope(err *Error) *Error {
	for i := range err.Violations {
		err.Violations[i].Description = "batch envelope: " + err.Violations[i].Description
	}
	return err
}

// skipElement moves past one array element: a bracketed value (brackets balanced and
// matched, strings skipped) or a scalar token ending at a delimiter.
func (d *decoder) skipElement() *Error {
	b := d.data
	if d.pos >= len(b) {
		return d.syntax("an array element")
	}
	switch b[d.pos] {
	case ',', ']':
		return d.syntax("an array element")
	case '{', '[':
	default:
		for d.pos < len(b) {
			switch b[d.pos] {
			case ',', ']', ' ', '\t', '\n', '\r', '{', '}', '[':
				return nil
			case '"':
				if err := d.skipString(); err != nil {
					return err
				}
				continue
			}
			d.pos++
		}
		return nil
	}
	var buf [16]byte
	stack := buf[:0]
	for d.pos < len(b) {
		switch c := b[d.pos]; c {
		case '"':
			if err := d.skipString(); err != nil {
				return err
			}
			continue
		case '{':
			stack = append(stack, '}')
		case '[':
			stack = append(stack, ']')
		case '}', ']':
			if stack[len(stack)-1] != c {
				return d.syntax(quoteByte(stack[len(stack)-1]))
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				d.pos++
				return nil
			}
		}
		d.pos++
	}
	return d.syntax(quoteByte(stack[len(stack)-1]))
}

// skipString moves past a string starting at d.pos, honouring backslash escapes.
func (d *decoder) skipString() *Error {
	b := d.data
	for i := d.pos + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			d.pos = i + 1
			return nil
		}
	}
	d.pos = len(b)
	return d.syntax("'\"' closing the string")
}
