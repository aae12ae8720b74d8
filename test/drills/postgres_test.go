package drills

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/localpg"
)

// TestDrillAShardDatabaseStoppedForTenSecondsUnderLoad stops shard 1's Postgres for 10 s
// while the simulator posts 1,000 readings a second: the gateway answers 202 throughout
// (JetStream keeps the readings), the ingester retries with back-off and reports its lag,
// and once the database is back every acknowledged reading is in history exactly once.
func TestDrillAShardDatabaseStoppedForTenSecondsUnderLoad(t *testing.T) {
	const prefix, outage, shard = "pgdown", 10 * time.Second, "1"
	s, stopStack := startStack(t, 2, nil)
	pools := openPools(t, s.DSNs())
	l := newLedger()
	ld := startLoad(t, simulator(s.URL(), s.DeviceToken(), prefix, 16_000, 1000), l)
	time.Sleep(3 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := s.Postgres(1)
	dataDir, port := pg.DataDir(), pg.Port()
	labels := map[string]string{"shard": shard}
	errorsBefore := metric(t, s.Metrics(), "fleetingest_ingester_write_errors_total", labels)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	lag := 0.0
	for time.Since(down) < outage {
		lag = max(lag, metric(t, s.Metrics(), "fleetingest_ingester_consumer_lag_messages", labels))
		time.Sleep(200 * time.Millisecond)
	}
	writeErrors := metric(t, s.Metrics(), "fleetingest_ingester_write_errors_total", labels) - errorsBefore
	restarted, err := localpg.Start(ctx, localpg.Config{DataDir: dataDir, Port: port, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopStack()
		if err := restarted.Stop(context.Background()); err != nil {
			t.Errorf("stopping the restarted shard: %v", err)
		}
	}()
	up := time.Now()
	duringOutage := l.acknowledgedBetween(down, up)
	recovery := awaitStored(t, pools, prefix, l.snapshot(), up, 30*time.Second)

	res := ld.wait(t, time.Minute)
	drained := awaitStored(t, pools, prefix, l.snapshot(), time.Now(), 30*time.Second)
	c := settle(t, pools, prefix, l.snapshot())
	t.Logf("shard 1 down %s: %d readings answered 202 meanwhile, %d write attempts failed, consumer lag up to %.0f messages; "+
		"every reading acknowledged by the restart stored %.1f s after it, every one of the run %.1f s after the load ended; run: %d sent, %d accepted, %d rejected, %d failed; %v",
		up.Sub(down).Round(100*time.Millisecond), duringOutage, int(writeErrors), lag, recovery.Seconds(), drained.Seconds(), res.Sent, res.Accepted, res.Rejected, res.Failed, c)

	if res.Failed != 0 || res.Rejected != 0 || duringOutage == 0 {
		t.Errorf("the gateway did not answer 202 throughout: %d failed (first: %s), %d rejected, %d accepted while the shard was down",
			res.Failed, res.FirstError, res.Rejected, duringOutage)
	}
	// Back-off from 100 ms doubling to 10 s makes 7 or 8 attempts in 10 s; none would make 100.
	if writeErrors < 3 || writeErrors > 20 {
		t.Errorf("%v failed write attempts in a %s outage: want a few, retried with back-off", writeErrors, outage)
	}
	if lag == 0 {
		t.Error("the ingester reported no consumer lag while its database was down")
	}
	if recovery > 15*time.Second {
		t.Errorf("the readings held during the outage took %s to be stored after the restart: want at most the 10 s back-off cap and a little", recovery)
	}
}
