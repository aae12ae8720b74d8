package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/shard"
	"github.com/fleetingest/fleetingest/ingester/store"
	"github.com/fleetingest/fleetingest/internal/httpserver"
)

// pauseAfterCommitEnv enables the --pause-after-commit fault injection from the environment.
const pauseAfterCommitEnv = "FLEETINGEST_PAUSE_AFTER_COMMIT"

// ingesterOptions are the ingester command's flags.
type ingesterOptions struct {
	dsnOptions
	natsURL     string
	natsCreds   string
	namespace   string
	fleet       string
	limits      telemetry.Limits
	shard       int
	metricsAddr string
	httpAddr    string
	maxConns    int32

	batchSize        int
	batchWait        time.Duration
	historyRetention time.Duration
	rollupRetention  time.Duration
	partitionsAhead  int
	pauseAfterCommit bool
}

func newIngesterCommand() *cobra.Command {
	o := &ingesterOptions{}
	cmd := &cobra.Command{
		Use:   "ingester",
		Short: "Consume one shard's stream into the shard's Postgres database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runIngester(cmd.Context(), *o, logger("ingester"))
		},
	}
	o.addIngesterFlags(cmd)
	return cmd
}

func (o *ingesterOptions) addIngesterFlags(cmd *cobra.Command) {
	o.addFlags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	fs.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its streams)")
	fs.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its streams)")
	fs.IntVar(&o.shard, "shard", 0, "index of the shard this ingester consumes")
	fs.Int("shards", 0, "ignored: an ingester consumes its --shard whatever the fleet's count")
	_ = fs.MarkDeprecated("shards", "an ingester needs only --shard")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "address to serve /healthz, /readyz and /metrics on")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics on this address instead of --http-addr (a port no Ingress publishes)")
	fs.Int32Var(&o.maxConns, "max-conns", 4, "largest number of database connections")
	fs.IntVar(&o.batchSize, "batch-size", shard.DefaultBatchSize, "readings that close a batch (one transaction)")
	fs.DurationVar(&o.batchWait, "batch-wait", shard.DefaultBatchWait, "how long a batch waits for more readings after its first message")
	fs.DurationVar(&o.historyRetention, "history-retention", store.DefaultHistoryRetention, "how long raw readings are kept (whole UTC days are dropped)")
	fs.DurationVar(&o.rollupRetention, "rollup-retention", store.DefaultRollupRetention, "how long hourly rollups are kept")
	fs.IntVar(&o.partitionsAhead, "partitions-ahead", store.DefaultPartitionsAhead, "days of history partitions created ahead of today")
	d := telemetry.DefaultLimits()
	fs.DurationVar(&o.limits.MaxLateness, "max-lateness", d.MaxLateness, "the gateway's --max-lateness: readings older than that when their message was published are refused")
	fs.DurationVar(&o.limits.MaxFutureSkew, "max-future-skew", d.MaxFutureSkew, "the gateway's --max-future-skew")
	fs.BoolVar(&o.pauseAfterCommit, "pause-after-commit", os.Getenv(pauseAfterCommitEnv) != "",
		"fault injection: after a commit, print a line to stderr and block before acknowledging (also "+pauseAfterCommitEnv+")")
	_ = fs.MarkHidden("pause-after-commit")
}

// shardConfig maps the flags onto the shard ingester's configuration.
func (o ingesterOptions) shardConfig(js jetstream.JetStream, topo ingester.Topology, s shard.Store, reg prometheus.Registerer, log *slog.Logger) shard.Config {
	cfg := shard.Config{
		Limits:     o.limits,
		JS:         js,
		Topology:   topo,
		Shard:      o.shard,
		Store:      s,
		BatchSize:  o.batchSize,
		BatchWait:  o.batchWait,
		Retention:  store.Retention{History: o.historyRetention, Rollup: o.rollupRetention},
		Registerer: reg,
		Logger:     log,
	}
	if o.pauseAfterCommit {
		cfg.AfterCommit = shard.PauseAfterCommit(os.Stderr)
	}
	return cfg
}

// runIngester migrates the shard database (under the advisory lock, so replicas starting
// together are safe), then consumes until ctx ends. A batch not committed by then is left
// unacknowledged for redelivery.
func runIngester(ctx context.Context, o ingesterOptions, log *slog.Logger) error {
	if o.shard < 0 {
		return fmt.Errorf("--shard %d is negative", o.shard)
	}
	// The least topology that holds the shard: an ingester reads no shard map.
	topo := ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: o.shard + 1}
	if err := topo.Validate(); err != nil {
		return err
	}
	dsn, err := o.resolve()
	if err != nil {
		return err
	}

	pool, err := store.OpenPool(ctx, dsn, store.PoolConfig{MaxConns: o.maxConns, ApplicationName: fmt.Sprintf("fleetingest-ingester-%d", o.shard)})
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := store.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	log.Info("shard schema up to date", "applied", applied)
	st, err := store.New(ctx, pool, store.Config{PartitionsAhead: o.partitionsAhead, Logger: log.With("shard", o.shard)})
	if err != nil {
		return err
	}

	nc, err := connectNATS(o.natsURL, o.natsCreds, fmt.Sprintf("fleetingest-ingester-%d", o.shard), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	prom := newMetricsRegistry()
	in, err := shard.New(o.shardConfig(js, topo, st, prom, log))
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return in.Run(gctx) })
	g.Go(func() error {
		return httpserver.Serve(gctx, httpserver.Config{
			Addr:        o.httpAddr,
			MetricsAddr: o.metricsAddr,
			Ready:       []httpserver.ReadyFunc{in.Ready, st.Ping},
			Gatherer:    prom,
			Logger:      log,
		})
	})
	err = g.Wait()
	// Flush the acknowledgements of the last committed batch before closing.
	if drainErr := nc.Drain(); drainErr != nil && !errors.Is(drainErr, nats.ErrConnectionClosed) {
		log.Warn("draining NATS connection", "err", drainErr)
	}
	return err
}
