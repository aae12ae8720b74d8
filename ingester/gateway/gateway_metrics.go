package gateway

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/api/telemetry"
)

// Reasons a reading is refused, as the rejected counter labels them.
const (
	reasonMalformed   = "malformed"
	reasonImplausible = "implausible"
	reasonTooLarge    = "too_large"
	reasonUnavailable = "unavailable"
	reasonForbidden   = "permission_denied"
)

type metrics struct {
	requests        *prometheus.CounterVec
	acceptedTotal   *prometheus.CounterVec
	rejectedTotal   *prometheus.CounterVec
	perMessage      prometheus.Histogram
	publishSeconds  prometheus.Histogram
	publishFailures prometheus.Counter
	unauthenticated *prometheus.CounterVec

	acceptedMeter, acceptedVehicle prometheus.Counter
	reg                            prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetingest_gateway_requests_total",
			Help: "HTTP requests answered, by path and status code (499: the client went away).",
		}, []string{"path", "code"}),
		acceptedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetingest_gateway_readings_accepted_total",
			Help: "Readings acknowledged by JetStream and answered 2xx, by kind.",
		}, []string{"kind"}),
		rejectedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetingest_gateway_readings_rejected_total",
			Help: "Readings refused, by kind (unknown when it could not be told) and reason (malformed, implausible, too_large, permission_denied, unavailable).",
		}, []string{"kind", "reason"}),
		perMessage: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetingest_gateway_readings_per_message",
			Help:    "Readings coalesced into one stream message.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetingest_gateway_publish_duration_seconds",
			Help:    "Time from publishing a stream message to its PubAck (or failure).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetingest_gateway_publish_failures_total",
			Help: "Stream messages JetStream did not acknowledge (NATS down, stream full, timeout).",
		}),
	}
	m.unauthenticated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fleetingest_gateway_unauthenticated_total",
		Help: "Requests refused 401 for their device token, by reason (missing, malformed, bad_signature, unknown_key, expired, revoked, wrong_kind).",
	}, []string{"reason"})
	cs := []prometheus.Collector{m.requests, m.acceptedTotal, m.rejectedTotal, m.perMessage, m.publishSeconds, m.publishFailures, m.unauthenticated}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering gateway metrics: %w", err)
		}
	}
	m.acceptedMeter = m.acceptedTotal.WithLabelValues(telemetry.KindMeter.String())
	m.acceptedVehicle = m.acceptedTotal.WithLabelValues(telemetry.KindVehicle.String())
	return m, nil
}

// queue exports the depth of a shard's queue.
func (m *metrics) queue(q *shardQueue) {
	_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "fleetingest_gateway_queue_depth",
		Help:        "Readings waiting to be coalesced into a stream message, per shard.",
		ConstLabels: prometheus.Labels{"shard": strconv.Itoa(q.shard)},
	}, func() float64 { return float64(q.depth.Load()) }))
}

func (m *metrics) request(path string, code int) {
	m.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
}

func (m *metrics) accepted(k telemetry.Kind, n int) {
	if k == telemetry.KindMeter {
		m.acceptedMeter.Add(float64(n))
	} else {
		m.acceptedVehicle.Add(float64(n))
	}
}

func (m *metrics) rejected(k telemetry.Kind, reason string, n int) {
	m.rejectedTotal.WithLabelValues(k.String(), reason).Add(float64(n))
}

func (m *metrics) rejectedPayload(kind string, c telemetry.Class, n int) {
	reason := reasonMalformed
	switch c {
	case telemetry.Implausible:
		reason = reasonImplausible
	case telemetry.TooLarge:
		reason = reasonTooLarge
	}
	m.rejectedTotal.WithLabelValues(kind, reason).Add(float64(n))
}
