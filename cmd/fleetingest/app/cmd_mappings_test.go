package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/mappingio"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/httpserver"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// TestMappingsImportThenExportThroughTheAPI imports a CSV through a running analytics
// service (mappings need only the registry; the shard is never asked) and exports JSON.
func TestMappingsImportThenExportThroughTheAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
		Shards:     shards.Config{DSNs: []string{"postgres://fleetingest@127.0.0.1:1/none?sslmode=disable"}},
		SlotMap:    placement.MustSlotMap(1),
		Registry:   reg,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = httpserver.ServeListener(ctx, l, httpserver.Config{Handler: svc.Handler(), Logger: slog.New(slog.DiscardHandler)})
	}()

	in := filepath.Join(t.TempDir(), "mappings.csv")
	if err := os.WriteFile(in, []byte("vehicleId,meterId\nEV-1,meter-1\nEV-2,meter-1\nEV-3,meter-9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := mappingsOptions{server: "http://" + l.Addr().String(), format: mappingio.CSV, file: in, timeout: 10 * time.Second}
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
