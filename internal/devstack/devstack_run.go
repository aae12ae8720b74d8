package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
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
	return func() error {
		cancel()
		return <-done
	}
}

// stages are the running components, stopped in the reverse order of their start.
type stages struct {
	base    context.Context
	failed  func()
	closers []func() error
}

// start runs fn as the component name until the stack stops.
func (st *stages) start(name string, fn func(context.Context) error) {
	st.closers = append(st.closers, goStage(st.base, name, st.failed, fn))
}

// onClose adds a closer (a pool, a connection) to run when the stack stops.
func (st *stages) onClose(fn func()) {
	st.closers = append(st.closers, func() error { fn(); return nil })
}

// closeAll stops every component, the last started first.
func (st *stages) closeAll() error {
	var errs []error
	for i := len(st.closers) - 1; i >= 0; i-- {
		errs = append(errs, st.closers[i]())
	}
	return errors.Join(errs...)
}

// run starts the components and the goroutine that stops them, in the reverse order of
// their start (HTTP first, NATS connection last), when ctx ends. It returns the readiness
// check of the HTTP surface.
func (s *Stack) run(ctx context.Context) (ready func(context.Context) error, err error) {
	// Components stop one after another, so their contexts must not all end with ctx.
	st := &stages{base: context.WithoutCancel(ctx), failed: func() { s.cancel() }}
	defer func() {
		if err != nil {
			err = errors.Join(err, st.closeAll())
			close(s.done)
		}
	}()
	nc, err := nats.Connect(s.nats.URL(), nats.Name("fleetingest-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	st.onClose(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	if _, err := ingester.EnsureStreams(ctx, js, s.topology, s.cfg.Streams); err != nil {
		return nil, err
	}
	reg, err := registry.Open(ctx, js, s.topology.MappingBucket(), registry.Config{Logger: s.cfg.Logger.With("component", "registry")})
	if err != nil {
		return nil, err
	}
	st.start("mapping registry", reg.Run)
	maps, err := ingester.OpenShardMaps(ctx, js, s.topology, s.cfg.Logger.With("component", "shardmap"))
	if err != nil {
		return nil, err
	}
	st.start("shard map", maps.Run)
	if err := s.startIngesters(ctx, st, js); err != nil {
		return nil, err
	}
	devices, users, err := s.startAuth(ctx, st, js)
	if err != nil {
		return nil, err
	}
	mux, ready, err := s.startServices(st, nc, maps, reg, devices, users)
	if err != nil {
		return nil, err
	}
	hcfg := httpserver.Config{
		Handler:  mux,
		Ready:    []httpserver.ReadyFunc{ready},
		Gatherer: s.metrics,
		Logger:   s.cfg.Logger.With("component", "http"),
	}
	if s.cfg.InsecureNoAuth {
		hcfg.ReadyNote = auth.InsecureNote
	}
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

// startIngesters migrates every shard and starts its ingester.
func (s *Stack) startIngesters(ctx context.Context, st *stages, js jetstream.JetStream) error {
	log := s.cfg.Logger
	for i, dsn := range s.dsns {
		pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{ApplicationName: "fleetingest-ingester"})
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
		st.onClose(pool.Close)
		if _, err := store.Migrate(ctx, pool); err != nil {
			return fmt.Errorf("migrating shard %d: %w", i, err)
		}
		st0, err := store.New(ctx, pool, store.Config{Logger: log.With("component", "store", "shard", i)})
		if err != nil {
			return fmt.Errorf("shard %d store: %w", i, err)
		}
		icfg := shard.Config{
			JS:         js,
			Topology:   s.topology,
			Shard:      i,
			Store:      st0,
			Registerer: s.metrics,
			Logger:     log.With("component", "ingester", "shard", i),
		}
		if s.cfg.Tune.Ingester != nil {
			s.cfg.Tune.Ingester(&icfg)
		}
		st.start("ingester shard "+strconv.Itoa(i), func(ctx context.Context) error { return shard.Run(ctx, icfg) })
	}
	return nil
}

// startAuth verifies device and user tokens with the data folder's keys (made on first
// start) and mints the tokens the stack prints; with InsecureNoAuth it returns nils.
func (s *Stack) startAuth(ctx context.Context, st *stages, js jetstream.JetStream) (*auth.Devices, *auth.Users, error) {
	log := s.cfg.Logger.With("component", "auth")
	if s.cfg.InsecureNoAuth {
		log.Warn(auth.InsecureNote)
		return nil, nil, nil
	}
	keys, err := auth.EnsureDevKeys(s.cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	bucket, err := js.KeyValue(ctx, s.topology.RevocationBucket())
	if err != nil {
		return nil, nil, fmt.Errorf("opening bucket %s: %w", s.topology.RevocationBucket(), err)
	}
	devices, err := auth.NewDevices(keys.DeviceKeyDir, bucket, log)
	if err != nil {
		return nil, nil, err
	}
	st.start("device authentication", devices.Run)
	users, err := auth.NewUsers(ctx, auth.UsersConfig{KeyDir: keys.UserKeyDir, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	st.start("user authentication", users.Run)
	now := time.Now()
	if s.deviceToken, _, err = keys.DeviceSigner.DeviceToken(auth.PrefixScope(""), DevTokenTTL, now); err != nil {
		return nil, nil, fmt.Errorf("minting the dev device token: %w", err)
	}
	if s.adminToken, _, err = keys.UserSigner.UserToken("dev-admin", auth.RoleAdmin, DevTokenTTL, now); err != nil {
		return nil, nil, fmt.Errorf("minting the dev admin token: %w", err)
	}
	s.keys = keys
	return devices, users, nil
}

// startServices starts the gateway and the analytics service and returns the HTTP surface
// that serves both, with its readiness check.
func (s *Stack) startServices(st *stages, nc *nats.Conn, maps placement.Source, reg *registry.Registry, devices *auth.Devices, users *auth.Users) (http.Handler, func(context.Context) error, error) {
	log := s.cfg.Logger
	gcfg := gateway.Config{
		Topology:   s.topology,
		ShardMap:   maps,
		Placement:  reg,
		Registerer: s.metrics,
		Logger:     log.With("component", "gateway"),
	}
	acfg := analytics.Config{
		Shards:        shards.Config{DSNs: s.dsns},
		ShardMap:      maps,
		Registry:      reg,
		NATS:          nc,
		CommitSubject: s.topology.CommitSubject(),
		Registerer:    s.metrics,
		Logger:        log.With("component", "analytics"),
	}
	if devices != nil {
		gcfg.Devices = devices.DeviceVerifier
		acfg.Users = users
	}
	if s.cfg.Tune.Gateway != nil {
		s.cfg.Tune.Gateway(&gcfg)
	}
	gw, err := gateway.New(nc, gcfg)
	if err != nil {
		return nil, nil, err
	}
	st.start("gateway", gw.Run)

	if s.cfg.Tune.Analytics != nil {
		s.cfg.Tune.Analytics(&acfg)
	}
	an, err := analytics.New(acfg)
	if err != nil {
		return nil, nil, err
	}
	st.onClose(an.Close)
	st.start("analytics", an.Run)

	mux := http.NewServeMux()
	mux.Handle("/v1/telemetry", gw.Handler())
	mux.Handle("/v1/telemetry/", gw.Handler())
	mux.Handle("/", an.Handler())
	ready := func(ctx context.Context) error {
		if err := gw.Ready(ctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if err := an.Ready(ctx); err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
		return nil
	}
	return mux, ready, nil
}
