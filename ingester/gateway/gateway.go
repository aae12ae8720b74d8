// Package gateway is the HTTP entry of readings: it decodes and validates device payloads,
// places each reading on its shard (a vehicle by the meter it was mapped to at the reading's
// time), coalesces the readings of one shard into one JetStream message, and answers a
// request only after JetStream acknowledged every message that holds its readings.
//
// Answers: 202 once durably queued ({"status":"meter telemetry ingested"}, or for a batch
// {"accepted":N,"rejected":[{"index":i,"error":{…}}]}); 400 malformed, 422 implausible, 413
// body or batch too large, 415 wrong Content-Type, 405 wrong method, 503 with Retry-After
// when NATS is down, the shard's stream is full or its queue here is full. Every error is a
// google.rpc.Status JSON body with BadRequest field violations.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/auth"
)

// Placement decides where a vehicle reading goes; *registry.Registry implements it.
type Placement interface {
	// PlacementKey returns the meter the vehicle was mapped to at t, or vehicleID when it had
	// no mapping then.
	PlacementKey(vehicleID string, t time.Time) string
	// Ready reports whether the placement view has caught up, so nothing is routed on a
	// stale view.
	Ready() bool
}

// Defaults of Config.
const (
	DefaultLinger                = time.Millisecond
	MaxLinger                    = 2 * time.Millisecond
	DefaultMaxReadingsPerMessage = 256
	MaxReadingsPerMessageLimit   = 10_000
	DefaultMaxBodyBytes          = 1 << 20
	DefaultMaxBatchBodyBytes     = 16 << 20
	DefaultMaxBatchReadings      = telemetry.DefaultMaxBatchReadings
	DefaultQueueSize             = 2 * DefaultMaxBatchReadings
	DefaultPublishers            = 1
	DefaultPublishTimeout        = 5 * time.Second
	DefaultRetryAfter            = time.Second
)

// Config of a Gateway.
type Config struct {
	// Topology names the fleet's streams and subjects. Required.
	Topology ingester.Topology
	// ShardMap places keys on shards by their readings' time: a copy that follows the fleet's
	// map (ingester.ShardMaps). A shard it grows to gets its queue and publishers when the
	// map arrives, before the version takes effect. Required.
	ShardMap placement.Source
	// Placement resolves a vehicle's placement key. Required.
	Placement Placement
	// Devices verifies the device token every request carries. Nil accepts requests without
	// one (`--insecure-no-auth`, for experiments only).
	Devices *auth.DeviceVerifier
	// Limits bound how old or how far ahead a reading's timestamp may be. The zero value
	// means telemetry.DefaultLimits() (7 days late, 5 minutes ahead).
	Limits telemetry.Limits
	// Linger is how long a shard's next message waits for more readings after its first
	// one arrived. Default 1ms, at most 2ms.
	Linger time.Duration
	// MaxReadingsPerMessage bounds the readings in one stream message. Default 256.
	MaxReadingsPerMessage int
	// MaxBodyBytes bounds the body of POST /v1/telemetry. Default 1 MiB.
	MaxBodyBytes int64
	// MaxBatchBodyBytes bounds the body of POST /v1/telemetry/batch. Default 16 MiB.
	MaxBatchBodyBytes int64
	// MaxBatchReadings bounds the readings of one batch. Default 10,000.
	MaxBatchReadings int
	// QueueSize bounds the readings waiting for publication per shard; a full queue answers
	// 503. Default 20,000 (two full batches); at least MaxBatchReadings.
	QueueSize int
	// Publishers is the number of messages per shard in flight to JetStream at once. Default 1:
	// JetStream stores a stream's messages one after another, so a second message in flight
	// only waits behind the first; with one, the next message grows while the current one
	// waits for its PubAck, and fewer, larger messages need fewer fsyncs (docs/benchmarks.md).
	Publishers int
	// PublishTimeout bounds one publish and its acknowledgement. Default 5s.
	PublishTimeout time.Duration
	// RetryAfter is what a 503 tells clients to wait. Default 1s.
	RetryAfter time.Duration
	// Registerer receives the gateway's metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock readings are validated against. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Limits == (telemetry.Limits{}) {
		c.Limits = telemetry.DefaultLimits()
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.MaxReadingsPerMessage == 0 {
		c.MaxReadingsPerMessage = DefaultMaxReadingsPerMessage
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBatchBodyBytes == 0 {
		c.MaxBatchBodyBytes = DefaultMaxBatchBodyBytes
	}
	if c.MaxBatchReadings == 0 {
		c.MaxBatchReadings = DefaultMaxBatchReadings
	}
	if c.QueueSize == 0 {
		c.QueueSize = max(DefaultQueueSize, c.MaxBatchReadings)
	}
	if c.Publishers == 0 {
		c.Publishers = DefaultPublishers
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	switch {
	case c.ShardMap == nil:
		return placement.ErrNoSlotMap
	case c.Placement == nil:
		return errors.New("no placement (mapping registry) given")
	case c.Limits.MaxLateness <= 0 || c.Limits.MaxFutureSkew < 0:
		return fmt.Errorf("limits need a positive lateness and a non-negative future skew, got %s and %s", c.Limits.MaxLateness, c.Limits.MaxFutureSkew)
	case c.Linger < 0 || c.Linger > MaxLinger:
		return fmt.Errorf("linger %s out of range 0..%s", c.Linger, MaxLinger)
	case c.MaxReadingsPerMessage < 1 || c.MaxReadingsPerMessage > MaxReadingsPerMessageLimit:
		return fmt.Errorf("max readings per message %d out of range 1..%d", c.MaxReadingsPerMessage, MaxReadingsPerMessageLimit)
	case c.MaxBodyBytes < 1 || c.MaxBatchBodyBytes < 1 || c.MaxBatchReadings < 1:
		return errors.New("body and batch bounds must be positive")
	case c.QueueSize < c.MaxBatchReadings:
		return fmt.Errorf("queue size %d must hold at least one batch of %d readings", c.QueueSize, c.MaxBatchReadings)
	case c.Publishers < 1:
		return fmt.Errorf("publishers %d must be at least 1", c.Publishers)
	case c.PublishTimeout <= 0 || c.RetryAfter <= 0:
		return errors.New("publish timeout and retry-after must be positive")
	}
	return nil
}

// Gateway serves POST /v1/telemetry and POST /v1/telemetry/batch and publishes what it
// accepts to the shards' streams.
type Gateway struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	metrics *metrics
	bodies  sync.Pool // *[]byte request body buffers

	// mu orders enqueueing against shutdown and growth: handlers enqueue under the read lock
	// while not draining, Run sets draining and grow adds queues under the write lock, so
	// nothing enqueued is left behind.
	mu       sync.RWMutex
	shards   []*shardQueue
	queues   atomic.Int64 // len(shards)
	pub      *publishers  // set while Run publishes
	draining bool
	started  atomic.Bool
	running  atomic.Bool

	streamsFound atomic.Int64 // shards whose streams were found
	logThrottle  atomic.Int64 // Unix nanoseconds of the last publish-failure log line
}

// New builds a gateway publishing over nc. It binds to the streams EnsureStreams made; it
// creates nothing. Call Run to start publishing and serve Handler.
func New(nc *nats.Conn, cfg Config) (*Gateway, error) {
	if nc == nil {
		return nil, errors.New("gateway needs a NATS connection")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	g := &Gateway{cfg: cfg, nc: nc, js: js}
	if g.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	g.grow(cfg.Topology.Shards)
	return g, nil
}

// publishers are Run's: what each shard's publishers run with.
type publishers struct {
	ctx  context.Context
	stop chan struct{}
	wg   sync.WaitGroup
}

// grow adds queues up to n shards, with their publishers when Run publishes.
func (g *Gateway) grow(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.shards); i < n; i++ {
		q := newShardQueue(g, i)
		g.shards = append(g.shards, q)
		g.metrics.queue(q)
		if g.pub != nil && !g.draining {
			for range g.cfg.Publishers {
				g.pub.wg.Go(func() { q.work(g.pub.ctx, g.pub.stop) })
			}
		}
	}
	g.queues.Store(int64(len(g.shards)))
}

// shardMap is the shard map in force, with a queue for each of its shards; nil before the
// first map arrived.
func (g *Gateway) shardMap() *placement.ShardMap {
	m := g.cfg.ShardMap.Current()
	if m != nil && int64(m.Shards()) > g.queues.Load() {
		g.cfg.Logger.Info("shard map grew", "shards", m.Shards())
		g.grow(m.Shards())
	}
	return m
}

// Run publishes queued readings until ctx ends, then stops accepting new requests (they are
// answered 503), publishes everything already queued and returns.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.started.CompareAndSwap(false, true) {
		return errors.New("gateway is already running")
	}
	pub := &publishers{ctx: context.WithoutCancel(ctx), stop: make(chan struct{})}
	g.mu.Lock()
	g.pub = pub
	for _, q := range g.shards {
		for range g.cfg.Publishers {
			pub.wg.Go(func() { q.work(pub.ctx, pub.stop) })
		}
	}
	g.mu.Unlock()
	g.running.Store(true)
	g.cfg.Logger.Info("gateway publishing", "shards", g.queues.Load(), "publishersPerShard", g.cfg.Publishers,
		"linger", g.cfg.Linger, "maxReadingsPerMessage", g.cfg.MaxReadingsPerMessage)
	<-ctx.Done()

	g.mu.Lock()
	g.draining = true
	g.running.Store(false)
	g.mu.Unlock()
	close(pub.stop)
	pub.wg.Wait()
	g.cfg.Logger.Info("gateway drained")
	return nil
}

// Ready reports why the gateway should not receive traffic: its publishers are not running,
// NATS is not connected, a shard's stream does not exist, or the placement copy has not
// caught up.
func (g *Gateway) Ready(ctx context.Context) error {
	if !g.running.Load() {
		return errors.New("gateway publishers are not running")
	}
	if !g.nc.IsConnected() {
		return fmt.Errorf("NATS is not connected (%s)", g.nc.Status())
	}
	if !g.cfg.Placement.Ready() {
		return errors.New("the mapping registry copy has not caught up")
	}
	if g.cfg.Devices != nil && !g.cfg.Devices.Ready() {
		return errors.New("the revoked-token copy has not caught up")
	}
	m := g.cfg.ShardMap.Current()
	if m == nil {
		return errors.New("the shard map has not arrived")
	}
	for i := int(g.streamsFound.Load()); i < m.Shards(); i++ {
		if _, err := g.js.Stream(ctx, g.cfg.Topology.Stream(i)); err != nil {
			return fmt.Errorf("looking up stream %s: %w", g.cfg.Topology.Stream(i), err)
		}
		g.streamsFound.Store(int64(i + 1))
	}
	return nil
}

// route places a reading by the shard map in force at its time: it returns its shard, and
// for a vehicle mapped to a meter at the reading's time it records that meter in the reading.
func (g *Gateway) route(m *placement.ShardMap, r telemetry.Reading) int {
	if r.Meter != nil {
		return m.ShardOf(r.Meter.GetMeterId(), r.Time())
	}
	v := r.Vehicle
	key := g.cfg.Placement.PlacementKey(v.GetVehicleId(), r.Time())
	if key != v.GetVehicleId() {
		v.MeterId = key
	}
	return m.ShardOf(key, r.Time())
}

// acceptable reports why nothing can be enqueued now, or nil.
func (g *Gateway) acceptable() error {
	switch {
	case !g.running.Load():
		return errNotRunning
	case !g.cfg.Placement.Ready():
		return errPlacementNotReady
	case !g.nc.IsConnected():
		return errNATSDown
	}
	return nil
}

var (
	errNotRunning        = errors.New("the gateway is not running or shutting down")
	errPlacementNotReady = errors.New("the mapping registry copy has not caught up yet")
	errNATSDown          = errors.New("NATS is not connected")
	errQueueFull         = errors.New("the shard's publish queue is full")
	errNoShardMap        = errors.New("the shard map has not arrived yet")
)
