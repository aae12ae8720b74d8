package drills

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestDrillNATSRestartedUnderLoad SIGKILLs the NATS server (a process of its own) for 3 s
// while the simulator posts 1,000 readings a second: meanwhile the gateway answers 503 with
// Retry-After and never 202; once NATS is back, every reading answered 202 is stored once.
func TestDrillNATSRestartedUnderLoad(t *testing.T) {
	const prefix, outage = "natsdown", 3 * time.Second
	f := startFleet(t, "natsdown")
	pools := openPools(t, []string{f.dsn})
	l := newLedger()
	ld := startLoad(t, simulator(f.url, "", prefix, 12_000, 1000), l)
	time.Sleep(3 * time.Second)

	f.nats.kill(t)
	down := time.Now()
	probes, unavailable, retryAfter := 0, 0, 0
	var odd []string
	for i := 0; time.Since(down) < outage; i++ {
		at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		id := fmt.Sprintf("%s-probe-%d", prefix, i)
		body := fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":1.5,"voltage":230,"timestamp":%q}`, id, at.Format(time.RFC3339Nano))
		resp, err := http.Post(f.url+"/v1/telemetry", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		_ = resp.Body.Close() // the status and header are the answer
		probes++
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			unavailable++
			if resp.Header.Get("Retry-After") != "" {
				retryAfter++
			}
		case http.StatusAccepted:
			l.add(id, at)
			odd = append(odd, fmt.Sprintf("probe %d at +%s: 202", i, time.Since(down).Round(time.Millisecond)))
		default:
			odd = append(odd, fmt.Sprintf("probe %d: %d", i, resp.StatusCode))
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.nats = startNATS(t, f.natsDir, f.natsPort)
	up := time.Now()
	// A 202 answered within half a second of the kill may carry an acknowledgement received
	// before it; later, none can.
	lying := l.acknowledgedBetween(down.Add(500*time.Millisecond), up)
	recovery := awaitStored(t, pools, prefix, l.snapshot(), up, 30*time.Second)

	res := ld.wait(t, time.Minute)
	drained := awaitStored(t, pools, prefix, l.snapshot(), time.Now(), 30*time.Second)
	c := settle(t, pools, prefix, l.snapshot())
	f.stop(t)
	t.Logf("NATS down %s: %d of %d probes answered 503 (%d with Retry-After), %d readings answered 202 while it was down; "+
		"every reading acknowledged by the restart stored %.1f s after it, every one of the run %.1f s after the load ended; run: %d sent, %d accepted, %d failed (first: %s); %v",
		up.Sub(down).Round(100*time.Millisecond), unavailable, probes, retryAfter, lying, recovery.Seconds(), drained.Seconds(), res.Sent, res.Accepted, res.Failed, res.FirstError, c)

	if probes == 0 || unavailable != probes || retryAfter != probes || lying != 0 || len(odd) > 0 {
		t.Errorf("while NATS was down: %d probes, %d answered 503, %d with Retry-After, %d readings answered 202; %v", probes, unavailable, retryAfter, lying, odd)
	}
	if res.Failed == 0 || res.Accepted == 0 {
		t.Errorf("the simulator saw %d failed requests and %d accepted readings: the outage did not happen under load", res.Failed, res.Accepted)
	}
	if recovery > 10*time.Second {
		t.Errorf("every acknowledged reading stored %s after NATS came back, want within 10 s", recovery)
	}
}
