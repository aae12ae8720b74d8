package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// TestAnIngesterKilledAfterCommitBeforeAckCountsNothingTwice kills an ingester process
// between its COMMIT and its acks: JetStream redelivers the messages to the restarted
// ingester, and the history, rollups and status stay exact.
func TestAnIngesterKilledAfterCommitBeforeAckCountsNothingTwice(t *testing.T) {
	bin := command.Path(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "e2e", Fleet: "redelivery", Shards: 1}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{AckWait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	pg := pgtest.Start(t)
	dsn := pgtest.NewDatabase(t, pg)

	// 20 messages of 50 readings; every message repeats two readings of the one before.
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	distinct := map[string]bool{}
	var prev []*telemetrypb.MeterReading
	for m := 0; m < 20; m++ {
		b := &telemetrypb.ReadingBatch{}
		if len(prev) > 0 {
			b.Meters = append(b.Meters, prev[0], prev[1])
		}
		prev = nil
		for i := 0; i < 24; i++ {
			r := &telemetrypb.MeterReading{MeterId: fmt.Sprintf("m-%d", i), MwhConsumedAc: telemetry.MWhFromKWh(float64(m) + 0.25), Voltage: 230, TimestampMicros: base.Add(time.Duration(m) * time.Minute).UnixMicro()}
			b.Meters = append(b.Meters, r)
			prev = append(prev, r)
			distinct[fmt.Sprintf("m%s@%d", r.MeterId, r.TimestampMicros)] = true
		}
		for i := 0; i < 24; i++ {
			v := &telemetrypb.VehicleReading{VehicleId: fmt.Sprintf("v-%d", i), Soc: 40, MwhDeliveredDc: 200000, BatteryTemp: 24, TimestampMicros: base.Add(time.Duration(m)*time.Minute + time.Second).UnixMicro()}
			b.Vehicles = append(b.Vehicles, v)
			distinct[fmt.Sprintf("v%s@%d", v.VehicleId, v.TimestampMicros)] = true
		}
		data, err := telemetry.MarshalBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, top.Subject(0), data); err != nil {
			t.Fatal(err)
		}
	}

	args := []string{"ingester", "--nats-url", srv.URL(), "--namespace", top.Namespace, "--fleet", top.Fleet,
		"--shard", "0", "--dsn", dsn, "--http-addr", "127.0.0.1:0", "--batch-wait", "300ms"}

	// First run: pauses after its first COMMIT, and is killed there.
	paused := newLineWriter("committed batch, pausing before ack")
	first := exec.Command(bin, append(args, "--pause-after-commit")...)
	first.Stdout, first.Stderr = paused, paused
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-paused.seen:
	case <-time.After(60 * time.Second):
		_ = first.Process.Kill()
		t.Fatalf("the ingester never committed:\n%s", paused)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	committed := count(t, pool, `SELECT (SELECT count(*) FROM meter_telemetry_history) + (SELECT count(*) FROM vehicle_telemetry_history)`)
	if committed == 0 {
		t.Fatal("nothing was committed before the kill")
	}
	stream, err := js.Stream(ctx, top.Stream(0))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Fatalf("stream holds %d messages after the kill, want all 20 still unacknowledged", info.State.Msgs)
	}

	// Second run: receives the committed messages again and must not count them twice.
	out := newLineWriter("") // output kept for failure messages
	second := exec.Command(bin, args...)
	second.Stdout, second.Stderr = out, out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = second.Process.Signal(syscall.SIGTERM)
		_ = second.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err = stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream still holds %d messages; ingester output:\n%s", info.State.Msgs, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cons, err := stream.Consumer(ctx, ingester.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if redelivered := ci.Delivered.Consumer - ci.Delivered.Stream; redelivered == 0 {
		t.Errorf("no message was redelivered (consumer delivered %d, stream %d)", ci.Delivered.Consumer, ci.Delivered.Stream)
	}

	got := count(t, pool, `SELECT (SELECT count(*) FROM meter_telemetry_history) + (SELECT count(*) FROM vehicle_telemetry_history)`)
	if got != len(distinct) {
		t.Errorf("history holds %d rows, want %d", got, len(distinct))
	}
	checkRollupsMatchHistory(t, 0, pool)
	// Status: the newest reading of every device, from the last message.
	last := base.Add(19 * time.Minute)
	if n := count(t, pool, `SELECT count(*) FROM current_meter_status WHERE last_updated_at = $1 AND last_mwh_consumed_ac = 19250000`, last); n != 24 {
		t.Errorf("%d meters show their newest reading, want 24", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM current_vehicle_status WHERE last_updated_at = $1`, last.Add(time.Second)); n != 24 {
		t.Errorf("%d vehicles show their newest reading, want 24", n)
	}
	// The hourly rollups count each reading once: every meter reported 20 readings.
	if n := count(t, pool, `SELECT sum(readings)::int FROM meter_hourly`); n != 20*24 {
		t.Errorf("meter rollups count %d readings, want %d", n, 20*24)
	}
}

// TestDevStopsEveryProcessItStartedOnSIGTERM runs `fleetingest dev` as a user does and stops
// it with SIGTERM: no postgres process may remain.
func TestDevStopsEveryProcessItStartedOnSIGTERM(t *testing.T) {
	bin := command.Path(t)
	dataDir := filepath.Join(t.TempDir(), "dev")
	ready := newLineWriter("fleetingest dev ready")
	cmd := exec.Command(bin, "dev", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nats-port", "0", "--postgres-port", "0")
	cmd.Stdout, cmd.Stderr = ready, ready
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready.seen:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("dev never became ready:\n%s", ready)
	}
	if !strings.Contains(ready.String(), "shard 1: postgres://") {
		t.Errorf("the ready line does not name each shard's DSN:\n%s", ready)
	}
	var pids []int
	for i := 0; i < 2; i++ {
		data, err := os.ReadFile(filepath.Join(dataDir, fmt.Sprintf("shard-%d", i), "postmaster.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.SplitN(string(data), "\n", 2)[0])
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev exited with %v:\n%s", err, ready)
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("dev did not exit within a minute of SIGTERM")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("postgres %d still exists after dev stopped (kill 0: %v)", pid, err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := os.Stat(filepath.Join(dataDir, fmt.Sprintf("shard-%d", i), "postmaster.pid")); !os.IsNotExist(err) {
			t.Errorf("shard %d was not shut down cleanly: postmaster.pid remains", i)
		}
	}
}
