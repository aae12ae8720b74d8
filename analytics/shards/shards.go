// Package shards holds one connection pool per Postgres shard for the analytics read path:
// pools sized from configuration, a deadline on every query, and errors that say which shard
// failed so callers can answer Unavailable or name missing shards.
package shards

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config of the shard pools.
type Config struct {
	// DSNs of the shards, by shard index. Required.
	DSNs []string
	// MaxConns per shard pool. Default 16.
	MaxConns int32
	// MinConns kept open per shard pool. Default 2.
	MinConns int32
	// QueryTimeout bounds every query (and the wait for a connection). Default 5s.
	QueryTimeout time.Duration
	// ConnectTimeout bounds establishing one connection. Default 2s.
	ConnectTimeout time.Duration
	// Tracer sees every statement sent to the shards. Optional.
	Tracer pgx.QueryTracer
}

// Defaults of Config.
const (
	DefaultMaxConns       = 16
	DefaultMinConns       = 2
	DefaultQueryTimeout   = 5 * time.Second
	DefaultConnectTimeout = 2 * time.Second
)

func (c Config) withDefaults() Config {
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MinConns = cmp.Or(c.MinConns, DefaultMinConns)
	c.QueryTimeout = cmp.Or(c.QueryTimeout, DefaultQueryTimeout)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	return c
}

func (c Config) validate() error {
	if len(c.DSNs) == 0 {
		return errors.New("no shard DSNs")
	}
	for i, dsn := range c.DSNs {
		if dsn == "" {
			return fmt.Errorf("shard %d has no DSN", i)
		}
	}
	if c.MinConns > c.MaxConns {
		return fmt.Errorf("min connections %d exceed max connections %d", c.MinConns, c.MaxConns)
	}
	return nil
}

// ErrUnavailable marks a shard that could not be reached or did not answer in time.
var ErrUnavailable = errors.New("shard unavailable")

// Error is a failed query on one shard.
type Error struct {
	Shard int
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("shard %d: %v", e.Shard, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// DBTX is what the queries need: a pool, a connection or a transaction.
type DBTX interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Set is the pools of every shard.
type Set struct {
	cfg   Config
	pools []*pgxpool.Pool
}

// Open creates the pools; connections are made lazily (beyond MinConns in the background), so
// a shard that is down at start-up does not stop the others from serving.
func Open(ctx context.Context, cfg Config) (*Set, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("shard pools: %w", err)
	}
	s := &Set{cfg: cfg}
	for i, dsn := range cfg.DSNs {
		pc, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("parsing DSN of shard %d: %w", i, err)
		}
		pc.MaxConns = cfg.MaxConns
		pc.MinConns = cfg.MinConns
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
		pc.HealthCheckPeriod = 5 * time.Second
		pc.ConnConfig.Tracer = cfg.Tracer
		// The fan-out statements aggregate every rollup row of their hours: their estimated
		// cost passes jit_above_cost at fleet size, and compiling them takes longer than
		// running them.
		pc.ConnConfig.RuntimeParams["jit"] = "off"
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("creating pool of shard %d: %w", i, err)
		}
		s.pools = append(s.pools, pool)
	}
	return s, nil
}

// Len is the number of shards.
func (s *Set) Len() int { return len(s.pools) }

// Close closes every pool.
func (s *Set) Close() {
	for _, p := range s.pools {
		p.Close()
	}
}

// Do runs fn on shard i's pool under the query deadline. Failures to reach the shard or to
// answer in time are wrapped as *Error around ErrUnavailable; other errors as *Error.
func (s *Set) Do(ctx context.Context, i int, fn func(ctx context.Context, db DBTX) error) error {
	if i < 0 || i >= len(s.pools) {
		return &Error{Shard: i, Err: fmt.Errorf("no such shard (have %d): %w", len(s.pools), ErrUnavailable)}
	}
	qctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	err := fn(qctx, s.pools[i])
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		// The caller gave up; that is not the shard's fault.
		return fmt.Errorf("shard %d: %w", i, ctx.Err())
	}
	if isUnavailable(err) || qctx.Err() != nil {
		return &Error{Shard: i, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	return &Error{Shard: i, Err: err}
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 (connection exception), 57P01..57P03 (admin shutdown, crash, cannot connect now).
		return len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03")
	}
	// A connection that broke mid-query surfaces as a plain network error.
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) || errors.As(err, &netErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
