// Package window is the time arithmetic of analytics queries: windows [end - length, end),
// their split into whole hours (rollups) and partial edges (raw history), step buckets. No I/O.
package window

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits of a window's length.
const (
	MinLength = time.Minute
	MaxLength = 400 * 24 * time.Hour
)

// Window is the half-open interval [Start, End), in UTC, at microsecond precision (Postgres').
type Window struct {
	Start, End time.Time
	// Length as the caller wrote it ("24h"), for the period label.
	Spec string
}

// Times a window may touch: the Unix epoch to the end of year 9999, as readings' timestamps.
var (
	MinTime = time.Unix(0, 0).UTC()
	MaxTime = time.Date(9999, 12, 31, 23, 59, 59, 999_999_000, time.UTC)
)

// maxDays bounds "<n>d" so that n days stay a time.Duration (which ends at 106,751 days).
const maxDays = 100_000

// Quote quotes s for an error message, cut to 64 bytes: errors never echo more of a
// parameter than that.
func Quote(s string) string {
	const n = 64
	if len(s) > n {
		return strconv.Quote(s[:n]) + "…"
	}
	return strconv.Quote(s)
}

// ParseDuration accepts Go durations ("90m", "1h30m") and whole days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > maxDays {
			return 0, fmt.Errorf("%s is not a whole number of days from 1 to %d", Quote(s), maxDays)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration such as 24h, 90m or 7d", Quote(s))
	}
	return d, nil
}

// Parse builds a window from the query's length ("" = 24h) and end (RFC 3339, "" = now).
func Parse(length, end string, now time.Time) (Window, error) {
	spec := cmp.Or(length, "24h")
	d, err := ParseDuration(spec)
	if err != nil {
		return Window{}, fmt.Errorf("window: %w", err)
	}
	if d < MinLength || d > MaxLength {
		return Window{}, fmt.Errorf("window %s is outside %s..%dd", spec, MinLength, int(MaxLength/(24*time.Hour)))
	}
	e := now
	if end != "" {
		e, err = time.Parse(time.RFC3339Nano, end)
		if err != nil {
			return Window{}, fmt.Errorf("end %s is not an RFC 3339 time such as 2026-02-09T10:30:00Z", Quote(end))
		}
	}
	e = e.UTC().Truncate(time.Microsecond)
	if e.After(MaxTime) || e.Add(-d).Before(MinTime) {
		return Window{}, fmt.Errorf("end %s: the window must lie between %d and %d", e.Format(time.RFC3339), MinTime.Year(), MaxTime.Year())
	}
	return Window{Start: e.Add(-d), End: e, Spec: spec}, nil
}

// Period is the seed's label: "last_24_hours" for a 24-hour window, "last_<spec>" otherwise.
func (w Window) Period() string {
	if w.End.Sub(w.Start) == 24*time.Hour {
		return "last_24_hours"
	}
	return "last_" + w.Spec
}

// FloorHour is the start of t's hour (hours counted from the Unix epoch, as date_bin does),
// in UTC: hours are map keys, and a time.Time key holds its location.
func FloorHour(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// CeilHour is t when t starts an hour, else the start of the next hour, in UTC.
func CeilHour(t time.Time) time.Time { return FloorHour(t.Add(time.Hour - time.Nanosecond)) }

// Range is a half-open time range [From, To).
type Range struct{ From, To time.Time }

// Empty reports whether the range holds no instant.
func (r Range) Empty() bool { return !r.From.Before(r.To) }

// String is the range in RFC 3339 as from/to (the ISO 8601 interval form).
func (r Range) String() string {
	return r.From.UTC().Format(time.RFC3339) + "/" + r.To.UTC().Format(time.RFC3339)
}

// Split divides the window into whole hours (possibly empty) and at most two partial edges,
// each inside one hour.
func (w Window) Split() (whole Range, edges []Range) {
	ca, fb := CeilHour(w.Start), FloorHour(w.End)
	if ca.After(fb) { // start and end inside one hour
		return Range{From: ca, To: ca}, []Range{{From: w.Start, To: w.End}}
	}
	if w.Start.Before(ca) {
		edges = append(edges, Range{From: w.Start, To: ca})
	}
	if fb.Before(w.End) {
		edges = append(edges, Range{From: fb, To: w.End})
	}
	return Range{From: ca, To: fb}, edges
}

// Clip returns the part of r inside the window (Empty when they do not meet).
func (w Window) Clip(r Range) Range {
	if r.From.Before(w.Start) {
		r.From = w.Start
	}
	if r.To.After(w.End) {
		r.To = w.End
	}
	return r
}

// Segment returns the part of hour h inside the window.
func (w Window) Segment(h time.Time) Range { return w.Clip(Range{From: h, To: h.Add(time.Hour)}) }

// HourSpan returns the hours [FloorHour(r.From), CeilHour(r.To)) that r touches, clipped to
// the window's hours.
func (w Window) HourSpan(r Range) Range {
	hours := Window{Start: FloorHour(w.Start), End: CeilHour(w.End)}
	return hours.Clip(Range{From: FloorHour(r.From), To: CeilHour(r.To)})
}

// ParseStep reads a series step: a whole number of hours, default 1h.
func ParseStep(s string) (time.Duration, error) {
	if s == "" {
		return time.Hour, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	if d < time.Hour || d%time.Hour != 0 || d > MaxLength {
		return 0, fmt.Errorf("step must be a whole number of hours up to %dd, such as 1h or 6h", int(MaxLength/(24*time.Hour)))
	}
	return d, nil
}

// Bucket returns the start of the step bucket that holds hour h (buckets aligned to the epoch).
func Bucket(h time.Time, step time.Duration) time.Time {
	sec := int64(step / time.Second)
	u := h.Unix()
	return time.Unix(u-((u%sec)+sec)%sec, 0).UTC()
}
