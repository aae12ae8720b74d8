// Package fleetload prepares Postgres shards with readings for analytics tests and
// benchmarks: the shard schema and partitions through the ingester's store, batches through
// the store's own WriteBatch (so rollups are exactly what the ingester writes), and COPY
// straight into history plus the same rollup aggregates for loads of tens of millions of rows.
package fleetload

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester/store"
)

// VehicleReading is one vehicle row; MeterID is the meter it was mapped to at TS (” if none).
type VehicleReading struct {
	VehicleID string
	TS        time.Time
	SOC, Temp float64
	DC        int64 // mWh
	MeterID   string
}

// Proto is the reading as a stream message carries it.
func (v VehicleReading) Proto() *telemetrypb.VehicleReading {
	return &telemetrypb.VehicleReading{VehicleId: v.VehicleID, Soc: v.SOC, MwhDeliveredDc: v.DC, BatteryTemp: v.Temp, TimestampMicros: v.TS.UnixMicro(), MeterId: v.MeterID}
}

// MeterReading is one meter row.
type MeterReading struct {
	MeterID string
	TS      time.Time
	AC      int64 // mWh
	Voltage float64
}

// Proto is the reading as a stream message carries it.
func (m MeterReading) Proto() *telemetrypb.MeterReading {
	return &telemetrypb.MeterReading{MeterId: m.MeterID, MwhConsumedAc: m.AC, Voltage: m.Voltage, TimestampMicros: m.TS.UnixMicro()}
}

// Shard is one prepared shard database.
type Shard struct {
	Pool  *pgxpool.Pool
	Store *store.Store
}

// Prepare migrates the shard schema and creates the history partitions of the days in
// [from, to).
func Prepare(ctx context.Context, pool *pgxpool.Pool, from, to time.Time) (*Shard, error) {
	if _, err := store.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	st, err := store.New(ctx, pool, store.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	var days []time.Time
	for d := from.UTC().Truncate(24 * time.Hour); d.Before(to); d = d.Add(24 * time.Hour) {
		days = append(days, d)
	}
	if _, err := st.EnsurePartitions(ctx, days...); err != nil {
		return nil, fmt.Errorf("creating partitions: %w", err)
	}
	return &Shard{Pool: pool, Store: st}, nil
}

// Write stores readings through the store's WriteBatch, in batches of at most batch
// readings of each kind, and returns how many rows were inserted (duplicates are not).
func (s *Shard) Write(ctx context.Context, vs []VehicleReading, ms []MeterReading, batch int) (int, error) {
	inserted := 0
	for i, j := 0, 0; i < len(vs) || j < len(ms); {
		var pv []*telemetrypb.VehicleReading
		var pm []*telemetrypb.MeterReading
		for ; i < len(vs) && len(pv) < batch; i++ {
			pv = append(pv, vs[i].Proto())
		}
		for ; j < len(ms) && len(pm) < batch; j++ {
			pm = append(pm, ms[j].Proto())
		}
		res, err := s.Store.WriteBatch(ctx, pm, pv)
		if err != nil {
			return inserted, err
		}
		inserted += res.Meters.Inserted + res.Vehicles.Inserted
	}
	return inserted, nil
}
