package analytics

import (
	"reflect"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

func TestPiecesClipIntervalsToTheWindowAndFindUnmappedParts(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 11, 20, h, m, 0, 0, time.UTC) }
	w := window.Window{Start: at(2, 30), End: at(8, 15)}
	iv := func(meter string, from time.Time, to *time.Time) registry.Interval {
		return registry.Interval{MeterID: meter, From: from, To: to}
	}
	tests := []struct {
		name      string
		ivs       []registry.Interval
		want      []piece
		uncovered bool
	}{
		{"mapped throughout", []registry.Interval{iv("m1", at(0, 0), nil)},
			[]piece{{"m1", window.Range{From: at(2, 30), To: at(8, 15)}}}, false},
		{"re-mapped mid-window", []registry.Interval{iv("m1", at(0, 0), ptr(at(5, 10))), iv("m2", at(5, 10), nil)},
			[]piece{{"m1", window.Range{From: at(2, 30), To: at(5, 10)}}, {"m2", window.Range{From: at(5, 10), To: at(8, 15)}}}, false},
		{"first mapped mid-window", []registry.Interval{iv("m1", at(4, 0), nil)},
			[]piece{{"m1", window.Range{From: at(4, 0), To: at(8, 15)}}}, true},
		{"unmapped mid-window", []registry.Interval{iv("m1", at(0, 0), ptr(at(6, 0)))},
			[]piece{{"m1", window.Range{From: at(2, 30), To: at(6, 0)}}}, true},
		{"intervals outside the window are left out", []registry.Interval{iv("m0", at(0, 0), ptr(at(1, 0))), iv("m1", at(1, 0), nil)},
			[]piece{{"m1", window.Range{From: at(2, 30), To: at(8, 15)}}}, false},
		{"never mapped in the window", nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, uncovered := pieces(registry.Mapping{Intervals: tc.ivs}, w)
			if uncovered != tc.uncovered || len(got) != len(tc.want) {
				t.Fatalf("pieces = %v uncovered %v, want %v %v", got, uncovered, tc.want, tc.uncovered)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("piece %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestPlanAsksEachShardOnceForTheHoursOfItsPieces(t *testing.T) {
	shards := map[string]int{"EV-1": 0, "m1": 0, "m2": 1}
	shardOf := func(key string, _ time.Time) int { return shards[key] }
	at := func(h, m int) time.Time { return time.Date(2026, 11, 20, h, m, 0, 0, time.UTC) }
	w := window.Window{Start: at(0, 30), End: at(6, 15)}
	ps := []piece{
		{"m1", window.Range{From: at(0, 30), To: at(2, 10)}},
		{"m2", window.Range{From: at(2, 10), To: at(2, 40)}},
		{"m1", window.Range{From: at(2, 40), To: at(6, 15)}},
	}
	plans := planVehicle(shardOf, "EV-1", w, ps, true)
	span := func(meter string, from, to int) read.MeterSpan {
		return read.MeterSpan{MeterID: meter, Hours: window.Range{From: at(from, 0), To: at(to, 0)}}
	}
	want := []shardPlan{
		{shard: 0, meters: []read.MeterSpan{span("m1", 0, 3), span("m1", 2, 7)}},
		{shard: 1, meters: []read.MeterSpan{span("m2", 2, 3)}},
	}
	if !reflect.DeepEqual(plans, want) {
		t.Fatalf("plans = %+v, want %+v", plans, want)
	}
}

func ptr[T any](v T) *T { return &v }
