// Package localpg runs a PostgreSQL cluster from the system's PostgreSQL binaries in a data
// folder, for `fleetingest dev` and the tests.
//
// The cluster listens on 127.0.0.1 with trust authentication for the superuser `postgres`,
// keeps stock durability (fsync and synchronous_commit on) and keeps its data across
// restarts of the same data folder. When the calling process runs as root, initdb and
// postgres run as the `postgres` system user, since PostgreSQL refuses to run as root.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetingest/fleetingest/internal/freeport"
)

// Config of a local cluster.
type Config struct {
	// DataDir holds the cluster. Required. initdb runs when it holds no cluster yet (no
	// PG_VERSION file); an existing cluster is started as it is.
	DataDir string
	// Host is the TCP address postgres listens on. Default 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free one. Default 0.
	Port int
	// BinDir holds initdb and postgres. Default: FindBinDir().
	BinDir string
	// SystemUser is the operating-system user initdb and postgres run as when this process
	// runs as root. Default "postgres". Ignored when not running as root.
	SystemUser string
	// SharedBuffers is postgres' shared_buffers. Default "128MB".
	SharedBuffers string
	// MaxConnections is postgres' max_connections. Default 100.
	MaxConnections int
	// Settings are extra postgres settings passed as `-c name=value`. Default none.
	Settings map[string]string
	// FastInit skips initdb's final fsync of the new data folder. For throwaway clusters
	// only; the running server keeps fsync on either way. Default false.
	FastInit bool
	// StartTimeout bounds initdb plus start-up until the server accepts connections.
	// Default 2m.
	StartTimeout time.Duration
	// Logger receives postgres' own log lines (at debug level) and lifecycle events.
	// Default slog.Default().
	Logger *slog.Logger
}

const superuser = "postgres"

func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.BinDir == "" {
		dir, err := FindBinDir()
		if err != nil {
			return c, err
		}
		c.BinDir = dir
	}
	if c.SystemUser == "" {
		c.SystemUser = "postgres"
	}
	if c.SharedBuffers == "" {
		c.SharedBuffers = "128MB"
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 100
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func (c Config) validate() error {
	if c.DataDir == "" {
		return errors.New("local postgres needs a data directory")
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("local postgres port %d out of range", c.Port)
	}
	if c.MaxConnections < 1 {
		return fmt.Errorf("local postgres max connections %d must be positive", c.MaxConnections)
	}
	return nil
}

// Cluster is a running local PostgreSQL server.
type Cluster struct {
	cfg       Config
	host      string
	port      int
	socketDir string
	proc      *process
	log       *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// Start initialises the data folder if it holds no cluster, starts postgres and waits until
// it accepts connections. The server is stopped by Stop, or killed by the kernel when this
// process dies.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("resolving data directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	owner, err := lookupOwner(cfg.SystemUser)
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(cfg.DataDir, owner); err != nil {
		return nil, err
	}
	if !hasCluster(cfg.DataDir) {
		if err := initdb(ctx, cfg, owner); err != nil {
			return nil, err
		}
	}
	socketDir, err := os.MkdirTemp("", "localpg-")
	if err != nil {
		return nil, fmt.Errorf("creating postgres socket directory: %w", err)
	}
	// failed removes the socket folder of a start that failed with err.
	failed := func(err error) error {
		if rerr := os.RemoveAll(socketDir); rerr != nil {
			return errors.Join(err, fmt.Errorf("removing postgres socket directory: %w", rerr))
		}
		return err
	}
	if err := owner.chown(socketDir); err != nil {
		return nil, failed(err)
	}

	// A picked port may be taken between picking and binding; try a few.
	attempts := 1
	if cfg.Port == 0 {
		attempts = 5
	}
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = freeport.On(cfg.Host); err != nil {
				return nil, failed(err)
			}
		}
		c := &Cluster{cfg: cfg, host: cfg.Host, port: port, socketDir: socketDir,
			log: cfg.Logger.With("component", "localpg", "port", port)}
		err = c.start(ctx, owner)
		if err == nil {
			c.log.Info("postgres ready", "data_dir", cfg.DataDir)
			return c, nil
		}
		if attempt >= attempts || ctx.Err() != nil {
			return nil, failed(err)
		}
		c.log.Warn("postgres did not start, retrying on another port", "error", err)
	}
}

func (c *Cluster) start(ctx context.Context, owner *osUser) error {
	args := []string{
		"-D", c.cfg.DataDir,
		"-c", "listen_addresses=" + c.host,
		"-c", "port=" + strconv.Itoa(c.port),
		"-c", "unix_socket_directories=" + c.socketDir,
		"-c", "shared_buffers=" + c.cfg.SharedBuffers,
		"-c", "max_connections=" + strconv.Itoa(c.cfg.MaxConnections),
		"-c", "timezone=UTC",
		"-c", "log_timezone=UTC",
		"-c", "logging_collector=off",
	}
	for k, v := range c.cfg.Settings {
		args = append(args, "-c", k+"="+v)
	}
	cmd := exec.Command(c.cfg.BinDir+"/postgres", args...)
	p, err := startProcess(cmd, owner, c.log)
	if err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	c.proc = p
	if err := c.waitReady(ctx); err != nil {
		p.kill()
		return err
	}
	return nil
}

// waitReady polls until the server accepts a connection, the process exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		connCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(connCtx, c.DSN("postgres"))
		cancel()
		if err == nil {
			var dataDir string
			err = conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dataDir)
			_ = conn.Close(ctx) // a probe: its answer is in hand, a failed goodbye changes nothing
			if err == nil {
				if sameDir(dataDir, c.cfg.DataDir) {
					return nil
				}
				return fmt.Errorf("port %d is served by another postgres (data directory %s): %s", c.port, dataDir, c.proc.logTail())
			}
		}
		select {
		case <-c.proc.done:
			return fmt.Errorf("postgres exited during start-up (%w): %s", c.proc.waitErr, c.proc.logTail())
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres on port %d to accept connections: %w (last error: %w; log: %s)",
				c.port, ctx.Err(), err, c.proc.logTail())
		case <-tick.C:
		}
	}
}

// Host is the address the server listens on.
func (c *Cluster) Host() string { return c.host }

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data folder.
func (c *Cluster) DataDir() string { return c.cfg.DataDir }

// DSN is a pgx-compatible URL for the named database, as the superuser over TCP.
func (c *Cluster) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort(c.host, strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates the named database unless it already exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to create database %q: %w", name, err)
	}
	defer closeConn(ctx, conn)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("looking up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var exists bool
		// A concurrent creator may have won the race.
		if qerr := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); qerr == nil && exists {
			return nil
		}
		return fmt.Errorf("creating database %q: %w", name, err)
	}
	return nil
}

// DropDatabase drops the named database if it exists, closing its open connections.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to drop database %q: %w", name, err)
	}
	defer closeConn(ctx, conn)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down with a fast shutdown (open transactions roll back, then a
// checkpoint) and waits until the postmaster and all its children have exited. When ctx
// ends first, the server is told to quit immediately and then killed. Stop is idempotent.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.proc.stop(ctx)
		if err := os.RemoveAll(c.socketDir); err != nil && c.stopErr == nil {
			c.stopErr = fmt.Errorf("removing postgres socket directory: %w", err)
		}
		if c.stopErr == nil {
			c.log.Info("postgres stopped")
		}
	})
	return c.stopErr
}

// PID is the postmaster's process id.
func (c *Cluster) PID() int { return c.proc.cmd.Process.Pid }

// Exited is closed when the postgres server process has exited, for whatever reason.
func (c *Cluster) Exited() <-chan struct{} { return c.proc.done }

func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

// closeConn closes a connection whose work is done (committed or reported): a failed
// goodbye to the server changes nothing for the caller.
func closeConn(ctx context.Context, conn *pgx.Conn) {
	_ = conn.Close(ctx)
}
