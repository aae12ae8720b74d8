// Package shard is the per-shard ingester: it consumes its shard's JetStream stream through
// the durable pull consumer, writes readings to the shard's Postgres in batches, one
// transaction each, and acknowledges a message only after the transaction holding its
// readings has committed. A batch the database refuses for good is split until the refused
// readings are alone; the rest is written and the refused readings are parked in the
// fleet's dead-letter stream (package ingester/deadletter) before the batch's messages are
// acknowledged, so that no reading can hold up its shard.
package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/store"
)

// Store is the shard database as the ingester uses it (*store.Store).
type Store interface {
	WriteBatch(ctx context.Context, meters []*telemetrypb.MeterReading, vehicles []*telemetrypb.VehicleReading) (store.Result, error)
	EnsurePartitionsAhead(ctx context.Context) ([]string, error)
	DropExpired(ctx context.Context, r store.Retention) (store.Dropped, error)
}

var _ Store = (*store.Store)(nil)

// Defaults of Config.
const (
	DefaultBatchSize           = 5000
	DefaultBatchWait           = 100 * time.Millisecond
	DefaultPullMaxMessages     = 1000
	DefaultMaintenanceInterval = 15 * time.Minute
	DefaultLagInterval         = 5 * time.Second
	DefaultRetryMin            = 100 * time.Millisecond
	DefaultRetryMax            = 10 * time.Second
	DefaultProgressInterval    = time.Second
	DefaultWriteTimeout        = 15 * time.Second
	DefaultPullHeartbeat       = 2 * time.Second
	DefaultBindRetryMax        = time.Second
)

// Config of one shard's ingester.
type Config struct {
	// JS is the JetStream context: the shard's consumer, commit notices, and the
	// dead-letter stream refused readings are parked in. Required.
	JS jetstream.JetStream
	// Topology names the stream. Required.
	Topology ingester.Topology
	// Shard is the index of the shard this ingester consumes, in [0, Topology.Shards).
	Shard int
	// Store is the shard's database, migrated. Required.
	Store Store
	// BatchSize is the number of readings that closes a batch. Default 5,000.
	BatchSize int
	// BatchWait closes a batch this long after its first message arrived. Default 100ms.
	BatchWait time.Duration
	// PullMaxMessages is how many messages the consumer buffers ahead. Default 1,000.
	PullMaxMessages int
	// PullHeartbeat is how often the server signals a pull of the ingester it holds while
	// it has nothing to deliver. Two missed in a row mean the pull reached no consumer (the
	// consumer was deleted while none of the ingester's pulls was waiting, so no notice of
	// the deletion reached it) or the server is unreachable, and the ingester binds again.
	// At most half of a pull's 30s expiry. Default 2s.
	PullHeartbeat time.Duration
	// BindRetryMax caps the backoff, from RetryMin, between lookups of the shard's consumer
	// while it is missing: at start, until ingester.EnsureStreams made it, and after it was
	// deleted, until it is made again. Default 1s.
	BindRetryMax time.Duration
	// Retention of history and rollups, applied by the maintenance timer. Default 90 days
	// and 2 years.
	Retention store.Retention
	// MaintenanceInterval is how often partitions ahead are ensured and expired data is
	// dropped (also once at start). Default 15m.
	MaintenanceInterval time.Duration
	// LagInterval is how often the consumer's pending count is polled. Default 5s.
	LagInterval time.Duration
	// Limits are the gateway's acceptance window (how late, how far ahead): a message holding
	// a reading outside it around the message's publish time is refused (terminated), so a
	// publish that bypassed the gateway cannot create partitions years away. Default
	// telemetry.DefaultLimits().
	Limits telemetry.Limits
	// RetryMin and RetryMax bound the exponential backoff between attempts to write a batch
	// while the database fails (or to park its refused readings while NATS fails). Defaults
	// 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// ProgressInterval is how often the messages of a batch being written (a long write, the
	// back-off between attempts, the splitting of a refused batch, the parking of its refused
	// readings) are marked in progress, so JetStream does not redeliver them meanwhile. It is
	// capped at a quarter of the consumer's AckWait (read when binding and with each lag
	// poll). Default 1s.
	ProgressInterval time.Duration
	// WriteTimeout bounds one write attempt; a write in flight at shutdown may finish within
	// it. Default 15s.
	WriteTimeout time.Duration
	// AfterCommit, when set, runs after a batch committed (and its refused readings, if any,
	// were parked) and before its messages are acknowledged; an error abandons the batch unacknowledged. A fault-injection seam
	// (see PauseAfterCommit). Default none.
	AfterCommit func(ctx context.Context) error
	// Registerer receives the ingester's metrics, labelled with the shard. Default: a private
	// registry nobody scrapes.
	Registerer prometheus.Registerer
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Limits == (telemetry.Limits{}) {
		c.Limits = telemetry.DefaultLimits()
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.PullMaxMessages == 0 {
		c.PullMaxMessages = DefaultPullMaxMessages
	}
	if c.PullHeartbeat == 0 {
		c.PullHeartbeat = DefaultPullHeartbeat
	}
	if c.BindRetryMax == 0 {
		c.BindRetryMax = DefaultBindRetryMax
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = DefaultMaintenanceInterval
	}
	if c.LagInterval == 0 {
		c.LagInterval = DefaultLagInterval
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.JS == nil {
		errs = append(errs, errors.New("a JetStream context is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("a store is required"))
	}
	if err := c.Topology.Validate(); err != nil {
		errs = append(errs, err)
	} else if c.Shard < 0 || c.Shard >= c.Topology.Shards {
		errs = append(errs, fmt.Errorf("shard %d outside [0, %d)", c.Shard, c.Topology.Shards))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size %d must be positive", c.BatchSize))
	}
	if c.BatchWait < 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.ProgressInterval <= 0 || c.WriteTimeout <= 0 ||
		c.MaintenanceInterval <= 0 || c.LagInterval <= 0 || c.BindRetryMax <= 0 {
		errs = append(errs, errors.New("durations must be positive, and RetryMax at least RetryMin"))
	}
	if c.PullHeartbeat <= 0 || c.PullHeartbeat > jetstream.DefaultExpires/2 {
		errs = append(errs, fmt.Errorf("pull heartbeat %s must be positive and at most %s", c.PullHeartbeat, jetstream.DefaultExpires/2))
	}
	if c.PullMaxMessages < 1 {
		errs = append(errs, fmt.Errorf("pull max messages %d must be positive", c.PullMaxMessages))
	}
	return errors.Join(errs...)
}

// Ingester consumes one shard's stream into its database.
type Ingester struct {
	cfg     Config
	stream  string
	log     *slog.Logger
	metrics *metrics

	bound   atomic.Bool           // pulling from the shard's consumer, which exists as far as the ingester knows
	failing atomic.Pointer[error] // the last write error while a batch is being retried
	lag     atomic.Int64
	ackWait atomic.Int64 // the consumer's AckWait, as last read

	// lostAt is when the consumer was found gone, zero while bound; only Run's goroutine
	// uses it.
	lostAt time.Time
}

// New checks cfg and registers the ingester's metrics.
func New(cfg Config) (*Ingester, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("shard ingester config: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, cfg.Shard)
	if err != nil {
		return nil, err
	}
	stream := cfg.Topology.Stream(cfg.Shard)
	return &Ingester{
		cfg:     cfg,
		stream:  stream,
		log:     cfg.Logger.With("shard", cfg.Shard, "stream", stream),
		metrics: m,
	}, nil
}

// Run builds an ingester from cfg and runs it until ctx ends: the entry point for running a
// shard ingester in-process.
func Run(ctx context.Context, cfg Config) error {
	in, err := New(cfg)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

// Ready reports nil once the ingester is bound to its consumer and its database is taking
// writes.
func (in *Ingester) Ready(context.Context) error {
	if !in.bound.Load() {
		return fmt.Errorf("not bound to consumer %s on stream %s: waiting for it to be made", ingester.ConsumerName, in.stream)
	}
	if err := in.failing.Load(); err != nil {
		return fmt.Errorf("shard database failing: %w", *err)
	}
	return nil
}

// Lag is the last polled number of messages not yet acknowledged by this shard's consumer.
func (in *Ingester) Lag() int64 { return in.lag.Load() }

// Run binds to the shard's durable consumer (waiting for it to exist: streams and consumers
// are made by ingester.EnsureStreams, never here) and consumes until ctx ends, binding again
// whenever the consumer is lost. On shutdown a write in flight may finish and be
// acknowledged; a batch not committed is handed back to JetStream unacknowledged.
func (in *Ingester) Run(ctx context.Context) error {
	b, err := in.bind(ctx, nil)
	if err != nil {
		return err
	}
	in.setBound(true)
	defer in.setBound(false)
	in.log.Info("consuming", "consumer", ingester.ConsumerName, "batch_size", in.cfg.BatchSize, "batch_wait", in.cfg.BatchWait)

	bg, stopBG := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { in.maintain(bg); done <- struct{}{} }()
	go func() { in.pollLag(bg); done <- struct{}{} }()
	defer func() { stopBG(); <-done; <-done }()

	return in.consume(ctx, b)
}
