package shard

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/ingester/store"
)

type metrics struct {
	batchReadings     prometheus.Histogram
	commitSeconds     prometheus.Histogram
	inserted          *prometheus.CounterVec
	duplicates        *prometheus.CounterVec
	terminated        prometheus.Counter
	redelivered       prometheus.Counter
	acked             prometheus.Counter
	writeErrors       prometheus.Counter
	lag               prometheus.Gauge
	partitionsCreated prometheus.Counter
	partitionsDropped prometheus.Counter
	noticeFailures    prometheus.Counter
	batchesSplit      prometheus.Counter
	parked            *prometheus.CounterVec
	parkErrors        prometheus.Counter
	consumerLost      prometheus.Counter
	consumerBound     prometheus.Gauge
}

const namespace, subsystem = "fleetingest", "ingester"

func newMetrics(reg prometheus.Registerer, shard int) (*metrics, error) {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(shard)}, reg)
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	m := &metrics{
		batchReadings: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "batch_readings",
			Help:    "Readings per batch written in one transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "commit_seconds",
			Help:    "Time to write and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		inserted:          prometheus.NewCounterVec(prometheus.CounterOpts(opts("rows_inserted_total", "History rows inserted, by kind.")), []string{"kind"}),
		duplicates:        prometheus.NewCounterVec(prometheus.CounterOpts(opts("duplicates_skipped_total", "Readings skipped because they were already stored, by kind.")), []string{"kind"}),
		terminated:        prometheus.NewCounter(prometheus.CounterOpts(opts("messages_terminated_total", "Stream messages refused because they do not decode to valid readings."))),
		redelivered:       prometheus.NewCounter(prometheus.CounterOpts(opts("messages_redelivered_total", "Stream messages received more than once."))),
		acked:             prometheus.NewCounter(prometheus.CounterOpts(opts("messages_acked_total", "Stream messages acknowledged after their batch committed."))),
		writeErrors:       prometheus.NewCounter(prometheus.CounterOpts(opts("write_errors_total", "Failed attempts to write a batch or a part of one (retried, or split when the database refuses it for good)."))),
		lag:               prometheus.NewGauge(prometheus.GaugeOpts(opts("consumer_lag_messages", "Messages of the shard's stream not yet acknowledged (pending plus in flight)."))),
		partitionsCreated: prometheus.NewCounter(prometheus.CounterOpts(opts("partitions_created_total", "History partitions created, ahead or on demand."))),
		partitionsDropped: prometheus.NewCounter(prometheus.CounterOpts(opts("partitions_dropped_total", "History partitions dropped past retention."))),
		noticeFailures:    prometheus.NewCounter(prometheus.CounterOpts(opts("commit_notices_failed_total", "Commit notices that could not be published (readers repair them by polling the hours' versions)."))),
		batchesSplit:      prometheus.NewCounter(prometheus.CounterOpts(opts("batches_split_total", "Batches the database refused for good, split until the refused readings were alone."))),
		parked:            prometheus.NewCounterVec(prometheus.CounterOpts(opts("readings_parked_total", "Readings the database refused for good, parked in the dead-letter stream, by kind.")), []string{"kind"}),
		parkErrors:        prometheus.NewCounter(prometheus.CounterOpts(opts("park_errors_total", "Failed attempts to park refused readings in the dead-letter stream (each is retried)."))),
		consumerLost:      prometheus.NewCounter(prometheus.CounterOpts(opts("consumer_lost_total", "Times the shard's consumer was found deleted (alone or with its stream) while the ingester was bound to it."))),
		consumerBound:     prometheus.NewGauge(prometheus.GaugeOpts(opts("consumer_bound", "1 while the ingester is bound to the shard's consumer, 0 while it waits for the consumer to be made (again)."))),
	}
	for _, c := range []prometheus.Collector{m.batchReadings, m.commitSeconds, m.inserted, m.duplicates, m.terminated,
		m.redelivered, m.acked, m.writeErrors, m.lag, m.partitionsCreated, m.partitionsDropped, m.noticeFailures,
		m.batchesSplit, m.parked, m.parkErrors, m.consumerLost, m.consumerBound} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering ingester metrics: %w", err)
		}
	}
	for _, kind := range []string{"meter", "vehicle"} {
		m.inserted.WithLabelValues(kind)
		m.duplicates.WithLabelValues(kind)
		m.parked.WithLabelValues(kind)
	}
	return m, nil
}

func (m *metrics) observe(r store.Result) {
	m.inserted.WithLabelValues("meter").Add(float64(r.Meters.Inserted))
	m.inserted.WithLabelValues("vehicle").Add(float64(r.Vehicles.Inserted))
	m.duplicates.WithLabelValues("meter").Add(float64(r.Meters.Duplicates))
	m.duplicates.WithLabelValues("vehicle").Add(float64(r.Vehicles.Duplicates))
	m.partitionsCreated.Add(float64(len(r.PartitionsCreated)))
}
