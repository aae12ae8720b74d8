// Package analytics is the analytics service: the Connect handler of
// fleetingest.analytics.v1.AnalyticsService (Connect, gRPC, gRPC-Web, and REST by vanguard)
// answering per-vehicle, per-meter and fleet-wide efficiency questions from the shards that
// own the data (placement by mapping interval), the vehicle → meter mappings, and status.
package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/vanguard"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/auth"
)

// Config of the service.
type Config struct {
	// Shards are the shard pools' configuration (DSNs by shard index). Required.
	Shards shards.Config
	// ShardMap places keys on shards by the time of their readings (a copy that follows the
	// fleet's map); Shards.DSNs must name every shard it has. Required.
	ShardMap placement.Source
	// Registry is the mapping registry; the caller runs it (Registry.Run). Required.
	Registry *registry.Registry
	// Users verifies the bearer token of every call: viewer reads, admin also writes
	// mappings. Nil serves without authentication (`--insecure-no-auth`, experiments only).
	Users auth.UserVerifier
	// MaxRequestBytes bounds a request's body (after decompression) and every message (REST
	// 413, else ResourceExhausted). Default DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// RequestTimeout bounds every RPC (each shard query also Shards.QueryTimeout). Default 10s.
	RequestTimeout time.Duration
	// DefaultThreshold is the alert threshold when a request gives none. Default 0.85.
	DefaultThreshold float64
	// Memory is how each shard's hours are held in memory (Do, Now, Reads and Logger are the
	// service's own); MaxBytes is shared equally by the shards.
	Memory read.Config
	// NATS receives the ingesters' commit notices on CommitSubject, so that memory follows
	// the writes within a fraction of a second; without it memory follows the polls only.
	NATS          *nats.Conn
	CommitSubject string
	// MaxLateness is how far in the past a mapping write may start: the readings' acceptance
	// window (the gateway's --max-lateness), at most the registry's retention. Default 7 days.
	MaxLateness time.Duration
	// Now is the clock for windows that end "now". Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Registerer receives the service's metrics. Default: a private registry (not exported).
	Registerer prometheus.Registerer
}

// Defaults of Config.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultThreshold      = 0.85
)

func (c Config) withDefaults() Config {
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, DefaultMaxRequestBytes)
	c.DefaultThreshold = cmp.Or(c.DefaultThreshold, DefaultThreshold)
	c.Memory.MaxBytes = cmp.Or(c.Memory.MaxBytes, read.DefaultMaxBytes)
	c.MaxLateness = cmp.Or(c.MaxLateness, telemetry.DefaultLimits().MaxLateness)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Registerer = cmp.Or[prometheus.Registerer](c.Registerer, prometheus.NewRegistry())
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.ShardMap == nil {
		return placement.ErrNoSlotMap
	}
	if c.Registry == nil {
		return errors.New("no mapping registry")
	}
	if c.MaxRequestBytes < 1 || c.MaxRequestBytes > 1<<30 {
		return fmt.Errorf("max request bytes %d out of range 1..%d", c.MaxRequestBytes, 1<<30)
	}
	if c.Memory.Horizon < 0 || c.Memory.MaxRawHours < 0 || c.Memory.MaxBytes < 0 {
		return fmt.Errorf("memory horizon %s, raw hours %d and bytes %d must not be negative", c.Memory.Horizon, c.Memory.MaxRawHours, c.Memory.MaxBytes)
	}
	if c.NATS != nil && c.CommitSubject == "" {
		return errors.New("commit notices need their subject")
	}
	if c.MaxLateness < 0 || c.MaxLateness > c.Registry.Retention() {
		return fmt.Errorf("max lateness %s out of range 0..%s (the mapping registry's retention)", c.MaxLateness, c.Registry.Retention())
	}
	return nil
}

// Service answers the analytics API.
type Service struct {
	cfg     Config
	shards  *shards.Set
	reg     *registry.Registry
	metrics *metrics
	handler http.Handler
	// readers are the one seam between the handlers and each shard's data, by shard: they
	// answer windows from memory or from Postgres and count which, status from Postgres.
	readers []*read.Shard
	// lastAlerts is the last alert answer made from memory (alertLists).
	lastAlerts atomic.Pointer[alertAnswer]
}

// owners is the shards that held key's readings over [from, to), by the shard map: the one
// placement rule of every question. A shard this replica has no DSN for is Unavailable.
func (s *Service) owners(key string, from, to time.Time) ([]placement.Owner, error) {
	m := s.cfg.ShardMap.Current()
	if m == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the shard map has not arrived yet"))
	}
	os := m.Owners(key, from, to)
	for _, o := range os {
		if o.Shard >= len(s.readers) {
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("shard %d is not among this replica's %d shards: it needs the new shard's DSN", o.Shard, len(s.readers)))
		}
	}
	return os, nil
}

// New opens the shard pools (connections are made lazily) and builds the handler.
func New(cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("analytics config: %w", err)
	}
	set, err := shards.Open(context.Background(), cfg.Shards)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		set.Close()
		return nil, err
	}
	s := &Service{cfg: cfg, shards: set, reg: cfg.Registry, metrics: m}
	interceptors := []connect.Interceptor{m.interceptor(), cutErrors()}
	if cfg.Users != nil {
		interceptors = append(interceptors, auth.NewConnectInterceptor(cfg.Users, requiredRole))
	}
	path, h := analyticsv1connect.NewAnalyticsServiceHandler(&handler{s: s},
		connect.WithInterceptors(append(interceptors, timeoutInterceptor(cfg.RequestTimeout))...),
		connect.WithReadMaxBytes(int(cfg.MaxRequestBytes)),
		// Answers are a few hundred bytes: compressing them costs more than it saves.
		connect.WithCompressMinBytes(16<<10),
		connect.WithCodec(jsonCodec{name: "json"}), connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}))
	tc, err := vanguard.NewTranscoder([]*vanguard.Service{vanguard.NewService(path, h,
		// A dashboard's or a link's extra parameters (utm_source, …) are not errors.
		vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{DiscardUnknownQueryParams: true}),
		vanguard.WithMaxMessageBufferBytes(uint32(cfg.MaxRequestBytes)))})
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("building the REST transcoder: %w", err)
	}
	// gRPC server reflection, so `grpcurl -plaintext host:port list` works.
	reflector := grpcreflect.NewStaticReflector(analyticsv1connect.AnalyticsServiceName)
	mux := http.NewServeMux()
	mux.Handle(grpcreflect.NewHandlerV1(reflector, connect.WithInterceptors(interceptors...)))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, connect.WithInterceptors(interceptors...)))
	mux.Handle("/", tc)
	s.handler = limitBodies(cfg.MaxRequestBytes, mux)
	for i := range set.Len() {
		mc := cfg.Memory
		mc.MaxBytes /= int64(set.Len())
		mc.Do = func(ctx context.Context, fn func(ctx context.Context, db shards.DBTX) error) error {
			return set.Do(ctx, i, fn)
		}
		mc.Now, mc.Reads, mc.Logger = cfg.Now, m.reads.MustCurryWith(prometheus.Labels{"shard": strconv.Itoa(i)}), cfg.Logger.With("shard", i)
		s.readers = append(s.readers, read.New(mc))
	}
	return s, nil
}

// Run keeps each shard's hours in memory, following the ingesters' commit notices, until
// ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.NATS != nil {
		sub, err := s.cfg.NATS.Subscribe(s.cfg.CommitSubject, func(m *nats.Msg) {
			shard, changed, err := telemetry.UnmarshalNotice(m.Data)
			if err != nil || shard < 0 || shard >= len(s.readers) {
				s.cfg.Logger.Warn("ignoring a commit notice", "subject", m.Subject, "shard", shard, "err", err)
				return
			}
			s.readers[shard].Notify(changed)
		})
		if err != nil {
			return fmt.Errorf("subscribing to commit notices on %s: %w", s.cfg.CommitSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, r := range s.readers {
		g.Go(func() error { return r.Run(ctx) })
	}
	return g.Wait()
}

// Handler serves Connect, gRPC and gRPC-Web on the service's path and the REST paths of its
// google.api.http annotations. Serve it over HTTP/1.1 and unencrypted HTTP/2.
func (s *Service) Handler() http.Handler { return s.handler }

// Ready reports whether the service should take questions: the mapping copy has caught up,
// and each shard's last day of hours has been read into memory once. A shard that does not
// answer does not make it unready: its questions answer Unavailable on every replica alike.
func (s *Service) Ready(ctx context.Context) error {
	if r, ok := s.cfg.Users.(interface{ Ready(context.Context) error }); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("user token issuer: %w", err)
		}
	}
	if !s.reg.Ready() {
		return errors.New("mapping registry has not caught up yet")
	}
	if m := s.cfg.ShardMap.Current(); m == nil || m.Shards() > len(s.readers) {
		return fmt.Errorf("the shard map has not arrived, or names shards beyond this replica's %d", len(s.readers))
	}
	for i, r := range s.readers {
		if !r.Ready() {
			return fmt.Errorf("shard %d: the last day's hours are still being read into memory", i)
		}
	}
	return nil
}

// Close closes the shard pools (after Run returned).
func (s *Service) Close() { s.shards.Close() }

// requiredRole is the role a procedure needs: admin to change mappings, viewer for the rest.
func requiredRole(procedure string) auth.Role {
	switch procedure {
	case analyticsv1connect.AnalyticsServiceCreateMappingProcedure,
		analyticsv1connect.AnalyticsServiceUpdateMappingProcedure,
		analyticsv1connect.AnalyticsServiceDeleteMappingProcedure:
		return auth.RoleAdmin
	}
	return auth.RoleViewer
}

func timeoutInterceptor(d time.Duration) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, req)
		}
	}
}

// handler implements the generated interface; each method lives beside its domain logic.
type handler struct {
	analyticsv1connect.UnimplementedAnalyticsServiceHandler
	s *Service
}
