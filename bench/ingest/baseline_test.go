package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/bench/report"
	"github.com/fleetingest/fleetingest/internal/loadgen"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// seedSchema is the seed's tables as its README gives them (snake_case).
const seedSchema = `
CREATE TABLE vehicle_telemetry_history (id bigserial PRIMARY KEY, vehicle_id text NOT NULL, soc float8 NOT NULL,
  kwh_delivered_dc float8 NOT NULL, battery_temp float8 NOT NULL, ts timestamptz NOT NULL);
CREATE INDEX ON vehicle_telemetry_history (vehicle_id, ts);
CREATE TABLE meter_telemetry_history (id bigserial PRIMARY KEY, meter_id text NOT NULL, kwh_consumed_ac float8 NOT NULL,
  voltage float8 NOT NULL, ts timestamptz NOT NULL);
CREATE INDEX ON meter_telemetry_history (meter_id, ts);
CREATE TABLE current_vehicle_status (vehicle_id text PRIMARY KEY, soc float8 NOT NULL, last_kwh_delivered_dc float8 NOT NULL,
  battery_temp float8 NOT NULL, last_updated_at timestamptz NOT NULL);
CREATE TABLE current_meter_status (meter_id text PRIMARY KEY, last_kwh_consumed_ac float8 NOT NULL, voltage float8 NOT NULL,
  last_updated_at timestamptz NOT NULL);`

// seedPayload is the seed's polymorphic body.
type seedPayload struct {
	MeterID        string    `json:"meterId"`
	KwhConsumedAc  float64   `json:"kwhConsumedAc"`
	Voltage        float64   `json:"voltage"`
	VehicleID      string    `json:"vehicleId"`
	Soc            float64   `json:"soc"`
	KwhDeliveredDc float64   `json:"kwhDeliveredDc"`
	BatteryTemp    float64   `json:"batteryTemp"`
	Timestamp      time.Time `json:"timestamp"`
}

// seedHandler is the seed's ingestion path in Go: per request, one INSERT into history and
// one UPSERT of the current status. It counts the readings it stored in accepted.
func seedHandler(pool *pgxpool.Pool, accepted *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p seedPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx := r.Context()
		var err error
		status := "meter telemetry ingested"
		if p.VehicleID != "" {
			status = "vehicle telemetry ingested"
			_, err = pool.Exec(ctx, `INSERT INTO vehicle_telemetry_history (vehicle_id, soc, kwh_delivered_dc, battery_temp, ts) VALUES ($1,$2,$3,$4,$5)`,
				p.VehicleID, p.Soc, p.KwhDeliveredDc, p.BatteryTemp, p.Timestamp)
			if err == nil {
				_, err = pool.Exec(ctx, `INSERT INTO current_vehicle_status VALUES ($1,$2,$3,$4,$5)
					ON CONFLICT (vehicle_id) DO UPDATE SET soc = excluded.soc, last_kwh_delivered_dc = excluded.last_kwh_delivered_dc,
					battery_temp = excluded.battery_temp, last_updated_at = excluded.last_updated_at`,
					p.VehicleID, p.Soc, p.KwhDeliveredDc, p.BatteryTemp, p.Timestamp)
			}
		} else {
			_, err = pool.Exec(ctx, `INSERT INTO meter_telemetry_history (meter_id, kwh_consumed_ac, voltage, ts) VALUES ($1,$2,$3,$4)`,
				p.MeterID, p.KwhConsumedAc, p.Voltage, p.Timestamp)
			if err == nil {
				_, err = pool.Exec(ctx, `INSERT INTO current_meter_status VALUES ($1,$2,$3,$4)
					ON CONFLICT (meter_id) DO UPDATE SET last_kwh_consumed_ac = excluded.last_kwh_consumed_ac,
					voltage = excluded.voltage, last_updated_at = excluded.last_updated_at`,
					p.MeterID, p.KwhConsumedAc, p.Voltage, p.Timestamp)
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		accepted.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, `{"status":%q}`, status) // a failed write means the client left: no one to tell
	})
}

func seedDatabase(b *testing.B) *pgxpool.Pool {
	c := pgtest.Start(b)
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(b, c))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), seedSchema); err != nil {
		b.Fatal(err)
	}
	return pool
}

// benchSeed serves the seed design and posts n single readings to it, as the single-reading
// run does to fleetingest; it reports requests (= readings) per second and records the
// readings stored in each second (accepted and committed at once, as the seed answers after
// its INSERT).
func benchSeed(b *testing.B, rec *report.Recorder, n int) float64 {
	pool := seedDatabase(b)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var accepted atomic.Int64
	srv := &http.Server{Handler: seedHandler(pool, &accepted), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() {
		if err := srv.Close(); err != nil {
			b.Error(err)
		}
	})
	b.ResetTimer()
	sampler := report.StartSampler(func() (float64, error) { return float64(accepted.Load()), nil })
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: "http://" + l.Addr().String(), Readings: n, Concurrency: 128, Meters: 5000, Vehicles: 5000})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	perSecond, err := sampler.Stop()
	if err != nil {
		b.Fatal(err)
	}
	if res.Failed > 0 {
		b.Fatalf("%d requests failed: %s", res.Failed, res.FirstError)
	}
	rate := float64(res.Accepted) / res.Duration.Seconds()
	rec.Metric(rate, "readings/s")
	rec.Metric(ms(res.Percentile(50)), "p50-ms")
	rec.Metric(ms(res.Percentile(99)), "p99-ms")
	rec.Latency(report.LatencyOf(res.Percentile))
	rec.Accepted(perSecond)
	b.ReportMetric(0, "ns/op")
	return rate
}

// benchCopy COPYs n rows of the same shape into the seed's history tables.
func benchCopy(b *testing.B, rec *report.Recorder, n int) float64 {
	pool := seedDatabase(b)
	cfg := loadgen.Config{Meters: 5000, Vehicles: 5000, Readings: n, Start: time.Now().Add(-24 * time.Hour), Interval: time.Minute, Seed: 1}
	meters, vehicles := make([][]any, 0, n/2+1), make([][]any, 0, n/2+1)
	var decodeErr error
	err := loadgen.Generate(cfg, func(reading []byte) bool {
		var p seedPayload
		if decodeErr = json.NewDecoder(bytes.NewReader(reading)).Decode(&p); decodeErr != nil {
			return false
		}
		if p.VehicleID != "" {
			vehicles = append(vehicles, []any{p.VehicleID, p.Soc, p.KwhDeliveredDc, p.BatteryTemp, p.Timestamp})
		} else {
			meters = append(meters, []any{p.MeterID, p.KwhConsumedAc, p.Voltage, p.Timestamp})
		}
		return true
	})
	if err != nil || decodeErr != nil {
		b.Fatal(err, decodeErr)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"meter_telemetry_history"}, []string{"meter_id", "kwh_consumed_ac", "voltage", "ts"}, pgx.CopyFromRows(meters)); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"vehicle_telemetry_history"}, []string{"vehicle_id", "soc", "kwh_delivered_dc", "battery_temp", "ts"}, pgx.CopyFromRows(vehicles)); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(n) / elapsed.Seconds()
	rec.Metric(rate, "readings/s")
	b.ReportMetric(0, "ns/op")
	return rate
}
