package analytics

import (
	"cmp"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	"github.com/fleetingest/fleetingest/api/placement"
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
			[]piece{{meterID: "m1", r: window.Range{From: at(2, 30), To: at(8, 15)}}}, false},
		{"re-mapped mid-window", []registry.Interval{iv("m1", at(0, 0), ptr(at(5, 10))), iv("m2", at(5, 10), nil)},
			[]piece{{meterID: "m1", r: window.Range{From: at(2, 30), To: at(5, 10)}}, {meterID: "m2", r: window.Range{From: at(5, 10), To: at(8, 15)}}}, false},
		{"first mapped mid-window", []registry.Interval{iv("m1", at(4, 0), nil)},
			[]piece{{meterID: "m1", r: window.Range{From: at(4, 0), To: at(8, 15)}}}, true},
		{"unmapped mid-window", []registry.Interval{iv("m1", at(0, 0), ptr(at(6, 0)))},
			[]piece{{meterID: "m1", r: window.Range{From: at(2, 30), To: at(6, 0)}}}, true},
		{"intervals outside the window are left out", []registry.Interval{iv("m0", at(0, 0), ptr(at(1, 0))), iv("m1", at(1, 0), nil)},
			[]piece{{meterID: "m1", r: window.Range{From: at(2, 30), To: at(8, 15)}}}, false},
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

func TestPlanAsksEachShardThatHeldAPiecesMeter(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 11, 20, h, m, 0, 0, time.UTC) }
	// Two shards, then three from 03:20: find a meter that moved to the new shard and one
	// that stayed.
	grown, err := placement.Grow(placement.MustShardMap(2), 3, at(3, 20))
	if err != nil {
		t.Fatal(err)
	}
	var moved, stayed string
	for i := 0; moved == "" || stayed == ""; i++ {
		id := fmt.Sprintf("m%d", i)
		if grown.ShardOf(id, at(3, 20)) == 2 {
			moved = cmp.Or(moved, id)
		} else if grown.ShardOf(id, at(0, 0)) == grown.ShardOf(id, at(3, 20)) {
			stayed = cmp.Or(stayed, id)
		}
	}
	s := &Service{cfg: Config{ShardMap: placement.Fixed{Map: grown}}, readers: make([]*read.Shard, 3)}
	w := window.Window{Start: at(0, 30), End: at(6, 15)}
	ps := []piece{
		{meterID: moved, r: window.Range{From: at(0, 30), To: at(2, 10)}},
		{meterID: stayed, r: window.Range{From: at(2, 10), To: at(2, 40)}},
		{meterID: moved, r: window.Range{From: at(2, 40), To: at(6, 15)}},
	}
	plans, err := s.planVehicle("EV-1", w, ps, false)
	if err != nil {
		t.Fatal(err)
	}
	before, after := grown.ShardOf(moved, at(0, 0)), 2
	// The moved meter's shard until the cutover, and after it; the stayed meter's.
	want := map[int][]string{}
	want[before] = append(want[before], moved)
	want[grown.ShardOf(stayed, at(0, 0))] = append(want[grown.ShardOf(stayed, at(0, 0))], stayed)
	want[after] = append(want[after], moved)
	got := map[int][]string{}
	for _, p := range plans {
		if _, dup := got[p.shard]; dup {
			t.Fatalf("shard %d asked twice: %+v", p.shard, plans)
		}
		got[p.shard] = p.meters
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plans = %+v, want %+v", got, want)
	}
}

func ptr[T any](v T) *T { return &v }
