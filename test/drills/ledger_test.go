package drills

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/internal/loadgen"
)

// key names a reading: its device and timestamp (the history's primary key).
type key struct {
	device string
	micros int64
}

// ledger is the simulator's record of the readings the gateway acknowledged (answered 202),
// with when the answer arrived.
type ledger struct {
	mu   sync.Mutex
	acks map[key]time.Time
}

func newLedger() *ledger { return &ledger{acks: map[key]time.Time{}} }

// record is loadgen.Config.Acknowledged.
func (l *ledger) record(device string, at time.Time) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acks[key{device, at.UnixMicro()}] = now
}

// add records a reading acknowledged outside the simulator.
func (l *ledger) add(device string, at time.Time) { l.record(device, at) }

// snapshot returns the readings acknowledged so far.
func (l *ledger) snapshot() map[key]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[key]time.Time, len(l.acks))
	for k, v := range l.acks {
		out[k] = v
	}
	return out
}

// acknowledgedBetween counts the readings whose acknowledgement arrived in [from, to].
func (l *ledger) acknowledgedBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.acks {
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// tally compares a ledger with what the shards hold of its devices.
type tally struct {
	// Acknowledged readings (the ledger), Lost those of them in no shard's history.
	Acknowledged, Lost int
	// Stored are the history rows of the ledger's devices; Unacknowledged those of them not
	// in the ledger (a request that failed after its reading was queued: allowed).
	Stored, Unacknowledged int
	// Duplicated counts readings stored or counted more than once: a key on two shards, or
	// hourly rollups counting more readings than the history holds.
	Duplicated int
}

func (c tally) String() string {
	return fmt.Sprintf("acknowledged %d, lost %d, stored %d (unacknowledged %d), duplicated %d",
		c.Acknowledged, c.Lost, c.Stored, c.Unacknowledged, c.Duplicated)
}

// historySQL lists the history keys of devices with a prefix, rollupSQL the readings the
// hourly rollups count for them, both kinds together.
const (
	historySQL = `SELECT meter_id, ts FROM meter_telemetry_history WHERE meter_id LIKE $1
		UNION ALL SELECT vehicle_id, ts FROM vehicle_telemetry_history WHERE vehicle_id LIKE $1`
	rollupSQL = `SELECT (SELECT coalesce(sum(readings), 0) FROM meter_hourly WHERE meter_id LIKE $1)
		+ (SELECT coalesce(sum(readings), 0) FROM vehicle_hourly WHERE vehicle_id LIKE $1)`
)

// count compares want with the history and rollups of the devices whose ids start with
// prefix on every shard.
func count(ctx context.Context, pools []*pgxpool.Pool, prefix string, want map[key]time.Time) (tally, error) {
	c := tally{Acknowledged: len(want)}
	seen := make(map[key]int, len(want))
	var rolled int64
	for i, p := range pools {
		rows, err := p.Query(ctx, historySQL, prefix+"%")
		if err != nil {
			return c, fmt.Errorf("reading shard %d's history: %w", i, err)
		}
		for rows.Next() {
			var k key
			var ts time.Time
			if err := rows.Scan(&k.device, &ts); err != nil {
				rows.Close()
				return c, err
			}
			k.micros = ts.UnixMicro()
			seen[k]++
			c.Stored++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return c, fmt.Errorf("reading shard %d's history: %w", i, err)
		}
		var n int64
		if err := p.QueryRow(ctx, rollupSQL, prefix+"%").Scan(&n); err != nil {
			return c, fmt.Errorf("reading shard %d's rollups: %w", i, err)
		}
		rolled += n
	}
	for k := range want {
		if seen[k] == 0 {
			c.Lost++
		}
	}
	for k, n := range seen {
		if _, ok := want[k]; !ok {
			c.Unacknowledged++
		}
		c.Duplicated += n - 1
	}
	c.Duplicated += int(max(rolled-int64(c.Stored), 0))
	return c, nil
}

// awaitStored polls the shards until every reading of want is stored, and returns how long
// after since that was; it fails the test when that is not within since + within.
func awaitStored(t *testing.T, pools []*pgxpool.Pool, prefix string, want map[key]time.Time, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := count(ctx, pools, prefix, want)
		cancel()
		if err == nil && c.Lost == 0 {
			return time.Since(since)
		}
		if time.Since(since) > within {
			t.Fatalf("after %s: %v (last error: %v)", within, c, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits a moment for readings in flight, then checks that every acknowledged reading
// is stored exactly once.
func settle(t *testing.T, pools []*pgxpool.Pool, prefix string, want map[key]time.Time) tally {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := count(ctx, pools, prefix, want)
	if err != nil {
		t.Fatal(err)
	}
	if c.Lost != 0 || c.Duplicated != 0 {
		t.Errorf("%v: want nothing lost and nothing twice", c)
	}
	return c
}

// openPools opens a pool on each DSN; they close when the test ends.
func openPools(t *testing.T, dsns []string) []*pgxpool.Pool {
	t.Helper()
	pools := make([]*pgxpool.Pool, len(dsns))
	for i, dsn := range dsns {
		p, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[i] = p
	}
	return pools
}

// load is a simulator run in the background.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	res    loadgen.Result
	err    error
}

// startLoad runs the simulator with cfg, recording acknowledged readings in l; wait returns
// its result.
func startLoad(t *testing.T, cfg loadgen.Config, l *ledger) *load {
	t.Helper()
	cfg.Acknowledged = l.record
	ctx, cancel := context.WithCancel(context.Background())
	ld := &load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ld.done)
		ld.res, ld.err = loadgen.Run(ctx, cfg)
	}()
	t.Cleanup(func() { cancel(); <-ld.done })
	return ld
}

// wait waits for the run to end, within d.
func (ld *load) wait(t *testing.T, d time.Duration) loadgen.Result {
	t.Helper()
	select {
	case <-ld.done:
	case <-time.After(d):
		ld.cancel()
		<-ld.done
		t.Errorf("the load did not end within %s", d)
	}
	if ld.err != nil {
		t.Fatalf("load: %v", ld.err)
	}
	return ld.res
}

// simulator is the drills' usual fleet: 40 chargers, 60 vehicles reporting a minute apart
// (timestamps in the past), rate readings a second, in NDJSON batches of 20.
func simulator(url, token, prefix string, readings int, rate float64) loadgen.Config {
	return loadgen.Config{
		URL: url, Token: token, Prefix: prefix,
		Meters: 40, Vehicles: 60, Faulty: 0.1, Seed: 17,
		Readings: readings, Rate: rate, BatchSize: 20, Concurrency: 8,
		Interval: time.Minute,
	}
}
