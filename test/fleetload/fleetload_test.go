package fleetload_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/fleetload"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

var cluster *localpg.Cluster

func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// A bulk load ends as the ingester would leave it: rollups equal to the history's aggregates
// and a version for every hour with rollups, so the analytics service's hours in memory are
// checked against them as after ingestion.
func TestBulkLoadBuildsRollupsAndHourVersions(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t, cluster))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	if _, err := fleetload.Prepare(ctx, pool, start, start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var vs, ms [][]any
	for m := range 5 * 60 { // five hours, a reading a minute
		ts := start.Add(time.Duration(m) * time.Minute)
		vs = append(vs, []any{"v1", ts, 50.0, 0.5, 20.0, "m1"})
		ms = append(ms, []any{"m1", ts.Add(time.Second), 0.6, 230.0})
	}
	if _, err := fleetload.BulkCopy(ctx, pool, true, pgx.CopyFromRows(vs)); err != nil {
		t.Fatal(err)
	}
	if _, err := fleetload.BulkCopy(ctx, pool, false, pgx.CopyFromRows(ms)); err != nil {
		t.Fatal(err)
	}
	if err := fleetload.BuildRollups(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "SELECT count(*) FROM vehicle_hourly WHERE readings = 60"); n != 5 {
		t.Errorf("%d full vehicle rollup hours, want 5", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM meter_hourly WHERE readings = 60"); n != 5 {
		t.Errorf("%d full meter rollup hours, want 5", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM (SELECT hour FROM meter_hourly UNION SELECT hour FROM vehicle_hourly) h
		FULL JOIN rollup_hours r USING (hour) WHERE h.hour IS NULL OR r.version IS NULL`); n != 0 {
		t.Errorf("%d hours with rollups and no version, or a version and no rollups", n)
	}
}
