package drills

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// devStack is `fleetingest dev` run as a user runs it, in a data folder.
type devStack struct {
	proc                *proc
	url, token, nats    string
	dsns                []string
	launched, readyTime time.Time
}

// startDev starts `fleetingest dev` on dataDir with free ports and waits for its ready lines.
func startDev(t *testing.T, dataDir string) *devStack {
	t.Helper()
	d := &devStack{launched: time.Now()}
	d.proc = start(t, "fleetingest dev", nil, command.Path(t), "dev", "--data-dir", dataDir, "--shards", "2",
		"--http-addr", "127.0.0.1:0", "--nats-port", "0", "--postgres-port", "0")
	d.proc.waitFor(t, "export FLEETINGEST_ADMIN_TOKEN=", 2*time.Minute)
	d.readyTime = time.Now()
	d.url = d.proc.line(t, "fleetingest dev ready:")
	d.token = d.proc.line(t, "export FLEETINGEST_DEVICE_TOKEN=")
	d.nats = d.proc.line(t, "nats:")
	for i := range 2 {
		d.dsns = append(d.dsns, d.proc.line(t, fmt.Sprintf("shard %d:", i)))
	}
	return d
}

// postmasters are the process ids of the shards' Postgres servers of a dev data folder.
func postmasters(t *testing.T, dataDir string) []int {
	t.Helper()
	var pids []int
	for i := range 2 {
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
	return pids
}

// TestDrillTheWholeDevStackSIGKILLedMidLoad SIGKILLs `fleetingest dev` (NATS, the
// ingesters, the gateway, all in the one process; its Postgres servers follow it) while the
// simulator posts 1,500 readings a second, and starts it again on the same data folder: every
// reading answered 202 before the kill is in Postgres exactly once, within 10 s of the
// restart (the launch of the new process, its recovery included).
func TestDrillTheWholeDevStackSIGKILLedMidLoad(t *testing.T) {
	const prefix = "devkill"
	dataDir := filepath.Join(t.TempDir(), "dev")
	first := startDev(t, dataDir)
	l := newLedger()
	ld := startLoad(t, simulator(first.url, first.token, prefix, 30_000, 1500), l)
	time.Sleep(4 * time.Second)
	pids := postmasters(t, dataDir)
	nc, js := natstest.Connect(t, first.nats)
	held := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, held = backlog(t, js, ingester.Topology{Namespace: "dev", Fleet: "local", Shards: 2}); held > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingesters never held an unacknowledged message")
		}
	}
	first.proc.kill(t)
	nc.Close()
	ld.cancel()
	res := ld.wait(t, time.Minute)
	acknowledged := l.snapshot()
	for _, pid := range pids {
		for deadline := time.Now().Add(30 * time.Second); !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("postgres %d outlived its dev stack by 30 s", pid)
			}
		}
	}

	second := startDev(t, dataDir)
	pools := openPools(t, second.dsns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	atRestart, err := count(ctx, pools, prefix, acknowledged)
	if err != nil {
		t.Fatal(err)
	}
	recovery := awaitStored(t, pools, prefix, acknowledged, second.launched, 30*time.Second)
	c := settle(t, pools, prefix, acknowledged)
	second.proc.stop(t)
	t.Logf("dev stack SIGKILLed with %d messages delivered and unacknowledged, after %d readings answered 202 (%d sent, %d failed requests); "+
		"restarted ready in %.1f s with %d acknowledged readings not stored yet; every acknowledged reading stored %.1f s after the restart; %v",
		held, res.Accepted, res.Sent, res.Failed, second.readyTime.Sub(second.launched).Seconds(), atRestart.Lost, recovery.Seconds(), c)
	if res.Accepted == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}
	if recovery > 10*time.Second {
		t.Errorf("every acknowledged reading was stored %s after the restart, want within 10 s", recovery)
	}
}
