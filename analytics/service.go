// Package analytics is the analytics service: the Connect handler of
// fleetingest.analytics.v1.AnalyticsService (Connect, gRPC and gRPC-Web) with its REST paths
// transcoded by vanguard from the same handler, answering per-vehicle, per-meter and
// fleet-wide efficiency questions from the shards that own the data (placement by mapping
// interval), the vehicle → meter mappings (registry), and device status.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/vanguard"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics/hourcache"
	"github.com/fleetingest/fleetingest/analytics/query"
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
	// SlotMap places keys on shards; its shard count must match len(Shards.DSNs). Required.
	SlotMap *placement.SlotMap
	// Registry is the mapping registry; the caller runs it (Registry.Run). Required.
	Registry *registry.Registry
	// Users verifies the bearer token of every call (REST, Connect, gRPC, gRPC-Web and server
	// reflection): viewer reads, admin also writes mappings. Nil serves without
	// authentication (`--insecure-no-auth`, for experiments only).
	Users auth.UserVerifier
	// MaxRequestBytes bounds a request's body (after decompression) and every message:
	// REST answers 413, Connect, gRPC and gRPC-Web ResourceExhausted. Default
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// RequestTimeout bounds every RPC (each shard query is bounded by Shards.QueryTimeout
	// too). Default 10s.
	RequestTimeout time.Duration
	// DefaultThreshold is the alert threshold when a request gives none. Default 0.85.
	DefaultThreshold float64
	// CacheHours is how many hours of each shard's rollups are kept in memory for alerts and
	// per-vehicle questions (checked against the hours' versions on every request). Longer
	// windows are read from Postgres on every request. Default hourcache.DefaultMaxHours.
	CacheHours int
	// CacheRawHours is how many hours of each shard's raw history are kept in memory for the
	// partial first and last hours of per-vehicle windows. Default
	// hourcache.DefaultMaxRawHours.
	CacheRawHours int
	// CacheBytes bounds the memory the hours in memory take, shared equally by the shards.
	// Default DefaultCacheBytes.
	CacheBytes int64
	// MaxLateness is how far in the past a mapping write may start (its `from`): the readings'
	// acceptance window (the gateway's --max-lateness), so a mapping can be written for every
	// reading still accepted. At most the registry's retention (Registry.Retention), so no
	// interval written is trimmed while readings it places are accepted. Default 7 days
	// (telemetry.DefaultLimits).
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
	DefaultCacheBytes     = 256 << 20
)

func (c Config) withDefaults() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.DefaultThreshold == 0 {
		c.DefaultThreshold = DefaultThreshold
	}
	if c.CacheHours == 0 {
		c.CacheHours = hourcache.DefaultMaxHours
	}
	if c.CacheRawHours == 0 {
		c.CacheRawHours = hourcache.DefaultMaxRawHours
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MaxLateness == 0 {
		c.MaxLateness = telemetry.DefaultLimits().MaxLateness
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c
}

func (c Config) validate() error {
	if c.SlotMap == nil {
		return placement.ErrNoSlotMap
	}
	if c.Registry == nil {
		return errors.New("no mapping registry")
	}
	if c.MaxRequestBytes < 1 || c.MaxRequestBytes > 1<<30 {
		return fmt.Errorf("max request bytes %d out of range 1..%d", c.MaxRequestBytes, 1<<30)
	}
	if c.CacheHours < 0 || c.CacheRawHours < 0 || c.CacheBytes < 0 {
		return fmt.Errorf("cache hours %d, raw hours %d and bytes %d must not be negative", c.CacheHours, c.CacheRawHours, c.CacheBytes)
	}
	if c.MaxLateness < 0 || c.MaxLateness > c.Registry.Retention() {
		return fmt.Errorf("max lateness %s out of range 0..%s (the mapping registry's retention)", c.MaxLateness, c.Registry.Retention())
	}
	if n := len(c.Shards.DSNs); n != c.SlotMap.Shards {
		return fmt.Errorf("%d shard DSNs for a slot map of %d shards", n, c.SlotMap.Shards)
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
	// hours holds each shard's hours in memory, by shard; stop ends their loaders.
	hours []*hourcache.Cache
	stop  context.CancelFunc
	done  sync.WaitGroup
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
	if err := s.startCaches(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startCaches keeps each shard's hours in memory, with a loader per shard until Close.
func (s *Service) startCaches() error {
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	for i := range s.shards.Len() {
		c := hourcache.New(hourcache.Config{
			MaxHours:    s.cfg.CacheHours,
			MaxRawHours: s.cfg.CacheRawHours,
			MaxBytes:    s.cfg.CacheBytes / int64(s.shards.Len()),
			Do: func(ctx context.Context, fn func(ctx context.Context, db query.DBTX) error) error {
				return s.shards.Do(ctx, i, func(ctx context.Context, db shards.DBTX) error { return fn(ctx, db) })
			},
			Now:    s.cfg.Now,
			Loaded: s.metrics.hoursLoaded.WithLabelValues(strconv.Itoa(i)),
			Logger: s.cfg.Logger.With("shard", i),
		})
		if err := s.metrics.cacheBytes(strconv.Itoa(i), c.Bytes); err != nil {
			return err
		}
		s.hours = append(s.hours, c)
		s.done.Go(func() { c.Run(ctx) })
	}
	return nil
}

// Handler serves Connect, gRPC and gRPC-Web on the service's path and the REST paths of its
// google.api.http annotations. Serve it over HTTP/1.1 and unencrypted HTTP/2.
func (s *Service) Handler() http.Handler { return s.handler }

// Ready reports whether the service should take questions: the mapping copy has caught up,
// and each shard's last day of hours has been read into memory once, so that the alert
// questions a new replica gets first are answered from memory. A shard that does not answer
// does not make the service unready: its questions answer Unavailable on every replica alike,
// while the other shards' questions and the mappings are still answered (the logs and
// fleetingest_analytics_shard_failures_total tell of it).
func (s *Service) Ready(ctx context.Context) error {
	if r, ok := s.cfg.Users.(interface{ Ready(context.Context) error }); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("user token issuer: %w", err)
		}
	}
	if !s.reg.Ready() {
		return errors.New("mapping registry has not caught up yet")
	}
	for i, c := range s.hours {
		if !c.Warm() {
			return fmt.Errorf("shard %d: the last day's hours are still being read into memory", i)
		}
	}
	return nil
}

// Close stops the cache loaders and closes the shard pools.
func (s *Service) Close() {
	s.stop()
	s.done.Wait()
	s.shards.Close()
}

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
