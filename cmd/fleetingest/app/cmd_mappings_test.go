package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/mappingio"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/httpserver"
	"github.com/fleetingest/fleetingest/test/fleetload"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// mappingsService serves the analytics API for the mapping commands on one fleet's bucket,
// over the shard at dsn, and returns its URL and registry.
func mappingsService(t *testing.T, dsn string) (string, *registry.Registry) {
	t.Helper()
	ctx := t.Context()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "mappings", Shards: 1}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(ctx, js, top.MappingBucket(), registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = reg.Run(ctx) }()
	svc, err := analytics.New(analytics.Config{
		Shards:     shards.Config{DSNs: []string{dsn}},
		ShardMap:   placement.Fixed{Map: placement.MustShardMap(1)},
		Registry:   reg,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = httpserver.ServeListener(ctx, l, httpserver.Config{Handler: svc.Handler(), Logger: slog.New(slog.DiscardHandler)})
	}()
	return "http://" + l.Addr().String(), reg
}

// TestMappingsImportThenExportThroughTheAPI imports a CSV through a running analytics
// service (mappings from now on need only the registry; the shard is never asked) and
// exports JSON.
func TestMappingsImportThenExportThroughTheAPI(t *testing.T) {
	ctx := t.Context()
	url, reg := mappingsService(t, "postgres://fleetingest@127.0.0.1:1/none?sslmode=disable")
	in := filepath.Join(t.TempDir(), "mappings.csv")
	if err := os.WriteFile(in, []byte("vehicleId,meterId\nEV-1,meter-1\nEV-2,meter-1\nEV-3,meter-9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := mappingsOptions{server: url, format: mappingio.CSV, file: in, timeout: 10 * time.Second}
	if err := importMappings(ctx, o, nil, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	// The list is served from the watched copy, which follows writes within milliseconds.
	want := map[string]string{"EV-1": "meter-1", "EV-2": "meter-1", "EV-3": "meter-9"}
	var out bytes.Buffer
	var got []mappingio.Mapping
	o.format, o.file = mappingio.JSON, "-"
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(want) && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out.Reset()
		if err := exportMappings(ctx, o, &out); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("export is not JSON: %v\n%s", err, out.String())
		}
	}
	if len(got) != len(want) {
		t.Fatalf("exported %d mappings, want %d:\n%s", len(got), len(want), out.String())
	}
	for _, m := range got {
		if want[m.VehicleID] != m.MeterID || len(m.Intervals) != 1 || m.Intervals[0].To != nil {
			t.Fatalf("exported %+v, want %s with one open interval", m, want[m.VehicleID])
		}
	}

	// Exported to a file, the same document.
	o.file = filepath.Join(t.TempDir(), "export.json")
	if err := exportMappings(ctx, o, nil); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(o.file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(written, out.Bytes()) {
		t.Fatalf("export to %s wrote\n%s\nwant\n%s", o.file, written, out.String())
	}

	// A bad row is refused before anything is written.
	if err := os.WriteFile(in, []byte("EV-4,meter-1\nnot valid,meter-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.format, o.file = mappingio.CSV, in
	if err := importMappings(ctx, o, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("importing an invalid id succeeded")
	}
	if _, err := reg.Get(ctx, "EV-4"); err == nil {
		t.Fatal("a mapping of the refused file was written")
	}
}

// TestMappingsImportReplaysAnExportsHistory imports a JSON export with closed and open
// intervals in the past: they arrive with their own times, a second import is no change,
// and an interval older than the acceptance window stops the import with nothing after it
// written.
func TestMappingsImportReplaysAnExportsHistory(t *testing.T) {
	ctx := t.Context()
	c := pgtest.Start(t)
	dsn := c.DSN("postgres")
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	now := time.Now().UTC().Truncate(time.Second)
	if _, err := fleetload.Prepare(ctx, pool, now.Add(-48*time.Hour), now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	url, _ := mappingsService(t, dsn)

	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	export := []mappingio.Mapping{
		{VehicleID: "EV-1", MeterID: "meter-2", Intervals: []mappingio.Interval{
			{MeterID: "meter-1", From: *at(5 * time.Hour), To: at(3 * time.Hour)},
			{MeterID: "meter-2", From: *at(2 * time.Hour)},
		}},
		{VehicleID: "EV-2", Intervals: []mappingio.Interval{{MeterID: "meter-1", From: *at(3 * time.Hour), To: at(time.Hour)}}},
	}
	in := filepath.Join(t.TempDir(), "export.json")
	writeExport := func(ms []mappingio.Mapping) {
		t.Helper()
		var buf bytes.Buffer
		if err := mappingio.Write(&buf, mappingio.JSON, ms); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeExport(export)
	o := mappingsOptions{server: url, format: mappingio.JSON, file: in, timeout: 10 * time.Second}
	for range 2 { // the second run finds every interval there: no change
		if err := importMappings(ctx, o, nil, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	var got []mappingio.Mapping
	var out bytes.Buffer
	o.file = "-"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out.Reset()
		if err := exportMappings(ctx, o, &out); err != nil {
			t.Fatal(err)
		}
		got = nil
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if sameHistory(got, export) || time.Now().After(deadline) {
			break
		}
	}
	if !sameHistory(got, export) {
		t.Fatalf("exported after the import:\n%s\nwant the imported intervals %+v", out.String(), export)
	}

	// An interval older than the window (7 days by default) is refused, first: the import
	// replays oldest first, so it stops before writing anything.
	old := append(slices.Clone(export), mappingio.Mapping{VehicleID: "EV-3", Intervals: []mappingio.Interval{
		{MeterID: "meter-1", From: *at(8 * 24 * time.Hour), To: at(7 * 24 * time.Hour)},
		{MeterID: "meter-3", From: *at(time.Hour)},
	}})
	writeExport(old)
	o.file = in
	err = importMappings(ctx, o, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "EV-3's interval") || !strings.Contains(err.Error(), "acceptance window") || !strings.Contains(err.Error(), "1 of 5") {
		t.Fatalf("importing an interval older than the window: %v", err)
	}
}

// sameHistory reports whether two exports hold the same vehicles with the same intervals.
func sameHistory(a, b []mappingio.Mapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].VehicleID != b[i].VehicleID || a[i].MeterID != b[i].MeterID || len(a[i].Intervals) != len(b[i].Intervals) {
			return false
		}
		for j, x := range a[i].Intervals {
			y := b[i].Intervals[j]
			if x.MeterID != y.MeterID || !x.From.Equal(y.From) || (x.To == nil) != (y.To == nil) || (x.To != nil && !x.To.Equal(*y.To)) {
				return false
			}
		}
	}
	return true
}
