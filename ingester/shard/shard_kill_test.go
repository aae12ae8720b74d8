package shard

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// TestProcessKilledBetweenCommitAndAckLosesAndDoublesNothing runs an ingester in a child
// process that pauses after its first commit, SIGKILLs it there, and lets a fresh ingester
// take the redelivered messages.
func TestProcessKilledBetweenCommitAndAckLosesAndDoublesNothing(t *testing.T) {
	dsn := pgtest.NewDatabase(t, cluster)
	e := newEnv(t, dsn)
	for i := range 5 {
		publishBatch(t, e.js, readings(i, 10))
	}
	srvURL := e.js.Conn().ConnectedUrl()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHARD_HELPER_NATS="+srvURL, "SHARD_HELPER_DSN="+dsn)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	paused := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "committed batch, pausing before ack") {
				paused <- true
				return
			}
		}
		paused <- false
	}()
	select {
	case ok := <-paused:
		if !ok {
			t.Fatalf("child exited without pausing after a commit (exit: %v)", cmd.Wait())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill() // it may have exited meanwhile; Wait reaps it either way
		t.Fatalf("child did not pause after a commit (exit: %v)", cmd.Wait())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly, not by the SIGKILL")
	}

	if m, _ := rows(t, e.pool); m != 50 {
		t.Fatalf("killed ingester committed %d meter rows, want 50", m)
	}
	if n := streamMsgs(t, e.js); n != 5 {
		t.Fatalf("stream holds %d messages after the kill, want all 5 unacknowledged", n)
	}
	in, _ := start(t, e.config())
	eventually(t, 20*time.Second, "stream empties after redelivery", func() bool { return streamMsgs(t, e.js) == 0 })
	if m, v := rows(t, e.pool); m != 50 || v != 50 {
		t.Errorf("stored %d meter and %d vehicle rows, want 50 each", m, v)
	}
	if got := value(t, in.metrics.inserted.WithLabelValues("meter")); got != 0 {
		t.Errorf("redelivered readings inserted %v rows again", got)
	}
}

// helperIngester is the kill test's child: it runs an ingester that pauses after its first
// commit, until it is killed.
func helperIngester(url, dsn string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		fail(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fail(err)
	}
	pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{})
	if err != nil {
		fail(err)
	}
	s, err := store.New(ctx, pool, store.Config{Logger: quiet})
	if err != nil {
		fail(err)
	}
	err = Run(ctx, Config{JS: js, Topology: topo, Shard: shardIdx, Store: s, BatchWait: 300 * time.Millisecond,
		AfterCommit: PauseAfterCommit(os.Stderr), Logger: quiet})
	fail(fmt.Errorf("ingester returned while paused: %w", err))
}
