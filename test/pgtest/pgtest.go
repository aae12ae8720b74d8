// Package pgtest starts throwaway PostgreSQL clusters for tests, from the system's
// PostgreSQL binaries, and hands out a fresh database per test.
//
// One cluster per test binary is the usual shape:
//
//	var cluster *localpg.Cluster
//
//	func TestMain(m *testing.M) { pgtest.Main(m, &cluster) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.NewDatabase(t, cluster)
//		...
//	}
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/localpg"
)

// config is the throwaway cluster's configuration: stock durability, a small footprint.
func config(dataDir string) localpg.Config {
	return localpg.Config{
		DataDir:        dataDir,
		SharedBuffers:  "64MB",
		MaxConnections: 200,
		FastInit:       true,
		Logger:         slog.New(slog.DiscardHandler),
	}
}

// Start starts a cluster in a temp dir; it stops when the test ends.
func Start(tb testing.TB) *localpg.Cluster {
	tb.Helper()
	c, err := localpg.Start(context.Background(), config(tb.TempDir()+"/pgdata"))
	if err != nil {
		tb.Fatalf("starting local postgres: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			tb.Errorf("stopping local postgres: %v", err)
		}
	})
	return c
}

// StartShared starts a cluster in a fresh temp dir outside any test, for TestMain; stop
// stops it and removes the folder.
func StartShared() (c *localpg.Cluster, stop func(), err error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating temp dir for local postgres: %w", err)
	}
	c, err = localpg.Start(context.Background(), config(dir+"/pgdata"))
	if err != nil {
		err = fmt.Errorf("starting local postgres: %w", err)
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("removing %s: %w", dir, rerr))
		}
		return nil, nil, err
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stopping local postgres:", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: removing local postgres' folder:", err)
		}
	}
	return c, stop, nil
}

// Main starts one cluster for the test binary, stores it in *c, runs the tests, stops the
// cluster, runs after and exits with the tests' code. Call it from TestMain.
func Main(m *testing.M, c **localpg.Cluster, after ...func()) {
	cluster, stop, err := StartShared()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		os.Exit(1)
	}
	*c = cluster
	code := m.Run()
	stop()
	for _, fn := range after {
		fn()
	}
	os.Exit(code)
}

var dbSeq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates a fresh database on c named after the test and returns its DSN; the
// database is dropped when the test ends (after the test's own cleanups, which should close
// its pools).
func NewDatabase(tb testing.TB, c *localpg.Cluster) string {
	tb.Helper()
	name := unsafeName.ReplaceAllString(strings.ToLower(tb.Name()), "_")
	suffix := fmt.Sprintf("_%d_%d", os.Getpid(), dbSeq.Add(1))
	if len(name)+len(suffix) > 63 {
		name = name[:63-len(suffix)]
	}
	name += suffix
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateDatabase(ctx, name); err != nil {
		tb.Fatalf("creating test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.DropDatabase(ctx, name); err != nil {
			tb.Errorf("dropping test database: %v", err)
		}
	})
	return c.DSN(name)
}
