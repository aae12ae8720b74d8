package analytics

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.HistogramVec
	missing  prometheus.Counter
	// reads counts each shard's part of a question by shard, kind and where it was answered.
	reads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "request_duration_seconds",
			Help:    "Duration of analytics RPCs by procedure and Connect code.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"procedure", "code"}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "shard_failures_total",
			Help: "Shard queries that failed or timed out.",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fleetingest", Subsystem: "analytics", Name: "reads_total",
			Help: "Shard parts of questions by shard, kind (vehicle, meter, alerts) and where they were answered: memory (every hour held) or postgres.",
		}, []string{"shard", "kind", "source"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.missing, m.reads} {
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
				code = connect.CodeOf(err).String() // Unknown for an error without a code
			}
			m.requests.WithLabelValues(req.Spec().Procedure, code).Observe(time.Since(start).Seconds())
			return res, err
		}
	}
}
