package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/httpserver"
)

// gatewayOptions are the gateway command's flags.
type gatewayOptions struct {
	natsURL     string
	natsCreds   string
	namespace   string
	fleet       string
	metricsAddr string
	maxInFlight int
	httpAddr    string
	deviceKeys  string
	insecure    bool

	maxLateness           time.Duration
	maxFutureSkew         time.Duration
	linger                time.Duration
	maxReadingsPerMessage int
	publishers            int
	queueSize             int
	publishTimeout        time.Duration
	maxBodyBytes          int64
	maxBatchBodyBytes     int64
	maxBatchReadings      int
}

func newGatewayCommand() *cobra.Command {
	o := gatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve POST /v1/telemetry and /v1/telemetry/batch and publish readings to the shards' streams",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd.Context(), o, logger("gateway"))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	fs.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its streams)")
	fs.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its streams)")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "address to serve HTTP on (also /healthz, /readyz, /metrics)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics on this address instead of --http-addr (a port no Ingress publishes)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", httpserver.DefaultMaxInFlight, "requests served at once; more are answered 503 with Retry-After")
	fs.StringVar(&o.deviceKeys, "device-keys", "", "folder of device-token verification keys (<kid>.pub, e.g. a mounted Secret; re-read when it changes)")
	fs.BoolVar(&o.insecure, "insecure-no-auth", false, "accept readings without a device token: for experiments only")
	d := telemetry.DefaultLimits()
	fs.DurationVar(&o.maxLateness, "max-lateness", d.MaxLateness, "oldest accepted reading timestamp, relative to now")
	fs.DurationVar(&o.maxFutureSkew, "max-future-skew", d.MaxFutureSkew, "how far in the future a reading timestamp may be")
	fs.DurationVar(&o.linger, "linger", gateway.DefaultLinger, "how long a stream message waits for more readings (at most 2ms)")
	fs.IntVar(&o.maxReadingsPerMessage, "max-readings-per-message", gateway.DefaultMaxReadingsPerMessage, "readings coalesced into one stream message at most")
	fs.IntVar(&o.publishers, "publishers", gateway.DefaultPublishers, "stream messages in flight per shard")
	fs.IntVar(&o.queueSize, "queue-size", gateway.DefaultQueueSize, "readings queued per shard before answering 503")
	fs.DurationVar(&o.publishTimeout, "publish-timeout", gateway.DefaultPublishTimeout, "bound on one publish and its acknowledgement")
	fs.Int64Var(&o.maxBodyBytes, "max-body-bytes", gateway.DefaultMaxBodyBytes, "largest body of POST /v1/telemetry")
	fs.Int64Var(&o.maxBatchBodyBytes, "max-batch-body-bytes", gateway.DefaultMaxBatchBodyBytes, "largest body of POST /v1/telemetry/batch")
	fs.IntVar(&o.maxBatchReadings, "max-batch-readings", gateway.DefaultMaxBatchReadings, "most readings in one batch")
	return cmd
}

// gatewayConfig maps the flags onto a gateway configuration.
func (o gatewayOptions) gatewayConfig(topo ingester.Topology, maps placement.Source, p gateway.Placement, reg prometheus.Registerer, log *slog.Logger) gateway.Config {
	return gateway.Config{
		Topology:              topo,
		ShardMap:              maps,
		Placement:             p,
		Limits:                telemetry.Limits{MaxLateness: o.maxLateness, MaxFutureSkew: o.maxFutureSkew},
		Linger:                o.linger,
		MaxReadingsPerMessage: o.maxReadingsPerMessage,
		MaxBodyBytes:          o.maxBodyBytes,
		MaxBatchBodyBytes:     o.maxBatchBodyBytes,
		MaxBatchReadings:      o.maxBatchReadings,
		QueueSize:             o.queueSize,
		Publishers:            o.publishers,
		PublishTimeout:        o.publishTimeout,
		Registerer:            reg,
		Logger:                log,
	}
}

// connectNATS connects and keeps reconnecting forever. Publishes are not buffered while
// disconnected, so the gateway answers 503 at once instead of after a timeout.
func connectNATS(url, creds, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// openRegistry binds to the mapping bucket, retrying while NATS or the bucket is not there
// yet (the operator may still be creating it).
func openRegistry(ctx context.Context, js jetstream.JetStream, bucket string, log *slog.Logger) (*registry.Registry, error) {
	return waitFor(ctx, "mapping bucket "+bucket, log, func(ctx context.Context) (*registry.Registry, error) {
		return registry.Open(ctx, js, bucket, registry.Config{Logger: log})
	})
}

// waitFor calls open until it succeeds or ctx ends, every 2 s, logging why it waits.
func waitFor[T any](ctx context.Context, what string, log *slog.Logger, open func(context.Context) (T, error)) (T, error) {
	for {
		v, err := open(ctx)
		if err == nil {
			return v, nil
		}
		log.Warn(what+" not available yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("opening %s: %w", what, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// deviceAuth returns the device-token verification of a gateway: the keys of keyDir and the
// fleet's revocation bucket (waited for, as the operator may still be creating it). With
// insecure it returns nil and the note /readyz shows.
func deviceAuth(ctx context.Context, nc *nats.Conn, topo ingester.Topology, keyDir string, insecure bool, log *slog.Logger) (*auth.Devices, string, error) {
	switch {
	case insecure && keyDir != "":
		return nil, "", errors.New("give --device-keys or --insecure-no-auth, not both")
	case insecure:
		log.Warn(auth.InsecureNote)
		return nil, auth.InsecureNote, nil
	case keyDir == "":
		return nil, "", errors.New("--device-keys is required (or --insecure-no-auth, for experiments only)")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, "", fmt.Errorf("creating JetStream context: %w", err)
	}
	bucket, err := waitFor(ctx, "revocation bucket "+topo.RevocationBucket(), log, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.KeyValue(ctx, topo.RevocationBucket())
	})
	if err != nil {
		return nil, "", err
	}
	d, err := auth.NewDevices(keyDir, bucket, log.With("component", "auth"))
	return d, "", err
}

// runGateway serves until ctx ends, then stops accepting requests, publishes what was
// queued, answers in-flight requests and closes the NATS connection.
func runGateway(ctx context.Context, o gatewayOptions, log *slog.Logger) error {
	// The shard count is the shard map's (its copy follows the fleet's): the gateway grows
	// its queues to it.
	topo := ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: 1}
	fleet, err := openFleet(ctx, topo, o.natsURL, o.natsCreds, "fleetingest-gateway", log)
	if err != nil {
		return err
	}
	nc := fleet.nc
	defer nc.Close()
	prom := newMetricsRegistry()
	gcfg := o.gatewayConfig(topo, fleet.maps, fleet.reg, prom, log)
	devices, note, err := deviceAuth(ctx, nc, topo, o.deviceKeys, o.insecure, log)
	if err != nil {
		return err
	}
	if devices != nil {
		gcfg.Devices = devices.DeviceVerifier
	}
	gw, err := gateway.New(nc, gcfg)
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return fleet.run(gctx) })
	if devices != nil {
		g.Go(func() error { return devices.Run(gctx) })
	}
	g.Go(func() error { return gw.Run(gctx) })
	g.Go(func() error {
		return httpserver.Serve(gctx, httpserver.Config{
			Addr:        o.httpAddr,
			MetricsAddr: o.metricsAddr,
			MaxInFlight: o.maxInFlight,
			Handler:     gw.Handler(),
			Ready:       []httpserver.ReadyFunc{gw.Ready},
			ReadyNote:   note,
			Gatherer:    prom,
			Logger:      log,
		})
	})
	err = g.Wait()
	if drainErr := nc.Drain(); drainErr != nil && !errors.Is(drainErr, nats.ErrConnectionClosed) {
		log.Warn("draining NATS connection", "err", drainErr)
	}
	return err
}
