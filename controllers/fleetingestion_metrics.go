package controllers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/ingester"
)

// metrics are the operator's own series, beside controller-runtime's reconcile metrics.
type metrics struct {
	streamRepairs *prometheus.CounterVec
	consumerLag   *prometheus.GaugeVec
	streamBytes   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		streamRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetingest_operator_stream_repairs_total",
			Help: "Streams and buckets the operator created again or put back after they were deleted or changed outside it.",
		}, []string{"namespace", "fleet"}),
		consumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetingest_operator_consumer_lag_messages",
			Help: "Messages of a shard's stream not yet acknowledged by its ingester, as last observed.",
		}, []string{"namespace", "fleet", "shard"}),
		streamBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetingest_operator_stream_bytes",
			Help: "Bytes held by a shard's stream, as last observed (the stream refuses new readings at its MaxBytes).",
		}, []string{"namespace", "fleet", "shard"}),
	}
	if reg != nil {
		reg.MustRegister(m.streamRepairs, m.consumerLag, m.streamBytes)
	}
	return m
}

// observeStreams records one pass's stream observations. repaired counts what was put back:
// drifted streams, and streams or the bucket created again after the first pass.
func (m *metrics) observeStreams(ns, fleet string, p ingester.Provisioned, firstPass bool) {
	repaired := 0
	for _, s := range p.Streams {
		shard := fmt.Sprint(s.Shard)
		m.consumerLag.WithLabelValues(ns, fleet, shard).Set(float64(s.Pending))
		m.streamBytes.WithLabelValues(ns, fleet, shard).Set(float64(s.Bytes))
		if len(s.Updated) > 0 || (s.Created && !firstPass) {
			repaired++
		}
	}
	for _, b := range p.Buckets {
		if b.Created && !firstPass {
			repaired++
		}
	}
	if repaired > 0 {
		m.streamRepairs.WithLabelValues(ns, fleet).Add(float64(repaired))
	}
}

// forget drops a deleted fleet's series.
func (m *metrics) forget(ns, fleet string) {
	labels := prometheus.Labels{"namespace": ns, "fleet": fleet}
	m.streamRepairs.DeletePartialMatch(labels)
	m.consumerLag.DeletePartialMatch(labels)
	m.streamBytes.DeletePartialMatch(labels)
}
