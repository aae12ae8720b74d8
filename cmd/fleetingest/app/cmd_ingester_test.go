package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/freeport"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

func TestMigrateAndIngesterCommandsConsumeIntoTheShardDatabase(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pgtest.NewDatabase(t, pg)
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	topo := ingester.Topology{Namespace: "cmd", Fleet: "ing", Shards: 2}
	if _, err := ingester.EnsureStreams(t.Context(), js, topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)

	t.Run("migrate applies the schema once", func(t *testing.T) {
		for range 2 {
			if err := runMigrate(t.Context(), dsnOptions{dsn: dsn}, quiet); err != nil {
				t.Fatal(err)
			}
		}
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := conn.Close(context.Background()); err != nil {
				t.Error(err)
			}
		})
		var versions int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&versions); err != nil {
			t.Fatal(err)
		}
		if versions < 1 {
			t.Errorf("schema_migrations holds %d rows", versions)
		}
	})

	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cmd := newIngesterCommand()
	if err := cmd.ParseFlags([]string{
		"--nats-url", srv.URL(), "--namespace", "cmd", "--fleet", "ing", "--shard", "1",
		"--dsn-file", dsnFile, "--http-addr", addr, "--batch-wait", "10ms",
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.RunE(cmd, nil) }()

	ts := time.Now().Add(-time.Minute).UnixMicro()
	b := &telemetrypb.ReadingBatch{}
	for i := range 10 {
		b.Meters = append(b.Meters, &telemetrypb.MeterReading{MeterId: fmt.Sprintf("meter-%d", i), MwhConsumedAc: 1000000, Voltage: 230, TimestampMicros: ts})
	}
	data, err := telemetry.MarshalBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), topo.Subject(1), data); err != nil {
		t.Fatal(err)
	}

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		return resp.StatusCode, string(readBody(t, resp))
	}
	want := `fleetingest_ingester_rows_inserted_total{kind="meter",shard="1"} 10`
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := get("/metrics")
		if code == http.StatusOK && strings.Contains(body, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("ingester command returned %v on shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ingester command did not stop after cancellation")
	}
	s, err := js.Stream(t.Context(), topo.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Errorf("stream after shutdown: %+v, %v; want empty", info.State, err)
	}
}

func TestDSNOptionsNeedExactlyOneSource(t *testing.T) {
	for name, o := range map[string]dsnOptions{
		"neither": {},
		"both":    {dsn: "postgres://x", dsnFile: "/x"},
		"missing": {dsnFile: filepath.Join(t.TempDir(), "absent")},
	} {
		if _, err := o.resolve(); err == nil {
			t.Errorf("%s: resolved without error", name)
		}
	}
}

func TestIngesterFlagsMapOntoTheShardConfig(t *testing.T) {
	o := &ingesterOptions{}
	cmd := &cobra.Command{}
	o.addIngesterFlags(cmd)
	if err := cmd.ParseFlags([]string{"--shards", "4", "--shard", "3", "--batch-size", "123", "--batch-wait", "7ms",
		"--history-retention", "240h", "--pause-after-commit"}); err != nil {
		t.Fatal(err)
	}
	cfg := o.shardConfig(nil, ingester.Topology{Namespace: "a", Fleet: "b", Shards: 4}, nil, nil, slog.New(slog.DiscardHandler))
	if cfg.Shard != 3 || cfg.BatchSize != 123 || cfg.BatchWait != 7*time.Millisecond || cfg.Retention.History != 240*time.Hour {
		t.Errorf("config = %+v", cfg)
	}
	if cfg.AfterCommit == nil {
		t.Error("--pause-after-commit did not install the pause hook")
	}
	if f := cmd.Flags().Lookup("pause-after-commit"); f == nil || !f.Hidden {
		t.Error("--pause-after-commit is not a hidden flag")
	}
	if f := cmd.Flags().Lookup("shards"); f == nil || f.Deprecated == "" {
		t.Error("--shards, which an ingester does not need, is not accepted as deprecated")
	}
}
