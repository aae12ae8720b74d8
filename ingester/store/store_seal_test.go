package store

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

func TestSealHoursPacksTheHoursOfItsRangeNewestFirstAndAgainWhenTheyChange(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	var hours []time.Time
	var meters []*telemetrypb.MeterReading
	var vehicles []*telemetrypb.VehicleReading
	for i := range 5 {
		h := fixedNow.Add(time.Duration(i-5) * time.Hour)
		hours = append(hours, h)
		meters = append(meters, meter("m1", h.Add(time.Minute), 1, 230))
		vehicles = append(vehicles, vehicle("v1", h.Add(2*time.Minute), 50, 1, 20, "m1"))
	}
	if _, err := s.WriteBatch(ctx, meters, vehicles); err != nil {
		t.Fatal(err)
	}

	// [hours[1], hours[4]), two at a time: the newest two, then the one left.
	got, err := s.SealHours(ctx, hours[1], hours[4], 2)
	if err != nil || !slices.Equal(got, []time.Time{hours[3], hours[2]}) {
		t.Fatalf("first pass packed %v, %v; want %v and %v", got, err, hours[3], hours[2])
	}
	if got, err = s.SealHours(ctx, hours[1], hours[4], 2); err != nil || !slices.Equal(got, []time.Time{hours[1]}) {
		t.Fatalf("second pass packed %v, %v; want %v", got, err, hours[1])
	}
	if got, err = s.SealHours(ctx, hours[1], hours[4], 2); err != nil || len(got) != 0 {
		t.Fatalf("third pass packed %v, %v; want nothing", got, err)
	}
	versions := hourVersions(t, pool)
	want := map[time.Time]int64{hours[1]: versions[hours[1]], hours[2]: versions[hours[2]], hours[3]: versions[hours[3]]}
	if sealed := versionsIn(t, pool, "rollup_sealed"); !maps.Equal(sealed, want) {
		t.Fatalf("packed versions %v, want the hours' versions %v", sealed, want)
	}

	// A late reading changes hours[2]: it alone is packed again, at its new version.
	if _, err := s.WriteBatch(ctx, nil, []*telemetrypb.VehicleReading{vehicle("v2", hours[2].Add(30*time.Minute), 50, 4, 20, "m1")}); err != nil {
		t.Fatal(err)
	}
	if got, err = s.SealHours(ctx, hours[1], hours[4], 2); err != nil || !slices.Equal(got, []time.Time{hours[2]}) {
		t.Fatalf("after a late reading, packed %v, %v; want %v", got, err, hours[2])
	}
	want[hours[2]] = hourVersions(t, pool)[hours[2]]
	if sealed := versionsIn(t, pool, "rollup_sealed"); !maps.Equal(sealed, want) {
		t.Fatalf("packed versions %v, want %v", sealed, want)
	}

	// The range moves on: the packed hours before it go.
	if got, err = s.SealHours(ctx, hours[3], fixedNow, 10); err != nil || !slices.Equal(got, []time.Time{hours[4]}) {
		t.Fatalf("moved range packed %v, %v; want %v", got, err, hours[4])
	}
	if sealed := versionsIn(t, pool, "rollup_sealed"); len(sealed) != 2 || sealed[hours[3]] == 0 || sealed[hours[4]] == 0 {
		t.Errorf("packed hours %v, want only %v and %v", sealed, hours[3], hours[4])
	}
}

func TestSealHoursLeavesTheWorkToWhoeverHoldsItsLock(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	h := fixedNow.Add(-2 * time.Hour)
	if _, err := s.WriteBatch(ctx, []*telemetrypb.MeterReading{meter("m1", h, 1, 230)}, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the test's own transaction
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockKey+2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SealHours(ctx, h, fixedNow, 10); err != nil || len(got) != 0 {
		t.Fatalf("while another holds the lock, packed %v, %v; want nothing", got, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SealHours(ctx, h, fixedNow, 10); err != nil || len(got) != 1 {
		t.Fatalf("once the lock is free, packed %v, %v; want the hour", got, err)
	}
}

func TestExpiredRollupsTakeTheirPackedHoursWithThem(t *testing.T) {
	ctx := t.Context()
	pool := migratedPool(t)
	old, recent := fixedNow.Add(-30*24*time.Hour), fixedNow.Add(-2*time.Hour)
	s := newStore(t, pool, fixedNow)
	if _, err := s.WriteBatch(ctx, []*telemetrypb.MeterReading{meter("m1", old, 1, 230), meter("m1", recent, 1, 230)}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SealHours(ctx, old.Add(-time.Hour), fixedNow, 10); err != nil || len(got) != 2 {
		t.Fatalf("packed %v, %v; want both hours", got, err)
	}
	if _, err := s.DropExpired(ctx, Retention{History: 90 * 24 * time.Hour, Rollup: 10 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	sealed := versionsIn(t, pool, "rollup_sealed")
	if _, ok := sealed[old.Truncate(time.Hour)]; ok || len(sealed) != 1 {
		t.Errorf("packed hours after retention %v, want only %v", sealed, recent.Truncate(time.Hour))
	}
}
