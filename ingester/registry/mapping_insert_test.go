package registry

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// h is t0 plus n hours.
func h(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }

// closed is [from, to) on meter; open is [from, open) on meter.
func closed(meter string, from, to int) Interval {
	end := h(to)
	return Interval{MeterID: meter, From: h(from), To: &end}
}

func open(meter string, from int) Interval { return Interval{MeterID: meter, From: h(from)} }

func sameIntervals(a, b []Interval) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestInsertIntervalKeepsIntervalsSortedAndDisjoint(t *testing.T) {
	history := []Interval{closed("m-a", 0, 10), closed("m-b", 20, 30), open("m-c", 40)}
	tests := []struct {
		name     string
		ivs      []Interval
		iv       Interval
		want     []Interval
		inserted bool
		overlaps *Interval // the existing interval named by the *OverlapError
		invalid  bool
	}{
		{"into no intervals", nil, closed("m-x", 1, 2), []Interval{closed("m-x", 1, 2)}, true, nil, false},
		{"an open one into no intervals", nil, open("m-x", 1), []Interval{open("m-x", 1)}, true, nil, false},
		{"before every interval", history, closed("m-x", -5, -1),
			[]Interval{closed("m-x", -5, -1), closed("m-a", 0, 10), closed("m-b", 20, 30), open("m-c", 40)}, true, nil, false},
		{"into a gap, touching both neighbours", history, closed("m-x", 10, 20),
			[]Interval{closed("m-a", 0, 10), closed("m-x", 10, 20), closed("m-b", 20, 30), open("m-c", 40)}, true, nil, false},
		{"into the last gap", history, closed("m-x", 35, 40),
			[]Interval{closed("m-a", 0, 10), closed("m-b", 20, 30), closed("m-x", 35, 40), open("m-c", 40)}, true, nil, false},
		{"an open one after every closed interval", []Interval{closed("m-a", 0, 10)}, open("m-x", 10),
			[]Interval{closed("m-a", 0, 10), open("m-x", 10)}, true, nil, false},
		{"the same interval again is no change", history, closed("m-b", 20, 30), history, false, nil, false},
		{"the same open interval again is no change", history, open("m-c", 40), history, false, nil, false},
		{"the same span on another meter overlaps", history, closed("m-x", 20, 30), nil, false, &history[1], false},
		{"overlapping the end of an interval", history, closed("m-x", 9, 15), nil, false, &history[0], false},
		{"overlapping the start of an interval", history, closed("m-x", 15, 21), nil, false, &history[1], false},
		{"inside an interval", history, closed("m-x", 22, 23), nil, false, &history[1], false},
		{"around several intervals names the earliest", history, closed("m-x", 5, 45), nil, false, &history[0], false},
		{"after the open interval's start", history, closed("m-x", 50, 60), nil, false, &history[2], false},
		{"an open one before a later interval", history, open("m-x", 32), nil, false, &history[2], false},
		{"an open one in a gap runs into the next interval", history, open("m-x", 12), nil, false, &history[1], false},
		{"an open one beside the open one", history, open("m-x", 45), nil, false, &history[2], false},
		{"an end before the start", history, closed("m-x", 12, 11), nil, false, nil, true},
		{"an empty interval", history, closed("m-x", 12, 12), nil, false, nil, true},
		{"no meter", history, closed("", 12, 13), nil, false, nil, true},
		{"no start", history, Interval{MeterID: "m-x"}, nil, false, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]Interval(nil), tc.ivs...)
			got, inserted, err := insertInterval(tc.ivs, tc.iv)
			if !sameIntervals(tc.ivs, before) {
				t.Fatalf("insertInterval modified its input: %v, was %v", tc.ivs, before)
			}
			var oe *OverlapError
			switch {
			case tc.invalid:
				if !errors.Is(err, ErrInvalidInterval) {
					t.Fatalf("err = %v, want ErrInvalidInterval", err)
				}
			case tc.overlaps != nil:
				if !errors.As(err, &oe) || !oe.Existing.Equal(*tc.overlaps) || !oe.Interval.Equal(tc.iv) {
					t.Fatalf("err = %v, want an overlap with %s", err, tc.overlaps)
				}
			default:
				if err != nil || inserted != tc.inserted || !sameIntervals(got, tc.want) {
					t.Fatalf("insertInterval = %v, %v, %v; want %v, %v", got, inserted, err, tc.want, tc.inserted)
				}
			}
		})
	}
}

func TestOverlapErrorNamesBothIntervals(t *testing.T) {
	tests := []struct {
		name string
		err  OverlapError
		want string
	}{
		{"closed over closed", OverlapError{Interval: closed("m-x", 9, 15), Existing: closed("m-a", 0, 10)},
			"[2026-11-20T09:00:00Z, 2026-11-20T15:00:00Z) on m-x overlaps the vehicle's interval [2026-11-20T00:00:00Z, 2026-11-20T10:00:00Z) on m-a"},
		{"open before a later one", OverlapError{Interval: open("m-x", 12), Existing: closed("m-b", 20, 30)},
			"[2026-11-20T12:00:00Z, open) on m-x would run into the vehicle's later interval [2026-11-20T20:00:00Z, 2026-11-21T06:00:00Z) on m-b: an open interval may only start after all of the vehicle's intervals"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestWithIntervalSetsTheCurrentMeterAndTrimsOnlyOldHistory(t *testing.T) {
	now := h(100)
	tests := []struct {
		name      string
		m         Mapping
		iv        Interval
		keepSince time.Time
		want      []Interval
		meter     string
	}{
		{"an open interval becomes the current mapping", Mapping{Intervals: []Interval{closed("m-a", 0, 10)}}, open("m-b", 20), h(-1000),
			[]Interval{closed("m-a", 0, 10), open("m-b", 20)}, "m-b"},
		{"a closed one before the open one keeps the current meter", Mapping{MeterID: "m-a", Intervals: []Interval{open("m-a", 50)}}, closed("m-b", 20, 30), h(-1000),
			[]Interval{closed("m-b", 20, 30), open("m-a", 50)}, "m-a"},
		{"a closed one alone leaves the vehicle unmapped now", Mapping{}, closed("m-b", 20, 30), h(-1000),
			[]Interval{closed("m-b", 20, 30)}, ""},
		{"intervals ended before the retention are trimmed", Mapping{Intervals: []Interval{closed("m-a", 0, 10), closed("m-b", 20, 30)}}, closed("m-c", 40, 50), h(15),
			[]Interval{closed("m-b", 20, 30), closed("m-c", 40, 50)}, ""},
		{"the interval written is never trimmed, however old", Mapping{Intervals: []Interval{closed("m-a", 0, 10)}}, closed("m-c", 11, 12), h(60),
			[]Interval{closed("m-c", 11, 12)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := tc.m.withInterval(tc.iv, now, tc.keepSince)
			if err != nil || !changed {
				t.Fatalf("withInterval: changed %v, %v", changed, err)
			}
			if !sameIntervals(got.Intervals, tc.want) || got.MeterID != tc.meter || !got.UpdatedAt.Equal(now) {
				t.Fatalf("withInterval = %+v, want %v with current meter %q updated at %s", got, tc.want, tc.meter, now)
			}
		})
	}
}

func TestWithMeterAfterAClosedIntervalStartsWhereItEnds(t *testing.T) {
	m := Mapping{Intervals: []Interval{closed("m-a", 0, 10)}}
	got := m.withMeter("m-b", h(5), h(-1000))
	want := []Interval{closed("m-a", 0, 10), open("m-b", 10)}
	if !sameIntervals(got.Intervals, want) || got.MeterID != "m-b" {
		t.Fatalf("withMeter = %+v, want %v", got, want)
	}
}
