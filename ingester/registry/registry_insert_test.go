package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester/registry"
)

func closedIv(meter string, from, to time.Time) registry.Interval {
	return registry.Interval{MeterID: meter, From: from, To: &to}
}

// checkSortedAndDisjoint fails unless ivs are sorted by start, pairwise disjoint and at
// most the last one is open.
func checkSortedAndDisjoint(t *testing.T, ivs []registry.Interval) {
	t.Helper()
	for i := 1; i < len(ivs); i++ {
		prev := ivs[i-1]
		if prev.To == nil || ivs[i].From.Before(*prev.To) {
			t.Fatalf("intervals %s and %s are not sorted and disjoint: %v", prev, ivs[i], ivs)
		}
	}
}

func TestConcurrentInsertsOfPastIntervalsStayDisjoint(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	r, ctx := newRegistry(t, &clock{t: now})
	const writers = 8
	for round := range 5 {
		vehicle := fmt.Sprintf("EV-%d", round)
		// Writers 2k and 2k+1 want overlapping hours; different pairs never overlap. Writer 7
		// wants an open interval from within writer 6's hour.
		ivs := make([]registry.Interval, writers)
		for i := range writers - 1 {
			start := now.Add(-time.Duration(24-3*(i/2)) * time.Hour).Add(time.Duration(i%2) * 30 * time.Minute)
			ivs[i] = closedIv(fmt.Sprintf("meter-%d", i), start, start.Add(time.Hour))
		}
		ivs[writers-1] = registry.Interval{MeterID: "meter-open", From: ivs[writers-2].From.Add(30 * time.Minute)}

		start := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				<-start
				_, errs[i] = r.Insert(ctx, vehicle, ivs[i], nil)
			})
		}
		close(start)
		wg.Wait()

		m, err := r.Get(ctx, vehicle)
		if err != nil {
			t.Fatal(err)
		}
		checkSortedAndDisjoint(t, m.Intervals)
		accepted := 0
		for i, err := range errs {
			var oe *registry.OverlapError
			switch {
			case err == nil:
				accepted++
				if !holds(m.Intervals, ivs[i]) {
					t.Errorf("round %d: accepted %s is missing from %v", round, ivs[i], m.Intervals)
				}
			case errors.As(err, &oe):
				if holds(m.Intervals, ivs[i]) {
					t.Errorf("round %d: refused %s is stored", round, ivs[i])
				}
				if !holds(m.Intervals, oe.Existing) {
					t.Errorf("round %d: %s was refused for %s, which is not stored", round, ivs[i], oe.Existing)
				}
			default:
				t.Fatalf("round %d: writing %s: %v", round, ivs[i], err)
			}
		}
		// One of each overlapping pair; the vehicle is mapped now if the open one won.
		wantMeter := ""
		if errs[writers-1] == nil {
			wantMeter = "meter-open"
		}
		if accepted != 4 || len(m.Intervals) != 4 || m.MeterID != wantMeter {
			t.Errorf("round %d: %d writes accepted, mapping %+v; want 4 intervals, current meter %q", round, accepted, m, wantMeter)
		}
	}
}

func holds(ivs []registry.Interval, iv registry.Interval) bool {
	for _, x := range ivs {
		if x.Equal(iv) {
			return true
		}
	}
	return false
}

func TestInsertedPastIntervalsPlaceReadingsAtTheirTime(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	r, ctx := newRegistry(t, &clock{t: now})
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Written newest first: the value is kept sorted whatever the order of writes.
	writes := []registry.Interval{
		{MeterID: "meter-c", From: now.Add(-time.Hour)},
		closedIv("meter-b", now.Add(-4*time.Hour), now.Add(-3*time.Hour)),
		closedIv("meter-a", now.Add(-6*time.Hour), now.Add(-5*time.Hour)),
	}
	var m registry.Mapping
	for _, iv := range writes {
		var err error
		if m, err = r.Insert(ctx, "EV-1", iv, nil); err != nil {
			t.Fatal(err)
		}
	}
	checkSortedAndDisjoint(t, m.Intervals)
	if m.MeterID != "meter-c" || len(m.Intervals) != 3 {
		t.Fatalf("mapping = %+v, want three intervals, current meter-c", m)
	}
	tests := []struct {
		name string
		ago  time.Duration
		want string
	}{
		{"before every interval", 7 * time.Hour, "EV-1"},
		{"the first interval's start", 6 * time.Hour, "meter-a"},
		{"the first interval's end is exclusive", 5 * time.Hour, "EV-1"},
		{"between the closed intervals", 4*time.Hour + time.Minute, "EV-1"},
		{"inside the second", 3*time.Hour + time.Minute, "meter-b"},
		{"the gap before the open one", 2 * time.Hour, "EV-1"},
		{"the open one", 30 * time.Minute, "meter-c"},
		{"after now", -time.Hour, "meter-c"},
	}
	deadline := time.Now().Add(time.Second)
	for cached, _ := r.Cached("EV-1"); cached.Revision != m.Revision; cached, _ = r.Cached("EV-1") {
		if time.Now().After(deadline) {
			t.Fatal("the in-memory copy did not see the writes within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, tc := range tests {
		if got := r.PlacementKey("EV-1", now.Add(-tc.ago)); got != tc.want {
			t.Errorf("%s: key = %q, want %q", tc.name, got, tc.want)
		}
		if got := registry.PlacementKey(&m, "EV-1", now.Add(-tc.ago)); got != tc.want {
			t.Errorf("%s (from the written value): key = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := r.MappedTo("meter-b", now.Add(-5*time.Hour), now); len(got) != 1 || got[0] != "EV-1" {
		t.Errorf("MappedTo(meter-b) = %v, want EV-1", got)
	}

	// A change "now" after them closes the open one and appends.
	m, err := r.Set(ctx, "EV-1", "meter-d")
	if err != nil {
		t.Fatal(err)
	}
	checkSortedAndDisjoint(t, m.Intervals)
	if len(m.Intervals) != 4 || m.MeterID != "meter-d" {
		t.Fatalf("after Set: %+v", m)
	}
}

func TestARefusedInsertChangesNothing(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	r, ctx := newRegistry(t, &clock{t: now})
	if _, err := r.Insert(ctx, "EV-1", closedIv("meter-a", now.Add(-3*time.Hour), now.Add(-time.Hour)), func(context.Context) error {
		return errors.New("readings would be hidden")
	}); err == nil || err.Error() != "readings would be hidden" {
		t.Fatalf("Insert with a failing check = %v", err)
	}
	if _, err := r.Get(ctx, "EV-1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a refused first write left a value: %v", err)
	}

	first, err := r.Insert(ctx, "EV-1", closedIv("meter-a", now.Add(-3*time.Hour), now.Add(-time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	check := func(context.Context) error { calls++; return nil }
	var oe *registry.OverlapError
	if _, err := r.Insert(ctx, "EV-1", registry.Interval{MeterID: "meter-b", From: now.Add(-2 * time.Hour)}, check); !errors.As(err, &oe) {
		t.Fatalf("overlapping insert = %v, want an *OverlapError", err)
	}
	if calls != 0 {
		t.Errorf("the check ran %d times for an overlapping interval, want 0 (it runs after the overlap check)", calls)
	}
	// The same interval again is no change: no new revision, no check.
	again, err := r.Insert(ctx, "EV-1", closedIv("meter-a", now.Add(-3*time.Hour), now.Add(-time.Hour)), check)
	if err != nil || again.Revision != first.Revision || calls != 0 {
		t.Fatalf("writing the same interval again = rev %d (was %d), %v, %d checks", again.Revision, first.Revision, err, calls)
	}
	cur, err := r.Get(ctx, "EV-1")
	if err != nil || cur.Revision != first.Revision {
		t.Fatalf("after refusals: rev %d, %v; want rev %d unchanged", cur.Revision, err, first.Revision)
	}
	if _, err := r.Insert(ctx, "EV-1", closedIv("meter-b", now.Add(-time.Hour), now), check); err != nil || calls != 1 {
		t.Fatalf("insert after = %v with %d checks, want success and one check", err, calls)
	}
}

func TestAnInsertOlderThanTheRetentionIsKept(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	r, ctx := newRegistryWith(t, registry.Config{Now: func() time.Time { return now }, Retention: 24 * time.Hour})
	old := closedIv("meter-a", now.Add(-50*time.Hour), now.Add(-49*time.Hour))
	m, err := r.Insert(ctx, "EV-1", old, nil)
	if err != nil || len(m.Intervals) != 1 {
		t.Fatalf("Insert = %+v, %v; want the interval kept", m, err)
	}
	// The next write trims it, as any interval that ended before the retention.
	m, err = r.Insert(ctx, "EV-1", closedIv("meter-b", now.Add(-2*time.Hour), now.Add(-time.Hour)), nil)
	if err != nil || len(m.Intervals) != 1 || m.Intervals[0].MeterID != "meter-b" {
		t.Fatalf("Insert = %+v, %v; want only meter-b", m, err)
	}
}
