// Package devstack runs the whole fleetingest system in one process on one machine: an
// embedded NATS server with JetStream, Postgres shards started from the system's PostgreSQL
// binaries, the gateway, one ingester per shard and the analytics service, all on one HTTP
// address. It is what `fleetingest dev` runs, and what the end-to-end tests and the
// benchmarks drive.
package devstack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/internal/localpg"
)

// Config of a dev stack. Every field has a working default.
type Config struct {
	// DataDir holds NATS' and every shard's files; data survives restarts. Default ".fleetingest".
	DataDir string
	// Shards is the number of Postgres shards. Default: the data folder's (2 for a new one).
	// More than the folder holds grows the fleet before the stack reports ready (Grow);
	// fewer is refused.
	Shards int
	// Lead is how long after it is written a grown shard map's new version takes effect.
	// Default 5s.
	Lead time.Duration
	// HTTPAddr serves the gateway, analytics, /healthz, /readyz and /metrics. Default
	// 127.0.0.1:8080; port 0 picks a free port.
	HTTPAddr string
	// NATSPort of the embedded server; 0 picks a free port. Default 0.
	NATSPort int
	// PostgresPort is the port of shard 0; shard i listens on PostgresPort+i. 0 picks free
	// ports. Default 0.
	PostgresPort int
	// Namespace and Fleet name the NATS objects as a FleetIngestion dev/local would.
	Namespace, Fleet string
	// Streams tunes the shards' streams (MaxBytes, …).
	Streams ingester.StreamOptions
	// InsecureNoAuth serves without authentication: no device or user token is asked for.
	// For experiments only; /readyz says so.
	InsecureNoAuth bool
	// Tune adjusts component settings the stack does not expose itself (tests shrink
	// limits with it). Optional.
	Tune Tuning
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = ".fleetingest"
	}
	if c.Lead == 0 {
		c.Lead = 5 * time.Second
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.Namespace == "" {
		c.Namespace = "dev"
	}
	if c.Fleet == "" {
		c.Fleet = "local"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Stack is a running dev stack.
type Stack struct {
	cfg      Config
	topology ingester.Topology
	nats     *localnats.Server
	pg       []*localpg.Cluster
	dsns     []string
	metrics  *prometheus.Registry
	listener net.Listener

	st        *stages
	nc        *nats.Conn
	js        jetstream.JetStream
	reg       *registry.Registry
	maps      *ingester.ShardMaps
	users     *auth.Users
	analytics atomic.Pointer[analyticsRun]
	growMu    sync.Mutex   // one growth at a time
	growing   atomic.Int32 // the shard count a growth at start goes to; 0 when done
	cutover   time.Time    // the last growth's new version's from
	// keys are the data folder's signing keys; tokens were minted from them at start.
	keys                    auth.DevKeys
	deviceToken, adminToken string

	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// URL is the base URL of the HTTP surface.
func (s *Stack) URL() string { return "http://" + s.listener.Addr().String() }

// Keys are the data folder's device and user signing keys (empty with InsecureNoAuth).
func (s *Stack) Keys() auth.DevKeys { return s.keys }

// DeviceToken is a token for every device, minted at start (empty with InsecureNoAuth).
func (s *Stack) DeviceToken() string { return s.deviceToken }

// AdminToken is an admin user's token, minted at start (empty with InsecureNoAuth).
func (s *Stack) AdminToken() string { return s.adminToken }

// NATSURL is the embedded NATS server's client URL.
func (s *Stack) NATSURL() string { return s.nats.URL() }

// DSNs are the shards' connection strings, by shard index.
func (s *Stack) DSNs() []string { return s.dsns }

// Topology names the stack's NATS objects.
func (s *Stack) Topology() ingester.Topology { return s.topology }

// Postgres returns shard i's cluster (tests stop and restart it).
func (s *Stack) Postgres(i int) *localpg.Cluster { return s.pg[i] }

// NATS returns the embedded NATS server.
func (s *Stack) NATS() *localnats.Server { return s.nats }

// Metrics gathers what every component of the stack reports.
func (s *Stack) Metrics() prometheus.Gatherer {
	return prometheus.Gatherers{s.metrics, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		if a := s.analytics.Load(); a != nil {
			return a.metrics.Gather()
		}
		return nil, nil
	})}
}

// ShardMap is the fleet's shard map as the stack's components follow it.
func (s *Stack) ShardMap() *placement.ShardMap { return s.maps.Current() }

// Cutover is when the version a growth wrote took effect (zero when the stack did not grow).
func (s *Stack) Cutover() time.Time {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	return s.cutover
}

// Done is closed when the stack has stopped; Err then says why.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Err is the error the stack stopped with (nil after a clean Stop).
func (s *Stack) Err() error { <-s.done; return s.err }

// Stop shuts every component down in order (HTTP, gateway drain, ingesters, analytics),
// then NATS and the Postgres servers, and waits until all have stopped.
func (s *Stack) Stop() error {
	s.cancel()
	<-s.done
	return s.err
}

const databaseName = "fleetingest"

// NATSURLFile is the file of the data folder that holds the running dev stack's NATS URL.
const NATSURLFile = "nats.url"

// DevTokenTTL is how long the tokens minted at start stay valid.
const DevTokenTTL = 30 * 24 * time.Hour

// Start starts every part of the stack and returns once the HTTP surface is ready. A data
// folder that holds fewer shards than cfg.Shards is grown first (Grow).
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg = cfg.withDefaults()
	held, err := checkTopology(cfg)
	if err != nil {
		return nil, err
	}
	want := cmp.Or(cfg.Shards, held)
	s := &Stack{
		cfg:      cfg,
		topology: ingester.Topology{Namespace: cfg.Namespace, Fleet: cfg.Fleet, Shards: held},
		metrics:  prometheus.NewRegistry(),
		done:     make(chan struct{}),
	}
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if want > held {
		s.growing.Store(int32(want))
	}
	ok := false
	defer func() {
		if !ok {
			err = errors.Join(err, s.stopServers())
		}
	}()
	if s.nats, err = localnats.Start(localnats.Config{
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		Port:       cfg.NATSPort,
		SyncAlways: true,
	}); err != nil {
		return nil, err
	}
	// `fleetingest token revoke --data-dir` finds the running server here.
	if err := os.WriteFile(filepath.Join(cfg.DataDir, NATSURLFile), []byte(s.nats.URL()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("recording the NATS URL: %w", err)
	}
	if err := s.startPostgres(ctx, 0, held); err != nil {
		return nil, err
	}
	if s.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.HTTPAddr, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	ready, err := s.run(runCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	ok = true // from here on, the run goroutine stops the servers
	if _, err = s.finishGrowth(ctx); err == nil && want > held {
		_, err = s.Grow(ctx, want)
	}
	s.growing.Store(0)
	if err == nil {
		err = waitReady(ctx, s.URL(), ready)
	}
	if err != nil {
		cancel()
		<-s.done
		return nil, errors.Join(err, s.err)
	}
	return s, nil
}

// Grow grows the running stack to n shards without moving a row: it starts the new shards'
// Postgres servers, streams and ingesters, serves analytics on every shard, then writes the
// shard map's new version, which takes effect Lead later (its from, returned). The data
// folder records the new count.
func (s *Stack) Grow(ctx context.Context, n int) (time.Time, error) {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	held := len(s.dsns)
	if n <= held {
		return time.Time{}, fmt.Errorf("the stack has %d shards: it grows only to more (shrinking is refused)", held)
	}
	s.cfg.Logger.Info("growing", "from", held, "to", n)
	if err := s.startPostgres(ctx, held, n); err != nil {
		return time.Time{}, err
	}
	s.topology.Shards = n
	if _, err := ingester.EnsureStreams(ctx, s.js, s.topology, s.cfg.Streams); err != nil {
		return time.Time{}, err
	}
	if err := s.startIngesters(ctx, held, n); err != nil {
		return time.Time{}, err
	}
	if err := s.startAnalytics(ctx); err != nil {
		return time.Time{}, err
	}
	// The folder records the count first: a stack stopped before the version is written
	// writes it when it starts again (finishGrowth).
	if err := saveTopology(s.cfg.DataDir, n); err != nil {
		return time.Time{}, err
	}
	return s.finishGrowth(ctx)
}

// finishGrowth writes the shard map's version for the stack's shards when the map has fewer
// (a growth stopped before it wrote it). growMu is held or the stack is starting.
func (s *Stack) finishGrowth(ctx context.Context) (time.Time, error) {
	if err := s.maps.WaitReady(ctx); err != nil {
		return time.Time{}, err
	}
	if s.maps.Current().Shards() >= len(s.dsns) {
		return time.Time{}, nil
	}
	m, err := ingester.GrowShardMap(ctx, s.js, s.topology, len(s.dsns), s.cfg.Lead)
	if err != nil {
		return time.Time{}, err
	}
	s.cutover = m.Versions[len(m.Versions)-1].From
	s.cfg.Logger.Info("grown", "shards", len(s.dsns), "cutover", s.cutover)
	return s.cutover, nil
}

// startPostgres starts the Postgres servers of shards from..to-1.
func (s *Stack) startPostgres(ctx context.Context, from, to int) error {
	type started struct {
		i   int
		c   *localpg.Cluster
		err error
	}
	results := make(chan started, to-from)
	for i := from; i < to; i++ {
		go func(i int) {
			port := 0
			if s.cfg.PostgresPort != 0 {
				port = s.cfg.PostgresPort + i
			}
			c, err := localpg.Start(ctx, localpg.Config{
				DataDir: filepath.Join(s.cfg.DataDir, "shard-"+strconv.Itoa(i)),
				Port:    port,
				Logger:  s.cfg.Logger.With("shard", i),
				// Stock durability; a little more memory than the stock 128MB.
				SharedBuffers: "256MB",
			})
			if err == nil {
				err = c.CreateDatabase(ctx, databaseName)
			}
			results <- started{i, c, err}
		}(i)
	}
	s.pg = append(s.pg, make([]*localpg.Cluster, to-from)...)
	var errs []error
	for range to - from {
		r := <-results
		s.pg[r.i] = r.c
		if r.err != nil {
			errs = append(errs, fmt.Errorf("starting postgres shard %d: %w", r.i, r.err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range s.pg[from:to] {
		s.dsns = append(s.dsns, c.DSN(databaseName))
	}
	return nil
}

// stopServers stops Postgres and NATS (whatever was started).
func (s *Stack) stopServers() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, c := range s.pg {
		if c == nil {
			continue
		}
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping postgres shard %d: %w", i, err))
		}
	}
	if s.nats != nil {
		s.nats.Stop()
	}
	if s.listener != nil {
		_ = s.listener.Close()
	}
	return errors.Join(errs...)
}

// topologyFile records a data folder's shard count.
const topologyFile = "topology.json"

// checkTopology returns the shard count the data folder holds (cfg.Shards, or 2, for a new
// one) and refuses fewer: readings already placed would be looked for on shards that are
// gone.
func checkTopology(cfg Config) (int, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return 0, fmt.Errorf("creating data folder %s: %w", cfg.DataDir, err)
	}
	path := filepath.Join(cfg.DataDir, topologyFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		n := cmp.Or(cfg.Shards, 2)
		return n, saveTopology(cfg.DataDir, n)
	case err != nil:
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	var sv struct {
		Shards int `json:"shards"`
	}
	if err := json.Unmarshal(data, &sv); err != nil || sv.Shards < 1 {
		return 0, fmt.Errorf("reading %s: %v", path, cmp.Or[any](err, "no shard count"))
	}
	if cfg.Shards != 0 && cfg.Shards < sv.Shards {
		return 0, fmt.Errorf("data folder %s holds %d shards, not %d: a fleet grows but does not shrink (its shards hold readings); use --shards %d or more, or another --data-dir", cfg.DataDir, sv.Shards, cfg.Shards, sv.Shards)
	}
	return sv.Shards, nil
}

func saveTopology(dir string, shards int) error {
	data, _ := json.Marshal(struct {
		Shards int `json:"shards"`
	}{shards})
	if err := os.WriteFile(filepath.Join(dir, topologyFile), data, 0o644); err != nil {
		return fmt.Errorf("recording the shard count: %w", err)
	}
	return nil
}

func waitReady(ctx context.Context, url string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", http.NoBody)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close() // only the status matters; closing frees the connection
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = ready(ctx)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev stack not ready: %w (last: %w)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
