package loadgen

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestTheLedgerHoldsExactlyTheAcknowledgedReadings rejects every seventh reading: the
// readings Acknowledged reports are those the fake gateway kept, each once.
func TestTheLedgerHoldsExactlyTheAcknowledgedReadings(t *testing.T) {
	fake := newFakeStack(t)
	n := 0
	var mu sync.Mutex
	fake.reject = func(string) bool { mu.Lock(); defer mu.Unlock(); n++; return n%7 == 0 }
	ledger := map[string]int{}
	cfg := Config{URL: fake.URL(), Meters: 4, Vehicles: 6, Readings: 700, Concurrency: 4, BatchSize: 25,
		Acknowledged: func(device string, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			ledger[fmt.Sprint(device, at.UnixMicro())]++
		}}
	res, err := fake.run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ledger) != res.Accepted || len(fake.readings) != res.Accepted || res.Rejected != 100 {
		t.Fatalf("ledger %d, accepted %d, fake kept %d, rejected %d", len(ledger), res.Accepted, len(fake.readings), res.Rejected)
	}
	for _, g := range fake.readings {
		if c := ledger[fmt.Sprint(g.device, g.ts.UnixMicro())]; c != 1 {
			t.Errorf("%s at %s is %d times in the ledger, want once", g.device, g.ts, c)
		}
	}
}
