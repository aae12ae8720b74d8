package store

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

func partitionExists(tb testing.TB, s *Store, name string) bool {
	tb.Helper()
	var ok bool
	if err := s.pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		tb.Fatal(err)
	}
	return ok
}

func TestEnsurePartitionsAheadCreatesTodayAndTheNextDays(t *testing.T) {
	s := newStore(t, migratedPool(t), fixedNow)
	created, err := s.EnsurePartitionsAhead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"meter_telemetry_history_p20261127", "vehicle_telemetry_history_p20261127",
		"meter_telemetry_history_p20261128", "vehicle_telemetry_history_p20261128",
		"meter_telemetry_history_p20261129", "vehicle_telemetry_history_p20261129",
	}
	if !slices.Equal(created, want) {
		t.Errorf("created %v, want %v", created, want)
	}
	again, err := s.EnsurePartitionsAhead(t.Context())
	if err != nil || len(again) != 0 {
		t.Errorf("second call created %v, %v; want nothing", again, err)
	}
	// A new store finds them in the catalog.
	fresh := newStore(t, s.pool, fixedNow)
	if got := fresh.KnownDays(); !slices.Equal(got, []string{"20261127", "20261128", "20261129"}) {
		t.Errorf("known days after reload = %v", got)
	}
}

func TestEnsurePartitionsIsSafeFromConcurrentStores(t *testing.T) {
	pool := migratedPool(t)
	days := []time.Time{fixedNow, fixedNow.AddDate(0, 0, 1), fixedNow.AddDate(0, 0, -5)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []string
	var errs []error
	for range 4 {
		s := newStore(t, pool, fixedNow) // separate stores: no shared memory, only the database
		wg.Go(func() {
			created, err := s.EnsurePartitions(context.Background(), days...)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, created...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(all) != 2*len(days) {
		t.Errorf("created %d partitions in all (%v), want %d: each exactly once", len(all), all, 2*len(days))
	}
}

func TestWriteBatchCreatesThePartitionOfAnOldDayOnDemand(t *testing.T) {
	s := newStore(t, migratedPool(t), fixedNow)
	if _, err := s.EnsurePartitionsAhead(t.Context()); err != nil {
		t.Fatal(err)
	}
	old := fixedNow.AddDate(0, 0, -6)
	res, err := s.WriteBatch(t.Context(),
		[]*telemetrypb.MeterReading{meter("m", old, 1, 230), meter("m", fixedNow, 1, 230)},
		[]*telemetrypb.VehicleReading{vehicle("v", old, 1, 1, 20, "m")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"meter_telemetry_history_p20261121", "vehicle_telemetry_history_p20261121"}
	if !slices.Equal(res.PartitionsCreated, want) {
		t.Errorf("partitions created for the batch = %v, want %v", res.PartitionsCreated, want)
	}
	if res.Meters.Inserted != 2 || res.Vehicles.Inserted != 1 {
		t.Errorf("result = %+v", res)
	}
	if n := count(t, s.pool, "SELECT count(*) FROM meter_telemetry_history_p20261121"); n != 1 {
		t.Errorf("old day's partition holds %d rows, want 1", n)
	}
}

func TestWriteBatchRecoversWhenAKnownPartitionWasDroppedElsewhere(t *testing.T) {
	s := newStore(t, migratedPool(t), fixedNow)
	if _, err := s.EnsurePartitionsAhead(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(t.Context(), "DROP TABLE meter_telemetry_history_p20261128"); err != nil {
		t.Fatal(err)
	}
	res, err := s.WriteBatch(t.Context(), []*telemetrypb.MeterReading{meter("m", fixedNow.AddDate(0, 0, 1), 1, 230)}, nil)
	if err != nil {
		t.Fatalf("write after the partition vanished: %v", err)
	}
	if res.Meters.Inserted != 1 || !slices.Equal(res.PartitionsCreated, []string{"meter_telemetry_history_p20261128"}) {
		t.Errorf("result = %+v", res)
	}
}

func TestDropExpiredRemovesOldPartitionsAndRollups(t *testing.T) {
	pool := migratedPool(t)
	s := newStore(t, pool, fixedNow)
	ctx := t.Context()
	// Days 95, 91 and 90 ago end before the 90-day cutoff only for the first two: the day
	// 90 days ago ends 12 hours after the cutoff (the clock is at noon).
	days := []time.Time{fixedNow.AddDate(0, 0, -95), fixedNow.AddDate(0, 0, -91), fixedNow.AddDate(0, 0, -90), fixedNow}
	var ms []*telemetrypb.MeterReading
	var vs []*telemetrypb.VehicleReading
	for _, d := range days {
		ms = append(ms, meter("m", d, 1, 230))
		vs = append(vs, vehicle("v", d, 1, 1, 20, "m"))
	}
	ancient := fixedNow.AddDate(-3, 0, 0)
	ms = append(ms, meter("m", ancient, 1, 230))
	if _, err := s.WriteBatch(ctx, ms, vs); err != nil {
		t.Fatal(err)
	}
	before := hourVersions(t, pool)
	d, err := s.DropExpired(ctx, Retention{})
	if err != nil {
		t.Fatal(err)
	}
	wantDropped := []string{
		PartitionName("meter_telemetry_history", ancient),
		PartitionName("meter_telemetry_history", days[0]), PartitionName("meter_telemetry_history", days[1]),
		PartitionName("vehicle_telemetry_history", ancient), PartitionName("vehicle_telemetry_history", days[0]), PartitionName("vehicle_telemetry_history", days[1]),
	}
	if !slices.Equal(d.Partitions, wantDropped) {
		t.Errorf("dropped %v, want %v", d.Partitions, wantDropped)
	}
	if d.MeterHourly != 1 || d.VehicleHourly != 0 {
		t.Errorf("deleted %d meter and %d vehicle rollup rows, want 1 and 0", d.MeterHourly, d.VehicleHourly)
	}
	for _, name := range wantDropped {
		if partitionExists(t, s, name) {
			t.Errorf("%s still exists", name)
		}
	}
	for _, day := range days[2:] {
		if !partitionExists(t, s, PartitionName("meter_telemetry_history", day)) {
			t.Errorf("partition of %s was dropped before its time", day.Format(time.DateOnly))
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM meter_telemetry_history"); n != 2 {
		t.Errorf("%d meter history rows left, want 2", n)
	}
	if slices.Contains(s.KnownDays(), dayKey(days[0])) {
		t.Error("dropped day still known to the store")
	}
	again, err := s.DropExpired(ctx, Retention{})
	if err != nil || len(again.Partitions) != 0 {
		t.Errorf("second DropExpired = %+v, %v; want nothing", again, err)
	}
	// Rollups outlive history: the hours of dropped days stay queryable.
	if n := count(t, pool, "SELECT count(*) FROM meter_hourly"); n != len(days) {
		t.Errorf("%d meter rollup rows, want %d", n, len(days))
	}
	// The hours of dropped days have new versions (their raw readings are gone), the others
	// kept theirs.
	after := hourVersions(t, pool)
	for h, v := range after {
		dropped := h.Before(days[2].Truncate(24 * time.Hour))
		if changed := v != before[h]; changed != dropped {
			t.Errorf("hour %s: version changed %t, want %t", h, changed, dropped)
		}
	}
	// The expired hour's version went with its rollups.
	if n := count(t, pool, "SELECT count(*) FROM rollup_hours WHERE hour = $1", ancient); n != 0 {
		t.Errorf("the expired hour still has %d versions", n)
	}
	checkRollupHours(t, pool)
}
