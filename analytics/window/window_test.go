package window_test

import (
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

var t0 = time.Date(2026, 11, 20, 12, 17, 30, 0, time.UTC)

func TestParseBuildsHalfOpenWindowsAndRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, length, end string
		wantStart         time.Time
		wantPeriod        string
		wantErr           bool
	}{
		{"default is 24 hours ending now", "", "", t0.Add(-24 * time.Hour), "last_24_hours", false},
		{"days", "7d", "", t0.Add(-7 * 24 * time.Hour), "last_7d", false},
		{"minutes with an explicit end", "90m", "2026-11-20T10:00:00Z", time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC), "last_90m", false},
		{"a malformed length", "abc", "", time.Time{}, "", true},
		{"a zero length", "0h", "", time.Time{}, "", true},
		{"a negative length", "-3h", "", time.Time{}, "", true},
		{"too long", "500d", "", time.Time{}, "", true},
		{"a malformed end", "24h", "yesterday", time.Time{}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := window.Parse(tc.length, tc.end, t0)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q, %q) = %v, want an error", tc.length, tc.end, w)
				}
				return
			}
			if err != nil || !w.Start.Equal(tc.wantStart) || w.Period() != tc.wantPeriod {
				t.Fatalf("Parse = %v %q, %v; want start %s period %q", w, w.Period(), err, tc.wantStart, tc.wantPeriod)
			}
		})
	}
}

func TestSplitGivesWholeHoursAndAtMostTwoEdges(t *testing.T) {
	h := func(hh, mm int) time.Time { return time.Date(2026, 11, 20, hh, mm, 0, 0, time.UTC) }
	tests := []struct {
		name       string
		start, end time.Time
		whole      window.Range
		edges      []window.Range
	}{
		{"unaligned ends", h(1, 15), h(4, 30), window.Range{From: h(2, 0), To: h(4, 0)}, []window.Range{{From: h(1, 15), To: h(2, 0)}, {From: h(4, 0), To: h(4, 30)}}},
		{"aligned ends", h(1, 0), h(4, 0), window.Range{From: h(1, 0), To: h(4, 0)}, nil},
		{"inside one hour", h(1, 10), h(1, 50), window.Range{From: h(2, 0), To: h(2, 0)}, []window.Range{{From: h(1, 10), To: h(1, 50)}}},
		{"aligned start, unaligned end", h(1, 0), h(1, 20), window.Range{From: h(1, 0), To: h(1, 0)}, []window.Range{{From: h(1, 0), To: h(1, 20)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			whole, edges := window.Window{Start: tc.start, End: tc.end}.Split()
			if whole.Empty() != tc.whole.Empty() || (!whole.Empty() && whole != tc.whole) || len(edges) != len(tc.edges) {
				t.Fatalf("Split = %v %v, want %v %v", whole, edges, tc.whole, tc.edges)
			}
			for i := range edges {
				if edges[i] != tc.edges[i] {
					t.Fatalf("edge %d = %v, want %v", i, edges[i], tc.edges[i])
				}
			}
		})
	}
}

func TestStepsAreWholeHoursAndBucketsAlignToTheEpoch(t *testing.T) {
	for _, bad := range []string{"30m", "90m", "x"} {
		if _, err := window.ParseStep(bad); err == nil {
			t.Errorf("ParseStep(%q) accepted", bad)
		}
	}
	step, err := window.ParseStep("6h")
	if err != nil || step != 6*time.Hour {
		t.Fatalf("ParseStep(6h) = %v, %v", step, err)
	}
	if got, want := window.Bucket(time.Date(2026, 11, 20, 13, 0, 0, 0, time.UTC), 5*time.Hour), time.Unix(0, 0).UTC().Add(time.Duration(time.Date(2026, 11, 20, 13, 0, 0, 0, time.UTC).Unix()/(5*3600)*(5*3600))*time.Second); !got.Equal(want) {
		t.Fatalf("Bucket = %s, want %s", got, want)
	}
}
