// Package loadgen simulates an EV fleet against a gateway: chargers (meters, grid-side AC)
// and vehicles (battery-side DC) report every interval, each vehicle charges for a while at
// the one charger it keeps, and each charger turns AC into DC at its own efficiency, a
// chosen fraction of them badly. It writes each vehicle's mapping through the analytics API
// before any of its readings, posts the readings one a request or in NDJSON batches,
// measures what it saw (accepted readings, accept latency) and derives from the readings
// accepted which chargers and vehicles fall below the fault threshold: the answer the
// alerts must give.
//
// A run is reproducible: the same Config and Seed give the same readings (values, and
// timestamps relative to the run's start).
//
// # Timeline
//
// Reading k (k = 1, 2, …) of every device is stamped Start + k×Interval and carries the
// energy of the interval that ends there. Every device reports every interval: a vehicle
// that is not charging sends 0 kWh, a charger with no vehicle charging sends 0 kWh.
//
//   - Live (Duration > 0): Start is the moment the run begins, and each interval is sent
//     when the clock reaches its timestamp.
//   - Config.Start (in the past): readings are stamped from it, and mappings are written
//     from it (the analytics API's backfill: the vehicles must have no mapping then yet).
//   - As fast as possible, with mappings: a mapping written without a start holds from
//     the moment it is written, so Start is after the last mapping write.
//   - As fast as possible, without mappings: Start is the run's span before now, so that
//     the last reading is not in the future.
//
// Whatever the start, an interval is sent no earlier than MaxLead before its timestamp
// (the gateway refuses readings more than 5 minutes ahead): a run that reaches past that
// paces itself to the clock.
//
// # Physics
//
// Vehicle v charges at charger v mod Meters. Each vehicle plugs in once, for a quarter to a
// half of the run, so every vehicle charges during it; while charging, its power is the
// smaller of the charger's and the vehicle's rating, tapering above 80 % state of charge,
// the battery warms towards ambient plus a rise proportional to power, and the site's
// voltage sags with the power it draws. A charger's reading of an interval is the DC of its
// vehicles in that interval divided by its efficiency (0.90–0.95, or 0.70–0.80 for a
// faulty charger). Energies are whole milliwatt-hours; what does not make a whole one is
// carried to the next reading, so a charger's AC over any run is its DC over its efficiency
// to within 1 mWh.
package loadgen

import (
	"context"
	"fmt"
	"time"
)

// FaultThreshold is the efficiency below which a charger or vehicle counts as faulty in
// the truth (the alerts' usual threshold).
const FaultThreshold = 0.85

// Efficiency ranges a charger's efficiency is drawn from (uniformly, [Min, Max)).
const (
	// HealthyEfficiencyMin is the lowest efficiency of a sound charger.
	HealthyEfficiencyMin = 0.90
	// HealthyEfficiencyMax bounds a sound charger's efficiency from above.
	HealthyEfficiencyMax = 0.95
	// FaultyEfficiencyMin is the lowest efficiency of a faulty charger.
	FaultyEfficiencyMin = 0.70
	// FaultyEfficiencyMax bounds a faulty charger's efficiency from above.
	FaultyEfficiencyMax = 0.80
)

// Result of a run.
type Result struct {
	// Seed the run used (Config.Seed, or the random one drawn).
	Seed uint64
	// Chargers is the number of chargers, FaultyChargers how many of them are faulty.
	Chargers, FaultyChargers int
	// Mappings is the number of vehicle mappings written.
	Mappings int
	// Requests is the number of telemetry requests made, Sent the readings they carried.
	Requests, Sent int
	// Accepted and Rejected count readings: accepted (2xx) and refused (4xx, or listed as
	// rejected in a batch answer).
	Accepted, Rejected int
	// Failed counts requests that got no answer (transport errors) or a 5xx: their readings
	// are neither accepted nor rejected.
	Failed int
	// Duration is the wall time from the first reading sent to the last answer.
	Duration time.Duration
	// FirstReading and LastReading are the timestamps of the first and last readings sent.
	FirstReading, LastReading time.Time
	// FirstError is the first failure seen, FirstRejection the first reason a reading was
	// refused, for the report.
	FirstError, FirstRejection string
	// Interrupted is true when the context ended the run before its end.
	Interrupted bool
	// Truth is what the alerts should say about the readings accepted.
	Truth Truth

	latency *histogram
}

// Percentile returns the p-th percentile (0–100) of the accept latencies (requests answered
// 2xx), to within about 3 %.
func (r Result) Percentile(p float64) time.Duration {
	return r.latency.percentile(p)
}

// ReadingsPerSecond is accepted readings over the run's wall time.
func (r Result) ReadingsPerSecond() float64 {
	return perSecond(r.Accepted, r.Duration)
}

// RequestsPerSecond is requests over the run's wall time.
func (r Result) RequestsPerSecond() float64 {
	return perSecond(r.Requests, r.Duration)
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Progress is a run's figures so far.
type Progress struct {
	Elapsed                                    time.Duration
	Requests, Sent, Accepted, Rejected, Failed int
	// P50 and P99 are accept latency percentiles so far.
	P50, P99 time.Duration
}

// Run writes the mappings (with WriteMappings), then sends the readings and returns what
// happened. An error means the run could not happen (invalid Config, a mapping refused);
// rejected readings and failed requests are counted in the Result. When ctx ends, no more
// readings are sent, the requests in flight are answered, and the Result says Interrupted.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	f := newFleet(cfg)
	res := Result{Seed: cfg.Seed, Chargers: cfg.Meters, FaultyChargers: f.faultyChargers()}
	var mappedUntil time.Time
	if cfg.WriteMappings {
		from, err := writeMappings(ctx, cfg, f)
		if err != nil {
			return res, err
		}
		res.Mappings = cfg.Vehicles
		if err := sleep(ctx, cfg.SettleMappings); err != nil {
			return res, fmt.Errorf("waiting for the mappings to reach the gateways: %w", err)
		}
		mappedUntil = from
	}
	start := cfg.startOf(f.intervals, mappedUntil)
	s := newSender(cfg, f, start)
	s.run(ctx, &res)
	res.Interrupted = ctx.Err() != nil
	res.Truth = f.truth(cfg, s.accepted)
	return res, nil
}

// startOf is the start of the run's first interval: Config.Start, or the next whole second
// after now and after the mappings' start (mappedUntil); a run that is neither live nor
// mapped starts its span before that, so that its last reading is not in the future.
func (c Config) startOf(intervals int, mappedUntil time.Time) time.Time {
	if !c.Start.IsZero() {
		return c.Start
	}
	t := later(mappedUntil, c.Now())
	if c.Duration == 0 && !c.WriteMappings {
		t = t.Add(-time.Duration(intervals) * c.Interval)
	}
	return t.Truncate(time.Second).Add(time.Second)
}

// Generate calls fn with each reading of the run cfg describes, in the order a run sends
// them, as the JSON a request carries, until fn returns false. It sends nothing and writes
// no mappings, so its timestamps are those of a run without mappings. reading is reused
// from call to call: copy what you keep.
func Generate(cfg Config, fn func(reading []byte) bool) error {
	cfg.WriteMappings = false
	cfg = cfg.withDefaults()
	if err := cfg.validateFleet(); err != nil {
		return err
	}
	f, enc := newFleet(cfg), newEncoder(cfg)
	start := cfg.startOf(f.intervals, time.Time{})
	var out []reading
	var tail, line []byte
	n := 0
	for k := 0; k < f.intervals; k++ {
		out = f.step(k, out[:0])
		tail = appendTail(tail[:0], start.Add(time.Duration(k+1)*cfg.Interval))
		for i := range out {
			if cfg.Readings > 0 && n == cfg.Readings {
				return nil
			}
			n++
			line = enc.append(line[:0], &out[i], tail)
			if !fn(line) {
				return nil
			}
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
