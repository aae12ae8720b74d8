package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// openMappings validates the fleet's topology, connects to NATS as name and opens the fleet's
// mapping registry, waiting for its bucket to exist. The caller closes the connection and
// runs the registry.
func openMappings(ctx context.Context, topo ingester.Topology, url, creds, name string, log *slog.Logger) (*nats.Conn, *registry.Registry, error) {
	if err := topo.Validate(); err != nil {
		return nil, nil, err
	}
	nc, err := connectNATS(url, creds, name, log)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	reg, err := openRegistry(ctx, js, topo.MappingBucket(), log)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, reg, nil
}

// newMetricsRegistry returns a component's Prometheus registry with the Go and process
// collectors.
func newMetricsRegistry() *prometheus.Registry {
	prom := prometheus.NewRegistry()
	prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return prom
}
