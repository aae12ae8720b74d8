package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg      prometheus.Registerer
	requests *prometheus.HistogramVec
	missing  prometheus.Counter
	// hoursLoaded counts hours read into memory, by shard.
	hoursLoaded *prometheus.CounterVec
	// vehicleReads counts per-vehicle shard reads by source: memory or postgres.
	vehicleReads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "request_duration_seconds",
			Help:    "Duration of analytics RPCs by procedure and Connect code.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"procedure", "code"}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "shard_failures_total",
			Help: "Shard queries that failed or timed out.",
		}),
		hoursLoaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "cache_hours_loaded_total",
			Help: "Hours of rollups or raw history read into memory (new hours, and hours whose data changed).",
		}, []string{"shard"}),
		vehicleReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "vehicle_reads_total",
			Help: "Per-vehicle reads of one shard's part of a window, by source: memory (every hour held at its current version) or postgres.",
		}, []string{"source"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.missing, m.hoursLoaded, m.vehicleReads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering analytics metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			start := time.Now()
			res, err := next(ctx, req)
			code := "ok"
			if err != nil {
				code = connect.CodeOf(err).String()
				var ce *connect.Error
				if !errors.As(err, &ce) {
					code = connect.CodeUnknown.String()
				}
			}
			m.requests.WithLabelValues(req.Spec().Procedure, code).Observe(time.Since(start).Seconds())
			return res, err
		}
	}
}

// cacheBytes reports the memory estimate of one shard's hours in memory.
func (m *metrics) cacheBytes(shard string, bytes func() int64) error {
	err := m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "fleetingest", Subsystem: "analytics", Name: "cache_bytes",
		Help:        "Estimated memory of the hours of rollups and raw history held for a shard.",
		ConstLabels: prometheus.Labels{"shard": shard},
	}, func() float64 { return float64(bytes()) }))
	if err != nil {
		return fmt.Errorf("registering the cache size of shard %s: %w", shard, err)
	}
	return nil
}
