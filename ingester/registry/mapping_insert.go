package registry

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidInterval is returned for an interval without a start or whose end is not after
// its start.
var ErrInvalidInterval = errors.New("invalid interval")

// OverlapError is returned for an interval to write that shares an instant with one the
// vehicle already has.
type OverlapError struct {
	// Interval is the interval that was to be written.
	Interval Interval
	// Existing is the vehicle's interval it overlaps (the earliest one, if several).
	Existing Interval
}

func (e *OverlapError) Error() string {
	if e.Interval.To == nil && e.Existing.From.After(e.Interval.From) {
		return fmt.Sprintf("%s would run into the vehicle's later interval %s: an open interval may only start after all of the vehicle's intervals", e.Interval, e.Existing)
	}
	return fmt.Sprintf("%s overlaps the vehicle's interval %s", e.Interval, e.Existing)
}

// String renders the interval as "[from, to) on meter", with "open" for an open end.
func (iv Interval) String() string {
	to := "open"
	if iv.To != nil {
		to = iv.To.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("[%s, %s) on %s", iv.From.UTC().Format(time.RFC3339Nano), to, iv.MeterID)
}

// Overlaps reports whether iv and o share an instant.
func (iv Interval) Overlaps(o Interval) bool {
	return (o.To == nil || iv.From.Before(*o.To)) && (iv.To == nil || o.From.Before(*iv.To))
}

// Equal reports whether iv and o are the same interval on the same meter.
func (iv Interval) Equal(o Interval) bool {
	if iv.MeterID != o.MeterID || !iv.From.Equal(o.From) || (iv.To == nil) != (o.To == nil) {
		return false
	}
	return iv.To == nil || iv.To.Equal(*o.To)
}

// valid checks that the interval has a start, a meter and an end after its start.
func (iv Interval) valid() error {
	switch {
	case iv.MeterID == "":
		return fmt.Errorf("interval without a meter: %w", ErrInvalidInterval)
	case iv.From.IsZero():
		return fmt.Errorf("interval without a start: %w", ErrInvalidInterval)
	case iv.To != nil && !iv.To.After(iv.From):
		return fmt.Errorf("%s ends before it starts: %w", iv, ErrInvalidInterval)
	}
	return nil
}

// insertInterval returns ivs (sorted by From, disjoint) with iv inserted in its place, so
// the result is sorted and disjoint too; ivs itself is not modified. When ivs already hold
// exactly iv, it returns ivs and inserted false (writing an interval twice is no change).
// When iv shares an instant with an interval of ivs, it returns an *OverlapError naming the
// earliest such interval. An invalid iv returns an error wrapping ErrInvalidInterval.
func insertInterval(ivs []Interval, iv Interval) (out []Interval, inserted bool, err error) {
	if err := iv.valid(); err != nil {
		return nil, false, err
	}
	at := len(ivs)
	for i, x := range ivs {
		if x.Equal(iv) {
			return ivs, false, nil
		}
		if x.Overlaps(iv) {
			return nil, false, &OverlapError{Interval: iv, Existing: x}
		}
		if at == len(ivs) && iv.From.Before(x.From) {
			at = i
		}
	}
	out = make([]Interval, 0, len(ivs)+1)
	out = append(out, ivs[:at]...)
	out = append(out, iv)
	return append(out, ivs[at:]...), true, nil
}

// withInterval returns a copy of m with iv inserted (see insertInterval) and changed true,
// or m and false when m already holds iv. Other intervals that ended before keepSince are
// trimmed; iv itself never is, however old. The current meter is the open interval's, if
// any; UpdatedAt becomes now.
func (m Mapping) withInterval(iv Interval, now, keepSince time.Time) (next Mapping, changed bool, err error) {
	ivs, inserted, err := insertInterval(m.Intervals, iv)
	if err != nil || !inserted {
		return m, false, err
	}
	kept := make([]Interval, 0, len(ivs))
	for _, x := range ivs {
		if x.To != nil && x.To.Before(keepSince) && !x.Equal(iv) {
			continue
		}
		kept = append(kept, x)
	}
	m.Intervals = kept
	m.MeterID = ""
	if last := kept[len(kept)-1]; last.To == nil {
		m.MeterID = last.MeterID
	}
	m.UpdatedAt = now
	return m, true, nil
}
