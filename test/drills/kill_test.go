package drills

import (
	"testing"
	"time"
)

// TestDrillAnIngesterSIGKILLedMidBatch SIGKILLs the ingester while it holds a batch
// (messages delivered and not acknowledged: it collects each batch for half a second under a
// steady 1,500 readings a second) and starts it again at once: every reading acknowledged
// before the kill is stored within 10 s of the restart, and in the end every acknowledged
// reading is stored exactly once.
func TestDrillAnIngesterSIGKILLedMidBatch(t *testing.T) {
	const prefix = "ingkill"
	f := startFleet(t, "ingkill", "--batch-wait", "500ms")
	pools := openPools(t, []string{f.dsn})
	l := newLedger()
	ld := startLoad(t, simulator(f.url, "", prefix, 15_000, 1500), l)
	time.Sleep(3 * time.Second)

	held := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if held = f.consumer(t).NumAckPending; held > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingester never held an unacknowledged message")
		}
	}
	f.ingester.kill(t)
	atKill := l.snapshot()
	restart := time.Now()
	f.startIngester(t)
	recovery := awaitStored(t, pools, prefix, atKill, restart, 30*time.Second)

	res := ld.wait(t, time.Minute)
	awaitStored(t, pools, prefix, l.snapshot(), time.Now(), 30*time.Second)
	c := settle(t, pools, prefix, l.snapshot())
	info := f.consumer(t)
	f.stop(t)
	t.Logf("ingester SIGKILLed holding %d unacknowledged messages; %d readings acknowledged by then all stored %.1f s after the restart; "+
		"%d deliveries were redeliveries; run: %d sent, %d accepted, %d failed; %v",
		held, len(atKill), recovery.Seconds(), info.Delivered.Consumer-info.Delivered.Stream, res.Sent, res.Accepted, res.Failed, c)
	if recovery > 10*time.Second {
		t.Errorf("the readings acknowledged before the kill were all stored %s after the restart, want within 10 s", recovery)
	}
	if res.Failed != 0 {
		t.Errorf("%d requests failed (first: %s): the gateway does not depend on the ingester", res.Failed, res.FirstError)
	}
}
