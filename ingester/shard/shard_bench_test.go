package shard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// BenchmarkIngesterDrain measures end-to-end consumption: 100 stream messages of 128
// readings each (64 per kind, the gateway's typical coalescing) are published, then the
// ingester, with default batching, drains them into Postgres. Reports readings per second.
func BenchmarkIngesterDrain(b *testing.B) {
	e := newEnv(b, pgtest.NewDatabase(b, cluster))
	cfg := e.config()
	cfg.BatchSize, cfg.BatchWait = DefaultBatchSize, DefaultBatchWait
	const msgs, perKind = 100, 64
	ctx := b.Context()
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	round := 0
	publishRound := func() {
		for i := range msgs {
			rb := &telemetrypb.ReadingBatch{}
			ts := base.Add(time.Duration(round) * time.Minute).UnixMicro()
			for j := range perKind {
				id := fmt.Sprintf("%05d", i*perKind+j)
				rb.Meters = append(rb.Meters, &telemetrypb.MeterReading{MeterId: "meter-" + id, MwhConsumedAc: 500000, Voltage: 230, TimestampMicros: ts})
				rb.Vehicles = append(rb.Vehicles, &telemetrypb.VehicleReading{VehicleId: "EV-" + id, Soc: 50, MwhDeliveredDc: 400000, BatteryTemp: 30, TimestampMicros: ts, MeterId: "meter-" + id})
			}
			data, err := telemetry.MarshalBatch(rb)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.js.Publish(ctx, topo.Subject(shardIdx), data); err != nil {
				b.Fatal(err)
			}
		}
		round++
	}
	in, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(runCtx) //nolint:errcheck // stopped by cancel
	n := 0
	for b.Loop() {
		b.StopTimer()
		publishRound()
		want := float64(round * msgs * perKind)
		b.StartTimer()
		for value(b, in.metrics.inserted.WithLabelValues("meter")) < want {
			time.Sleep(2 * time.Millisecond)
		}
		for value(b, in.metrics.acked) < float64(round*msgs) {
			time.Sleep(2 * time.Millisecond)
		}
		n++
	}
	b.ReportMetric(float64(n*msgs*perKind*2)/b.Elapsed().Seconds(), "readings/s")
}
