package drills

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// fleetingest runs the binary with args and returns its stdout; it fails the test when the
// command fails.
func fleetingest(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(command.Path(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleetingest %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// postReading posts one reading as a device and reports whether it was answered 202.
func postReading(t *testing.T, url, token, body string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/telemetry", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // the status is the answer
	return resp.StatusCode == http.StatusAccepted
}

// TestDrillPoisonReadingsAreParkedAndReplayedOnceFixed gives both shards a constraint that
// 120 V sites break (voltage at least 180 V), then posts ten such readings among the
// simulator's 1,000 a second: the ingesters write everything else without stalling and park
// the ten in the dead-letter stream with the constraint as their reason; once the constraint
// is dropped, `fleetingest deadletter replay` lands each of them once.
func TestDrillPoisonReadingsAreParkedAndReplayedOnceFixed(t *testing.T) {
	const prefix, poisoned = "poison", 10
	var dataDir string
	s, _ := startStack(t, 2, func(c *devstack.Config) { dataDir = c.DataDir })
	pools := openPools(t, s.DSNs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, p := range pools {
		if _, err := p.Exec(ctx, `ALTER TABLE meter_telemetry_history ADD CONSTRAINT voltage_at_least_180 CHECK (voltage >= 180)`); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	l := newLedger()
	ld := startLoad(t, simulator(s.URL(), s.DeviceToken(), prefix, 8000, 1000), l)
	poison := newLedger()
	for i := range poisoned {
		time.Sleep(300 * time.Millisecond)
		at := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
		id := fmt.Sprintf("%s-site-%d", prefix, i)
		if !postReading(t, s.URL(), s.DeviceToken(), fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":2.5,"voltage":120,"timestamp":%q}`, id, at.Format(time.RFC3339))) {
			t.Fatalf("poison reading %d not accepted", i)
		}
		poison.add(id, at)
	}
	res := ld.wait(t, time.Minute)
	ended := time.Now()
	landed := awaitStored(t, pools, prefix, l.snapshot(), ended, 30*time.Second)

	// Every shard's stream drained: nothing stalled behind the refused readings.
	_, js := natstest.Connect(t, s.NATSURL())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		undelivered, unacked := backlog(t, js, s.Topology())
		if undelivered+unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shards' streams still hold messages 10 s after the load: %d undelivered, %d unacknowledged", undelivered, unacked)
		}
	}
	parked := metric(t, s.Metrics(), "fleetingest_ingester_readings_parked_total", nil)
	split := metric(t, s.Metrics(), "fleetingest_ingester_batches_split_total", nil)
	lines := strings.Split(strings.TrimSpace(fleetingest(t, "deadletter", "list", "--json", "--data-dir", dataDir)), "\n")
	for _, line := range lines {
		var p struct {
			Shard       int       `json:"shard"`
			Reason      string    `json:"reason"`
			PublishedAt time.Time `json:"publishedAt"`
			Reading     struct {
				MeterID   string `json:"meterId"`
				Timestamp time.Time
			} `json:"reading"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("deadletter list --json printed %q: %v", line, err)
		}
		if _, ok := poison.snapshot()[key{p.Reading.MeterID, p.Reading.Timestamp.UnixMicro()}]; !ok ||
			!strings.Contains(p.Reason, "voltage_at_least_180") || time.Since(p.PublishedAt) > time.Minute {
			t.Errorf("parked %s", line)
		}
	}
	stuck, err := count(ctx, pools, prefix+"-site", poison.snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != poisoned || int(parked) != poisoned || stuck.Stored != 0 || split == 0 {
		t.Fatalf("%d readings listed in the dead-letter stream, %v counted parked, %d stored, %v batches split: want %d parked, none stored",
			len(lines), parked, stuck.Stored, split, poisoned)
	}

	for i, p := range pools {
		if _, err := p.Exec(ctx, `ALTER TABLE meter_telemetry_history DROP CONSTRAINT voltage_at_least_180`); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	fixed := time.Now()
	replayed := strings.TrimSpace(fleetingest(t, "deadletter", "replay", "--data-dir", dataDir))
	back := awaitStored(t, pools, prefix+"-site", poison.snapshot(), fixed, 30*time.Second)
	again := strings.TrimSpace(fleetingest(t, "deadletter", "replay", "--data-dir", dataDir))
	all := l.snapshot()
	for k, v := range poison.snapshot() {
		all[k] = v
	}
	c := settle(t, pools, prefix, all)
	left := strings.TrimSpace(fleetingest(t, "deadletter", "list", "--data-dir", dataDir))
	t.Logf("%d poison readings among %d: the rest stored %.1f s after the load ended, %v parked (%v batches split); "+
		"replay after the fix: %s replayed, stored %.1f s after the fix, a second replay %s; %v",
		poisoned, res.Accepted, landed.Seconds(), parked, split, replayed, back.Seconds(), again, c)
	if replayed != fmt.Sprint(poisoned) || again != "0" || strings.Count(left, "\n") != 0 {
		t.Errorf("replay printed %q, a second replay %q, and the list after them:\n%s", replayed, again, left)
	}
	if landed > 10*time.Second {
		t.Errorf("the readings posted with the poison took %s after the load to be stored: a shard stalled", landed)
	}
}
