package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// fleetConn is a component's view of its fleet on NATS: the connection, the mapping registry
// and the shard map, each a copy its caller keeps current (run).
type fleetConn struct {
	nc   *nats.Conn
	reg  *registry.Registry
	maps *ingester.ShardMaps
}

// run keeps the registry and the shard map current until ctx ends.
func (f *fleetConn) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.reg.Run(ctx) })
	g.Go(func() error { return f.maps.Run(ctx) })
	return g.Wait()
}

// openFleet validates the fleet's topology, connects to NATS as name and opens the fleet's
// mapping registry and shard map, waiting for their buckets to exist. The caller closes the
// connection and runs the copies.
func openFleet(ctx context.Context, topo ingester.Topology, url, creds, name string, log *slog.Logger) (*fleetConn, error) {
	if err := topo.Validate(); err != nil {
		return nil, err
	}
	nc, err := connectNATS(url, creds, name, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	f := &fleetConn{nc: nc}
	if f.reg, err = openRegistry(ctx, js, topo.MappingBucket(), log); err == nil {
		f.maps, err = waitFor(ctx, "shard-map bucket "+topo.ShardMapBucket(), log, func(ctx context.Context) (*ingester.ShardMaps, error) {
			return ingester.OpenShardMaps(ctx, js, topo, log)
		})
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return f, nil
}

// newMetricsRegistry returns a component's Prometheus registry with the Go and process
// collectors.
func newMetricsRegistry() *prometheus.Registry {
	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return prom
}
