// Package drills rehearses a bad day: a Postgres shard stopped under load, NATS restarted
// under load, an ingester and then the whole dev stack SIGKILLed mid-load, analytics with a
// shard down, and a reading the database refuses for good. Each drill runs real servers and
// processes (the fleetingest binary, Postgres, NATS) with the fleet simulator as the load
// and its ledger of acknowledged readings as the ground truth, is bounded in time, prints
// its figures and asserts them: nothing acknowledged lost, nothing stored or counted twice,
// and recovery within its deadline.
package drills

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/envtest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// cluster is the Postgres cluster of the drills that do not stop their database.
var cluster *localpg.Cluster

// natsHelperEnv makes the test binary a NATS server process (its value is the store
// folder; natsPortEnv the port), for the drills that kill and restart NATS.
const natsHelperEnv, natsPortEnv = "DRILL_NATS_STORE", "DRILL_NATS_PORT"

func TestMain(m *testing.M) {
	if dir := os.Getenv(natsHelperEnv); dir != "" {
		serveNATS(dir, os.Getenv(natsPortEnv))
		return
	}
	pgtest.Main(m, &cluster, command.Remove)
}

// serveNATS runs a JetStream server on port until the process is killed.
func serveNATS(dir, port string) {
	p, err := strconv.Atoi(port)
	if err == nil {
		var s *localnats.Server
		if s, err = localnats.Start(localnats.Config{StoreDir: dir, Port: p, SyncAlways: true}); err == nil {
			fmt.Println("nats ready", s.URL())
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
			<-stop
			s.Stop()
			os.Exit(0)
		}
	}
	fmt.Fprintln(os.Stderr, "nats helper:", err)
	os.Exit(2)
}

// command is the fleetingest command the tests run, built once and removed after them.
var command envtest.Fleetingest

// proc is a child process of a drill, with its output kept.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *output
	done chan struct{}
}

// output keeps what a process wrote.
type output struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// start runs path with args as a child that the kernel kills if the test process dies (the
// parent-death signal is tied to the thread that started the child, so that thread stays
// alive, locked, until the child exits). It is killed when the test ends if still running.
func start(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(path, args...), out: &output{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = p.cmd.Wait() // how it ended is the drill's business, read from its output
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() { p.kill(t) })
	return p
}

// waitFor waits until the process printed text, and fails the test when it exits first or
// within passes.
func (p *proc) waitFor(t *testing.T, text string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for !strings.Contains(p.out.String(), text) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before printing %q:\n%s", p.name, text, p.out)
		case <-deadline:
			t.Fatalf("%s did not print %q within %s:\n%s", p.name, text, within, p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the process (if it still runs) and waits for it.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Logf("killing %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s still runs 30 s after SIGKILL", p.name)
	}
}

// stop SIGTERMs the process and waits for it to exit, killing it after 30 s.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return // gone already
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30 s of SIGTERM:\n%s", p.name, p.out)
		p.kill(t)
	}
}

// line returns the rest of the first output line that starts with prefix.
func (p *proc) line(t *testing.T, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(p.out.String(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("%s printed no line starting %q:\n%s", p.name, prefix, p.out)
	return ""
}

// startNATS runs a NATS server process with JetStream on port, storing in dir.
func startNATS(t *testing.T, dir string, port int) *proc {
	t.Helper()
	p := start(t, "nats", []string{natsHelperEnv + "=" + dir, natsPortEnv + "=" + strconv.Itoa(port)}, os.Args[0], "-test.run=^$")
	p.waitFor(t, "nats ready", 30*time.Second)
	return p
}

// waitReady waits until GET url/readyz answers 200.
func waitReady(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (last: %w)", url, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startStack starts an in-process dev stack in a temp folder on free ports; stop stops it
// (also when the test ends).
func startStack(t *testing.T, shards int, tune func(*devstack.Config)) (s *devstack.Stack, stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := devstack.Config{
		DataDir:  filepath.Join(t.TempDir(), "data"),
		Shards:   shards,
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("starting dev stack: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := s.Stop(); err != nil {
				t.Errorf("stopping dev stack: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}
