package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestARepeatedLineIsWrittenOncePerIntervalWithTheCountItHeldBack(t *testing.T) {
	var out bytes.Buffer
	clk := &fakeClock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	log := slog.New(newWithClock(slog.NewTextHandler(&out, nil), 10*time.Second, clk.now))
	for range 1000 {
		log.Warn("shard unavailable", "shard", 1)
	}
	log.Warn("another line")
	log.Error("shard unavailable") // another level is another line
	if got := strings.Count(out.String(), "shard unavailable"); got != 2 {
		t.Fatalf("a burst of 1000 wrote %d lines (per level), want 1 each:\n%s", got, out.String())
	}
	clk.add(11 * time.Second)
	log.Warn("shard unavailable", "shard", 1)
	if !strings.Contains(out.String(), "suppressed=999") {
		t.Errorf("the line after the interval does not say how many were held back:\n%s", out.String())
	}
	if got := strings.Count(out.String(), "another line"); got != 1 {
		t.Errorf("an unrelated line was written %d times, want 1", got)
	}
}

func TestEachDerivedLoggerHasItsOwnLines(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(New(slog.NewTextHandler(&out, nil), time.Minute))
	a, b, again := log.With("component", "a"), log.With("component", "b"), log.With("component", "a")
	for range 10 {
		a.Info("same")
		b.Info("same")
		again.Info("same")
	}
	if got := strings.Count(out.String(), "msg=same"); got != 2 {
		t.Errorf("loggers of two components wrote the line %d times, want once each:\n%s", got, out.String())
	}
}
