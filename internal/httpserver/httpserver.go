// Package httpserver serves a component's HTTP surface: explicit timeouts, HTTP/1.1 and
// unencrypted HTTP/2 (so gRPC clients work without TLS), /healthz, /readyz and /metrics, and
// graceful shutdown when the context ends.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// ReadyFunc reports why a component is not ready, or nil.
type ReadyFunc func(ctx context.Context) error

// Config of a server.
type Config struct {
	// Addr to listen on, e.g. "127.0.0.1:8080".
	Addr string
	// Handler serves everything but the three operational paths.
	Handler http.Handler
	// Ready checks, all of which must pass for /readyz to answer 200.
	Ready []ReadyFunc
	// ReadyNote, when set, is added to /readyz's answer (a warning an operator must see).
	ReadyNote string
	// Gatherer backs /metrics; nil serves no /metrics.
	Gatherer prometheus.Gatherer
	// MetricsAddr, when set, serves /metrics on its own listener there (in a cluster: a port
	// the Ingress does not publish) instead of on Addr. Serve only.
	MetricsAddr string
	// MaxInFlight bounds the requests Handler serves at once; one more is answered 503 with
	// Retry-After at once, before its body is read. Default DefaultMaxInFlight; negative: no
	// bound.
	MaxInFlight int
	// ReadTimeout bounds reading a request, headers and body: a body that trickles in is cut
	// there. Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// ShutdownTimeout bounds graceful shutdown. Default 20s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxInFlight = 1024
	DefaultReadTimeout = 30 * time.Second
	// maxConcurrentStreams bounds an HTTP/2 connection's streams: together with the
	// in-flight bound, a few connections cannot open hundreds of requests each.
	maxConcurrentStreams = 100
)

func (c Config) withDefaults() Config {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// busyBody is the answer to a request over the in-flight bound, in the google.rpc.Status
// shape of the whole HTTP surface.
var busyBody = []byte(`{"code":14,"message":"too many requests in flight, retry later"}`)

// limitInFlight answers 503 with Retry-After to a request that would exceed limit in flight.
func limitInFlight(limit int, next http.Handler) http.Handler {
	if limit < 0 {
		return next
	}
	slots := make(chan struct{}, limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Retry-After", "1")
			h.Set("Connection", "close") // HTTP/1.1: the unread body goes with the connection
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(busyBody)
		}
	})
}

// Mux returns the handler with /healthz, /readyz and /metrics mounted in front of h, whose
// requests in flight it bounds.
func Mux(cfg Config) http.Handler {
	cfg = cfg.withDefaults()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, ready := range cfg.Ready {
			if err := ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
				if cfg.ReadyNote != "" {
					_, _ = fmt.Fprintln(w, cfg.ReadyNote)
				}
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
		if cfg.ReadyNote != "" {
			_, _ = fmt.Fprintln(w, cfg.ReadyNote)
		}
	})
	if cfg.Gatherer != nil && cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	if cfg.Handler != nil {
		mux.Handle("/", limitInFlight(cfg.MaxInFlight, cfg.Handler))
	}
	return mux
}

// Serve listens on cfg.Addr (and cfg.MetricsAddr) and serves until ctx ends, then shuts
// down gracefully.
func Serve(ctx context.Context, cfg Config) error {
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	if cfg.MetricsAddr == "" || cfg.Gatherer == nil {
		return ServeListener(ctx, l, cfg)
	}
	ml, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("listening on %s: %w", cfg.MetricsAddr, err)
	}
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ServeListener(gctx, l, cfg) })
	g.Go(func() error {
		return serve(gctx, ml, metrics, cfg)
	})
	return g.Wait()
}

// ServeListener is Serve on a listener the caller opened (tests pass one on port 0).
func ServeListener(ctx context.Context, l net.Listener, cfg Config) error {
	return serve(ctx, l, Mux(cfg), cfg)
}

// serve serves h on l until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, l net.Listener, h http.Handler, cfg Config) error {
	cfg = cfg.withDefaults()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.ReadTimeout + time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	cfg.Logger.Info("serving HTTP", "addr", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down HTTP on %s: %w", l.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTP on %s: %w", l.Addr(), err)
	}
	return nil
}
