package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/ingester/shard"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/httpserver"
)

// Tuning adjusts the components' configurations after the stack filled them in.
type Tuning struct {
	Gateway   func(*gateway.Config)
	Ingester  func(*shard.Config)
	Analytics func(*analytics.Config)
}

// goStage runs one component in its own goroutine with its own context, so components can be
// stopped one after another. An error other than cancellation calls failed (which stops the
// whole stack). The returned stop cancels the component, waits for it and returns its error.
func goStage(parent context.Context, name string, failed func(), fn func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan error, 1)
	go func() {
		err := fn(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%s: %w", name, err)
			failed()
		} else {
			err = nil
		}
		done <- err
	}()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

// stages are the running components, stopped in the reverse order of their start. Those a
// growth starts go before the HTTP surface's (mark), so it still stops first.
type stages struct {
	base    context.Context
	failed  func()
	mu      sync.Mutex
	closers []func() error
	mark    int // where a growth's components go; -1: at the end
}

// start runs fn as the component name until the stack stops.
func (st *stages) start(name string, fn func(context.Context) error) func() error {
	stop := goStage(st.base, name, st.failed, fn)
	st.add(stop)
	return stop
}

// onClose adds a closer (a pool, a connection) to run when the stack stops.
func (st *stages) onClose(fn func()) {
	st.add(sync.OnceValue(func() error { fn(); return nil }))
}

func (st *stages) add(stop func() error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.mark < 0 || st.mark >= len(st.closers) {
		st.closers = append(st.closers, stop)
		return
	}
	st.closers = slices.Insert(st.closers, st.mark, stop)
	st.mark++
}

// closeAll stops every component, the last started first.
func (st *stages) closeAll() error {
	st.mu.Lock()
	closers := slices.Clone(st.closers)
	st.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	return errors.Join(errs...)
}

// run starts the components and the goroutine that stops them, in the reverse order of
// their start (HTTP first, NATS connection last), when ctx ends. It returns the readiness
// check of the HTTP surface.
func (s *Stack) run(ctx context.Context) (ready func(context.Context) error, err error) {
	// Components stop one after another, so their contexts must not all end with ctx.
	st := &stages{base: context.WithoutCancel(ctx), failed: func() { s.cancel() }, mark: -1}
	s.st = st
	defer func() {
		if err != nil {
			err = errors.Join(err, st.closeAll())
			close(s.done)
		}
	}()
	if s.nc, err = nats.Connect(s.nats.URL(), nats.Name("fleetingest-dev"), nats.MaxReconnects(-1)); err != nil {
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	st.onClose(s.nc.Close)
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	if _, err := ingester.EnsureStreams(ctx, s.js, s.topology, s.cfg.Streams); err != nil {
		return nil, err
	}
	if s.reg, err = registry.Open(ctx, s.js, s.topology.MappingBucket(), registry.Config{Logger: s.cfg.Logger.With("component", "registry")}); err != nil {
		return nil, err
	}
	st.start("mapping registry", s.reg.Run)
	if s.maps, err = ingester.OpenShardMaps(ctx, s.js, s.topology, s.cfg.Logger.With("component", "shardmap")); err != nil {
		return nil, err
	}
	st.start("shard map", s.maps.Run)
	if err := s.startIngesters(ctx, 0, len(s.dsns)); err != nil {
		return nil, err
	}
	devices, err := s.startAuth(ctx, st, s.js)
	if err != nil {
		return nil, err
	}
	mux, ready, err := s.startServices(ctx, devices)
	if err != nil {
		return nil, err
	}
	hcfg := httpserver.Config{
		Handler:  mux,
		Ready:    []httpserver.ReadyFunc{ready},
		Gatherer: s.Metrics(),
		Logger:   s.cfg.Logger.With("component", "http"),
	}
	if s.cfg.InsecureNoAuth {
		hcfg.ReadyNote = auth.InsecureNote
	}
	st.mu.Lock()
	st.mark = len(st.closers) // a growth's components stop after the HTTP surface
	st.mu.Unlock()
	st.start("http", func(ctx context.Context) error { return httpserver.ServeListener(ctx, s.listener, hcfg) })

	go func() {
		defer close(s.done)
		<-ctx.Done()
		s.cfg.Logger.Info("stopping dev stack")
		s.err = errors.Join(st.closeAll(), s.stopServers())
		s.cfg.Logger.Info("dev stack stopped")
	}()
	return ready, nil
}

// startIngesters migrates shards from..to-1 and starts their ingesters.
func (s *Stack) startIngesters(ctx context.Context, from, to int) error {
	log := s.cfg.Logger
	for i := from; i < to; i++ {
		pool, err := store.OpenPool(ctx, s.dsns[i], store.PoolConfig{ApplicationName: "fleetingest-ingester"})
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
		s.st.onClose(pool.Close)
		if _, err := store.Migrate(ctx, pool); err != nil {
			return fmt.Errorf("migrating shard %d: %w", i, err)
		}
		st0, err := store.New(ctx, pool, store.Config{Logger: log.With("component", "store", "shard", i)})
		if err != nil {
			return fmt.Errorf("shard %d store: %w", i, err)
		}
		icfg := shard.Config{
			JS:         s.js,
			Topology:   s.topology,
			Shard:      i,
			Store:      st0,
			Registerer: s.metrics,
			Logger:     log.With("component", "ingester", "shard", i),
		}
		if s.cfg.Tune.Ingester != nil {
			s.cfg.Tune.Ingester(&icfg)
		}
		s.st.start("ingester shard "+strconv.Itoa(i), func(ctx context.Context) error { return shard.Run(ctx, icfg) })
	}
	return nil
}

// startAuth verifies device and user tokens with the data folder's keys (made on first
// start) and mints the tokens the stack prints; with InsecureNoAuth it returns nils.
func (s *Stack) startAuth(ctx context.Context, st *stages, js jetstream.JetStream) (*auth.Devices, error) {
	log := s.cfg.Logger.With("component", "auth")
	if s.cfg.InsecureNoAuth {
		log.Warn(auth.InsecureNote)
		return nil, nil
	}
	keys, err := auth.EnsureDevKeys(s.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	bucket, err := js.KeyValue(ctx, s.topology.RevocationBucket())
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", s.topology.RevocationBucket(), err)
	}
	devices, err := auth.NewDevices(keys.DeviceKeyDir, bucket, log)
	if err != nil {
		return nil, err
	}
	st.start("device authentication", devices.Run)
	users, err := auth.NewUsers(ctx, auth.UsersConfig{KeyDir: keys.UserKeyDir, Logger: log})
	if err != nil {
		return nil, err
	}
	st.start("user authentication", users.Run)
	now := time.Now()
	if s.deviceToken, _, err = keys.DeviceSigner.DeviceToken(auth.PrefixScope(""), DevTokenTTL, now); err != nil {
		return nil, fmt.Errorf("minting the dev device token: %w", err)
	}
	if s.adminToken, _, err = keys.UserSigner.UserToken("dev-admin", auth.RoleAdmin, DevTokenTTL, now); err != nil {
		return nil, fmt.Errorf("minting the dev admin token: %w", err)
	}
	s.keys = keys
	s.users = users
	return devices, nil
}

// startServices starts the gateway and the analytics service and returns the HTTP surface
// that serves both, with its readiness check.
func (s *Stack) startServices(ctx context.Context, devices *auth.Devices) (http.Handler, func(context.Context) error, error) {
	gcfg := gateway.Config{
		Topology:   s.topology,
		ShardMap:   s.maps,
		Placement:  s.reg,
		Registerer: s.metrics,
		Logger:     s.cfg.Logger.With("component", "gateway"),
	}
	if devices != nil {
		gcfg.Devices = devices.DeviceVerifier
	}
	if s.cfg.Tune.Gateway != nil {
		s.cfg.Tune.Gateway(&gcfg)
	}
	gw, err := gateway.New(s.nc, gcfg)
	if err != nil {
		return nil, nil, err
	}
	s.st.start("gateway", gw.Run)
	if err := s.startAnalytics(ctx); err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/telemetry", gw.Handler())
	mux.Handle("/v1/telemetry/", gw.Handler())
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.analytics.Load().svc.Handler().ServeHTTP(w, r) }))
	ready := func(ctx context.Context) error {
		if err := gw.Ready(ctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if err := s.analytics.Load().svc.Ready(ctx); err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
		if n := s.growing.Load(); n > 0 {
			return fmt.Errorf("growing to %d shards", n)
		}
		return nil
	}
	return mux, ready, nil
}

// analyticsRun is a running analytics service, with its own metrics (a growth starts another
// on the new shard list and swaps it in).
type analyticsRun struct {
	svc         *analytics.Service
	metrics     *prometheus.Registry
	stop        func() error
	closeShards func()
}

// startAnalytics starts an analytics service on every shard's DSN and serves it once it is
// ready, then stops the one it replaces.
func (s *Stack) startAnalytics(ctx context.Context) error {
	run := &analyticsRun{metrics: prometheus.NewRegistry()}
	acfg := analytics.Config{
		Shards:        shards.Config{DSNs: slices.Clone(s.dsns)},
		ShardMap:      s.maps,
		Registry:      s.reg,
		NATS:          s.nc,
		CommitSubject: s.topology.CommitSubject(),
		Registerer:    run.metrics,
		Logger:        s.cfg.Logger.With("component", "analytics"),
	}
	if s.users != nil {
		acfg.Users = s.users
	}
	if s.cfg.Tune.Analytics != nil {
		s.cfg.Tune.Analytics(&acfg)
	}
	var err error
	if run.svc, err = analytics.New(acfg); err != nil {
		return err
	}
	run.closeShards = sync.OnceFunc(run.svc.Close)
	s.st.onClose(run.closeShards)
	run.stop = s.st.start("analytics", run.svc.Run)
	old := s.analytics.Load()
	if old == nil {
		s.analytics.Store(run)
		return nil
	}
	for run.svc.Ready(ctx) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for analytics on %d shards: %w", len(s.dsns), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.analytics.Store(run)
	// Questions already at the old service finish before its pools close.
	time.AfterFunc(analytics.DefaultRequestTimeout, func() { _ = old.stop(); old.closeShards() })
	return nil
}
