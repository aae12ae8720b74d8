package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

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

// run starts the components and the goroutine that stops them, in the reverse order of
// their start (HTTP first, NATS connection last), when ctx ends. It returns the readiness
// check of the HTTP surface.
func (s *Stack) run(ctx context.Context) (ready func(context.Context) error, err error) {
	cfg := s.cfg
	log := cfg.Logger
	// Components stop one after another, so their contexts must not all end with ctx.
	base := context.WithoutCancel(ctx)
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, closeAll())
			close(s.done)
		}
	}()
	failed := func() { s.cancel() }
	start := func(name string, fn func(context.Context) error) {
		closers = append(closers, goStage(base, name, failed, fn))
	}

	slotMap, err := placement.NewSlotMap(cfg.Shards)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(s.nats.URL(), nats.Name("fleetingest-dev"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	closers = append(closers, func() error { nc.Close(); return nil })
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	if _, err := ingester.EnsureStreams(ctx, js, s.topology, cfg.Streams); err != nil {
		return nil, err
	}

	stores := make([]*store.Store, cfg.Shards)
	for i, dsn := range s.dsns {
		pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{ApplicationName: "fleetingest-ingester"})
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		closers = append(closers, func() error { pool.Close(); return nil })
		if _, err := store.Migrate(ctx, pool); err != nil {
			return nil, fmt.Errorf("migrating shard %d: %w", i, err)
		}
		if stores[i], err = store.New(ctx, pool, store.Config{Logger: log.With("component", "store", "shard", i)}); err != nil {
			return nil, fmt.Errorf("shard %d store: %w", i, err)
		}
	}

	reg, err := registry.Open(ctx, js, s.topology.MappingBucket(), registry.Config{Logger: log.With("component", "registry")})
	if err != nil {
		return nil, err
	}
	start("mapping registry", reg.Run)

	for i := range cfg.Shards {
		icfg := shard.Config{
			JS:         js,
			Topology:   s.topology,
			Shard:      i,
			Store:      stores[i],
			Registerer: s.metrics,
			Logger:     log.With("component", "ingester", "shard", i),
		}
		if cfg.Tune.Ingester != nil {
			cfg.Tune.Ingester(&icfg)
		}
		start("ingester shard "+strconv.Itoa(i), func(ctx context.Context) error { return shard.Run(ctx, icfg) })
	}

	gcfg := gateway.Config{
		Topology:   s.topology,
		SlotMap:    slotMap,
		Placement:  reg,
		Registerer: s.metrics,
		Logger:     log.With("component", "gateway"),
	}
	if cfg.Tune.Gateway != nil {
		cfg.Tune.Gateway(&gcfg)
	}
	gw, err := gateway.New(nc, gcfg)
	if err != nil {
		return nil, err
	}
	start("gateway", gw.Run)

	acfg := analytics.Config{
		Shards:     shards.Config{DSNs: s.dsns},
		SlotMap:    slotMap,
		Registry:   reg,
		Registerer: s.metrics,
		Logger:     log.With("component", "analytics"),
	}
	if cfg.Tune.Analytics != nil {
		cfg.Tune.Analytics(&acfg)
	}
	an, err := analytics.New(acfg)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() error { an.Close(); return nil })

	mux := http.NewServeMux()
	mux.Handle("/v1/telemetry", gw.Handler())
	mux.Handle("/v1/telemetry/", gw.Handler())
	mux.Handle("/", an.Handler())
	ready = func(ctx context.Context) error {
		if err := gw.Ready(ctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if err := an.Ready(ctx); err != nil {
			return fmt.Errorf("analytics: %w", err)
		}
		return nil
	}
	start("http", func(ctx context.Context) error {
		return httpserver.ServeListener(ctx, s.listener, httpserver.Config{
			Handler:  mux,
			Ready:    []httpserver.ReadyFunc{ready},
			Gatherer: s.metrics,
			Logger:   log.With("component", "http"),
		})
	})

	go func() {
		defer close(s.done)
		<-ctx.Done()
		log.Info("stopping dev stack")
		s.err = errors.Join(closeAll(), s.stopServers())
		log.Info("dev stack stopped")
	}()
	return ready, nil
}
