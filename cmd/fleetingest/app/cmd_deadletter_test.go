package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/deadletter"
	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// runCommand runs the fleetingest command line with args and returns its stdout and stderr.
func runCommand(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewRootCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// TestDeadletterListsAndReplaysAFleetsParkedReadings parks a meter reading of shard 1 and a
// vehicle reading of shard 0, lists them (table and JSON, through --nats-url or a dev data
// folder), replays shard 1's and then the rest.
func TestDeadletterListsAndReplaysAFleetsParkedReadings(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "prod", Fleet: "fleet-a", Shards: 2}
	if _, err := ingester.EnsureStreams(t.Context(), js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	published := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	at := published.Add(-time.Minute).UnixMicro()
	park := func(shard int, r telemetry.Reading) {
		t.Helper()
		err := deadletter.Park(t.Context(), js, top, shard, []deadletter.Refusal{{Reading: r, Reason: `ERROR: violates check constraint "voltage_plausible" (SQLSTATE 23514)`,
			PublishedAt: published, Stream: top.Stream(shard), Seq: 3}})
		if err != nil {
			t.Fatal(err)
		}
	}
	park(1, telemetry.Reading{Meter: &telemetrypb.MeterReading{MeterId: "m-7", MwhConsumedAc: 1_500_000, Voltage: 150, TimestampMicros: at}})
	park(0, telemetry.Reading{Vehicle: &telemetrypb.VehicleReading{VehicleId: "EV-7", Soc: 40, MwhDeliveredDc: 1_000_000, BatteryTemp: 25, TimestampMicros: at, MeterId: "m-7"}})
	cluster := []string{"--nats-url", srv.URL(), "--namespace", "prod", "--fleet", "fleet-a"}

	out, errOut, err := runCommand(t, append([]string{"deadletter", "list"}, cluster...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[1], `"meterId":"m-7","kwhConsumedAc":1.5,"voltage":150`) ||
		!strings.Contains(lines[1], published.Format(time.RFC3339)) || !strings.Contains(lines[1], "voltage_plausible") ||
		!strings.Contains(lines[2], `"vehicleId":"EV-7"`) || !strings.Contains(errOut, "2 parked reading(s) in FI_prod_fleet-a_deadletter") {
		t.Fatalf("list printed\n%s%s", out, errOut)
	}

	// A dev stack is found through its data folder.
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, devstack.NATSURLFile), []byte(srv.URL()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCommand(t, "deadletter", "list", "--json", "--shard", "0", "--data-dir", dataDir, "--namespace", "prod", "--fleet", "fleet-a")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Seq         uint64    `json:"seq"`
		Shard       int       `json:"shard"`
		PublishedAt time.Time `json:"publishedAt"`
		Reading     struct {
			VehicleID string `json:"vehicleId"`
		} `json:"reading"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Seq != 2 || p.Shard != 0 || !p.PublishedAt.Equal(published) || p.Reading.VehicleID != "EV-7" {
		t.Fatalf("list --json --shard 0 printed %s (%v)", out, err)
	}

	out, _, err = runCommand(t, append([]string{"deadletter", "replay", "--shard", "1"}, cluster...)...)
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("replay --shard 1: %q %v", out, err)
	}
	s, err := js.Stream(t.Context(), top.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(telemetry.HeaderPublishedAt); got != strconv.FormatInt(published.UnixNano(), 10) {
		t.Errorf("replayed with %s %q, want the first publish time", telemetry.HeaderPublishedAt, got)
	}
	out, _, err = runCommand(t, append([]string{"deadletter", "replay", "--seq", "2"}, cluster...)...)
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("replay --seq 2: %q %v", out, err)
	}
	out, errOut, err = runCommand(t, append([]string{"deadletter", "list"}, cluster...)...)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "0 parked") {
		t.Fatalf("list after the replays: %s%s %v", out, errOut, err)
	}
	if _, _, err := runCommand(t, "deadletter", "list", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Errorf("a data folder without a dev stack: %v", err)
	}
}
