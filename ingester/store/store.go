// Package store is one Postgres shard: its schema (versioned migrations embedded in the
// binary), its daily history partitions, and the batch write that keeps history, hourly
// rollups and current status consistent in one transaction.
package store

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what the store's queries run on: a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ DBTX = (*pgxpool.Pool)(nil)
	_ DBTX = (*pgx.Conn)(nil)
	_ DBTX = pgx.Tx(nil)
)

// Defaults of Config and Retention.
const (
	DefaultPartitionsAhead  = 2
	DefaultHistoryRetention = 90 * 24 * time.Hour
	DefaultRollupRetention  = 2 * 365 * 24 * time.Hour
)

// Config of a Store.
type Config struct {
	// PartitionsAhead is how many days after today EnsurePartitionsAhead creates. Default 2.
	PartitionsAhead int
	// Now is the clock (partitions ahead, retention). Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.PartitionsAhead == 0 {
		c.PartitionsAhead = DefaultPartitionsAhead
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	if c.PartitionsAhead < 0 {
		return fmt.Errorf("partitions ahead %d must not be negative", c.PartitionsAhead)
	}
	return nil
}

// Store writes readings to one shard. It keeps the set of history partitions that exist in
// memory, so a batch whose days are all known does no catalog I/O.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger

	mu    sync.RWMutex
	known map[string]struct{} // days (YYYYMMDD, UTC) whose partitions exist in every history table
}

// New returns a store on pool, which must already be migrated, and loads the set of
// existing partitions.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{pool: pool, cfg: cfg, log: cfg.Logger}
	if err := s.RefreshPartitions(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Pool is the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the shard answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging shard database: %w", err)
	}
	return nil
}

// PoolConfig tunes OpenPool.
type PoolConfig struct {
	// MaxConns bounds the pool. Default 8.
	MaxConns int32
	// ApplicationName is reported in pg_stat_activity. Default "fleetingest".
	ApplicationName string
}

// OpenPool connects to a shard: sessions run in UTC, and the pool is pinged before it is
// returned.
func OpenPool(ctx context.Context, dsn string, pc PoolConfig) (*pgxpool.Pool, error) {
	if pc.MaxConns == 0 {
		pc.MaxConns = 8
	}
	if pc.ApplicationName == "" {
		pc.ApplicationName = "fleetingest"
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing shard DSN: %w", err)
	}
	cfg.MaxConns = pc.MaxConns
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["application_name"] = pc.ApplicationName
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating shard pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to shard database %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}
