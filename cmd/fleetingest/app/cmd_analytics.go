package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/httpserver"
)

// analyticsOptions are the analytics command's flags.
type analyticsOptions struct {
	natsURL        string
	natsCreds      string
	namespace      string
	fleet          string
	metricsAddr    string
	maxInFlight    int
	httpAddr       string
	shardDSNs      []string
	shardDSNFiles  []string
	maxConns       int32
	queryTimeout   time.Duration
	requestTimeout time.Duration
	memory         read.Config
	maxLateness    time.Duration
	userKeys       string
	oidc           auth.OIDCConfig
	insecure       bool
}

func newAnalyticsCommand() *cobra.Command {
	o := &analyticsOptions{}
	cmd := &cobra.Command{
		Use:   "analytics",
		Short: "Serve the analytics API (Connect, gRPC, gRPC-Web and REST) over every shard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAnalytics(cmd.Context(), *o, logger("analytics"))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.natsURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (optional)")
	fs.StringVar(&o.namespace, "namespace", "dev", "Kubernetes namespace of the fleet (names its mapping bucket)")
	fs.StringVar(&o.fleet, "fleet", "local", "FleetIngestion name (names its mapping bucket)")
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "address of the API, /healthz, /readyz and /metrics (HTTP/1.1 and h2c)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics on this address instead of --http-addr (a port no Ingress publishes)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", httpserver.DefaultMaxInFlight, "requests served at once; more are answered 503 with Retry-After")
	fs.StringArrayVar(&o.shardDSNs, "shard-dsn", nil, "database URL of shard i, repeated in shard order")
	fs.StringArrayVar(&o.shardDSNFiles, "shard-dsn-file", nil, "file holding shard i's database URL, repeated in shard order (instead of --shard-dsn)")
	fs.Int32Var(&o.maxConns, "max-conns", shards.DefaultMaxConns, "database connections per shard")
	fs.DurationVar(&o.queryTimeout, "query-timeout", shards.DefaultQueryTimeout, "deadline of every shard query")
	fs.DurationVar(&o.requestTimeout, "request-timeout", analytics.DefaultRequestTimeout, "deadline of every request")
	fs.DurationVar(&o.memory.Recent, "memory-recent", read.DefaultRecent, "how far back every shard's hours are held in memory from the start (a new replica answers them at once)")
	fs.DurationVar(&o.memory.Horizon, "memory-horizon", read.DefaultHorizon, "how far back hours asked for are brought into memory (older windows are read from Postgres)")
	fs.Int64Var(&o.memory.MaxBytes, "memory-bytes", read.DefaultMaxBytes, "memory the hours held may take, shared by the shards (least recently used dropped first)")
	fs.DurationVar(&o.memory.Poll, "memory-poll", read.DefaultPoll, "how often the hours' versions are read, to catch changes no commit notice told")
	fs.StringVar(&o.userKeys, "user-keys", "", "folder of user-token verification keys of a local issuer (<kid>.pub, e.g. a mounted Secret; re-read when it changes)")
	fs.StringVar(&o.oidc.IssuerURL, "oidc-issuer-url", "", "OIDC issuer whose tokens users present (instead of --user-keys)")
	fs.StringVar(&o.oidc.Audience, "oidc-audience", auth.DefaultAudience, "audience (client id) the issuer's tokens must name")
	fs.StringVar(&o.oidc.RolesClaim, "oidc-roles-claim", auth.DefaultRolesClaim, "claim holding the user's roles (viewer, admin); a dotted path such as realm_access.roles")
	fs.BoolVar(&o.insecure, "insecure-no-auth", false, "serve without user tokens: for experiments only")
	fs.DurationVar(&o.maxLateness, "max-lateness", telemetry.DefaultLimits().MaxLateness, "the gateway's --max-lateness: how far in the past a mapping write may start (its from); raise it for an import of older history")
	fs.IntVar(&o.memory.MaxRawHours, "memory-raw-hours", read.DefaultMaxRawHours, "hours of each shard's raw readings held for the partial first and last hours of windows")
	return cmd
}

// dsns returns the shard DSNs from --shard-dsn or --shard-dsn-file.
func (o analyticsOptions) dsns() ([]string, error) {
	switch {
	case len(o.shardDSNs) > 0 && len(o.shardDSNFiles) > 0:
		return nil, errors.New("give either --shard-dsn or --shard-dsn-file, not both")
	case len(o.shardDSNs) > 0:
		return o.shardDSNs, nil
	case len(o.shardDSNFiles) > 0:
		out := make([]string, len(o.shardDSNFiles))
		for i, f := range o.shardDSNFiles {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading DSN of shard %d: %w", i, err)
			}
			out[i] = strings.TrimSpace(string(data))
		}
		return out, nil
	}
	return nil, errors.New("--shard-dsn (or --shard-dsn-file) is required, once per shard")
}

// userAuth returns the user-token verification of the analytics service, or with insecure
// nil and the note /readyz shows.
func (o analyticsOptions) userAuth(ctx context.Context, log *slog.Logger) (*auth.Users, string, error) {
	switch {
	case o.insecure && (o.userKeys != "" || o.oidc.IssuerURL != ""):
		return nil, "", errors.New("--insecure-no-auth excludes --user-keys and --oidc-issuer-url")
	case o.insecure:
		log.Warn(auth.InsecureNote)
		return nil, auth.InsecureNote, nil
	case (o.userKeys == "") == (o.oidc.IssuerURL == ""):
		return nil, "", errors.New("give exactly one of --user-keys and --oidc-issuer-url (or --insecure-no-auth, for experiments only)")
	}
	u, err := auth.NewUsers(ctx, auth.UsersConfig{KeyDir: o.userKeys, OIDC: o.oidc, Logger: log.With("component", "auth")})
	return u, "", err
}

// runAnalytics watches the mapping bucket and serves the API until ctx ends.
func runAnalytics(ctx context.Context, o analyticsOptions, log *slog.Logger) error {
	dsns, err := o.dsns()
	if err != nil {
		return err
	}
	topo := ingester.Topology{Namespace: o.namespace, Fleet: o.fleet, Shards: len(dsns)}
	fleet, err := openFleet(ctx, topo, o.natsURL, o.natsCreds, "fleetingest-analytics", log)
	if err != nil {
		return err
	}
	defer fleet.nc.Close()
	prom := newMetricsRegistry()
	users, note, err := o.userAuth(ctx, log)
	if err != nil {
		return err
	}
	acfg := analytics.Config{
		Shards:         shards.Config{DSNs: dsns, MaxConns: o.maxConns, QueryTimeout: o.queryTimeout},
		ShardMap:       fleet.maps,
		Registry:       fleet.reg,
		RequestTimeout: o.requestTimeout,
		Memory:         o.memory,
		NATS:           fleet.nc,
		CommitSubject:  topo.CommitSubject(),
		MaxLateness:    o.maxLateness,
		Logger:         log,
		Registerer:     prom,
	}
	if users != nil {
		acfg.Users = users
	}
	svc, err := analytics.New(acfg)
	if err != nil {
		return err
	}
	defer svc.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return fleet.run(gctx) })
	g.Go(func() error { return svc.Run(gctx) })
	if users != nil {
		g.Go(func() error { return users.Run(gctx) })
	}
	g.Go(func() error {
		return httpserver.Serve(gctx, httpserver.Config{
			Addr:        o.httpAddr,
			MetricsAddr: o.metricsAddr,
			MaxInFlight: o.maxInFlight,
			Handler:     svc.Handler(),
			Ready:       []httpserver.ReadyFunc{svc.Ready},
			ReadyNote:   note,
			Gatherer:    prom,
			Logger:      log,
		})
	})
	return g.Wait()
}
