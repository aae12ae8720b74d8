package hourcache

import (
	"testing"
	"time"
)

func TestReloadsOfTheHourBeingWrittenBackOffWhileTheyDoNotPay(t *testing.T) {
	c := New(Config{})
	at := time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC)
	ask := func(stale *liveHour) time.Duration {
		t.Helper()
		c.mu.Lock()
		c.liveAsked = time.Time{} // due
		c.mu.Unlock()
		c.reloadLive(at, stale)
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.liveEvery
	}
	unpaid := &liveHour{at: at}
	want := liveReloadMin
	for range 8 {
		want = min(2*want, liveReloadMax)
		if got := ask(unpaid); got != want {
			t.Fatalf("after a reload that answered nothing, next in %s, want %s", got, want)
		}
	}
	if want != liveReloadMax {
		t.Fatalf("backed off to %s only", want)
	}
	paid := &liveHour{at: at}
	paid.served.Store(liveReloadPays)
	if got := ask(paid); got != liveReloadMin {
		t.Errorf("after a reload that answered %d questions, next in %s, want %s", liveReloadPays, got, liveReloadMin)
	}
	if got := ask(nil); got != liveReloadMin {
		t.Errorf("with no hour held, next in %s, want %s", got, liveReloadMin)
	}
	// Not due: nothing changes.
	c.reloadLive(at, unpaid)
	if c.liveEvery != liveReloadMin {
		t.Errorf("a reload asked before it was due changed the interval to %s", c.liveEvery)
	}
}
