package localpg

import (
	"bufio"
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

	"github.com/jackc/pgx/v5"
)

func startTest(t *testing.T, dataDir string) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), Config{DataDir: dataDir, SharedBuffers: "32MB", FastInit: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(context.Background()); err != nil {
			t.Errorf("closing the connection to %s: %v", dsn, err)
		}
	})
	return conn
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// A zombie still answers signal 0; read its state.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// processesIn lists live processes whose process group is pgid.
func processesIn(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		g, err := syscall.Getpgid(pid)
		if err == nil && g == pgid && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestFindBinDirFindsInitdbAndPostgres(t *testing.T) {
	dir, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres"} {
		if !isExecutable(filepath.Join(dir, name)) {
			t.Errorf("%s not executable in %s", name, dir)
		}
	}
}

func TestStartServesDatabasesWithStockDurability(t *testing.T) {
	c := startTest(t, filepath.Join(t.TempDir(), "nested", "data"))
	conn := connect(t, c.DSN("postgres"))
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "TimeZone": "UTC", "listen_addresses": "127.0.0.1"} {
		var got string
		if err := conn.QueryRow(t.Context(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if err := c.CreateDatabase(t.Context(), "Fleet-Data"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(t.Context(), "Fleet-Data"); err != nil {
		t.Fatalf("second CreateDatabase of the same name: %v", err)
	}
	db := connect(t, c.DSN("Fleet-Data"))
	var name string
	if err := db.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "Fleet-Data" {
		t.Errorf("connected to %q, want Fleet-Data", name)
	}
	if os.Geteuid() == 0 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.PID()))
		if err != nil {
			t.Fatal(err)
		}
		owner, err := lookupOwner("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t", owner.uid)) {
			t.Errorf("postmaster does not run as the postgres user:\n%s", b)
		}
	}
}

func TestStopLeavesNoProcessAndRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c, err := Start(t.Context(), Config{DataDir: dir, FastInit: true, SharedBuffers: "32MB"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	// An open client connection must not hold up a fast shutdown.
	pid := c.PID()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	_ = conn.Close(context.Background()) // its server is gone: only the client side is left to free
	if alive(pid) {
		t.Errorf("postmaster %d still alive after Stop", pid)
	}
	if left := processesIn(pid); len(left) > 0 {
		t.Errorf("postgres processes left after Stop: %v", left)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	again := startTest(t, dir)
	var v int
	if err := connect(t, again.DSN("postgres")).QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("reading data written before the restart: %v", err)
	}
	if v != 42 {
		t.Errorf("kept value = %d, want 42", v)
	}
}

func TestStartOnABusyPortFailsWithPostgresLog(t *testing.T) {
	c := startTest(t, filepath.Join(t.TempDir(), "a"))
	_, err := Start(t.Context(), Config{DataDir: filepath.Join(t.TempDir(), "b"), Port: c.Port(), FastInit: true, SharedBuffers: "32MB"})
	if err == nil {
		t.Fatal("second cluster on the same port started")
	}
	if !strings.Contains(err.Error(), "another postgres") && !strings.Contains(err.Error(), "could not") {
		t.Errorf("error does not carry postgres' reason: %v", err)
	}
}

// TestPostgresDiesWithItsParent runs a child process that starts a cluster, SIGKILLs the
// child and expects the kernel to take the postmaster down with it.
func TestPostgresDiesWithItsParent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOCALPG_HELPER_DATADIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	pid := 0
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "postmaster pid "); ok {
			pid, _ = strconv.Atoi(s)
			break
		}
	}
	if pid == 0 {
		_ = cmd.Process.Kill() // it may have exited already; Wait reaps it either way
		t.Fatalf("child did not report a postmaster pid (exit: %v)", cmd.Wait())
	}
	if !alive(pid) {
		t.Fatalf("postmaster %d not running while its parent lives", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly, not by the SIGKILL")
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) || len(processesIn(pid)) > 0 {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // best effort: the test fails either way
			t.Fatalf("postmaster %d survived its parent's SIGKILL", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The data folder is usable again after the crash.
	c := startTest(t, dir)
	var one int
	if err := connect(t, c.DSN("postgres")).QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("LOCALPG_HELPER_DATADIR"); dir != "" {
		helperCluster(dir) // the child of TestPostgresDiesWithItsParent
	}
	os.Exit(m.Run())
}

// helperCluster starts a cluster, reports the postmaster's pid and waits to be killed.
func helperCluster(dir string) {
	c, err := Start(context.Background(), Config{DataDir: dir, FastInit: true, SharedBuffers: "32MB"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	fmt.Printf("postmaster pid %d\n", c.PID())
	select {}
}
