package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newRegistry(t *testing.T, clk *clock) (*registry.Registry, context.Context) {
	t.Helper()
	return newRegistryWith(t, registry.Config{Now: clk.Now})
}

func newRegistryWith(t *testing.T, cfg registry.Config) (*registry.Registry, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	open := newBucket(t)
	r := open(cfg)
	go func() { _ = r.Run(ctx) }()
	return r, ctx
}

// newBucket provisions a fleet's mapping bucket on a fresh NATS server and returns what opens
// a registry on it (not running: the caller starts its watch, or not).
func newBucket(t *testing.T) func(registry.Config) *registry.Registry {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "reg", Shards: 1}
	if _, err := ingester.EnsureStreams(t.Context(), js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return func(cfg registry.Config) *registry.Registry {
		r, err := registry.Open(t.Context(), js, top.MappingBucket(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func TestSetClosesTheOpenIntervalAndKeepsHistory(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	r, ctx := newRegistry(t, clk)

	if _, err := r.Set(ctx, "EV-1", "meter-a"); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(2 * time.Hour))
	m, err := r.Set(ctx, "EV-1", "meter-b")
	if err != nil {
		t.Fatal(err)
	}
	if m.MeterID != "meter-b" || len(m.Intervals) != 2 {
		t.Fatalf("mapping = %+v, want meter-b with two intervals", m)
	}
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"before the first mapping the vehicle places itself", t0.Add(-time.Second), "EV-1"},
		{"the first interval starts inclusive", t0, "meter-a"},
		{"inside the first interval", t0.Add(time.Hour), "meter-a"},
		{"the first interval ends exclusive", t0.Add(2 * time.Hour), "meter-b"},
		{"the open interval runs on", t0.Add(1000 * time.Hour), "meter-b"},
	}
	for _, tt := range tests {
		if got := registry.PlacementKey(&m, "EV-1", tt.at); got != tt.want {
			t.Errorf("%s: key = %q, want %q", tt.name, got, tt.want)
		}
	}

	clk.Set(t0.Add(3 * time.Hour))
	m, err = r.Unset(ctx, "EV-1")
	if err != nil {
		t.Fatal(err)
	}
	if m.MeterID != "" || len(m.Intervals) != 2 || m.Intervals[1].To == nil {
		t.Fatalf("after unset = %+v, want closed history", m)
	}
	if got := registry.PlacementKey(&m, "EV-1", t0.Add(4*time.Hour)); got != "EV-1" {
		t.Errorf("after unset key = %q, want the vehicle's own id", got)
	}
	if got := registry.PlacementKey(&m, "EV-1", t0.Add(150*time.Minute)); got != "meter-b" {
		t.Errorf("late reading inside the ended interval: key = %q, want meter-b", got)
	}
}

func TestSetTheSameMeterIsANoOp(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	r, ctx := newRegistry(t, clk)
	a, err := r.Set(ctx, "EV-1", "meter-a")
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(clk.Now().Add(time.Hour))
	b, err := r.Set(ctx, "EV-1", "meter-a")
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != a.Revision || len(b.Intervals) != 1 {
		t.Errorf("re-setting the same meter wrote a new value: %+v", b)
	}
}

func TestUnsetOfAnUnknownVehicleIsNotFound(t *testing.T) {
	clk := &clock{t: time.Now()}
	r, ctx := newRegistry(t, clk)
	if _, err := r.Unset(ctx, "EV-404"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Unset(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := r.Get(ctx, "EV-404"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
}

func TestInvalidIDsAreRefused(t *testing.T) {
	clk := &clock{t: time.Now()}
	r, ctx := newRegistry(t, clk)
	if _, err := r.Set(ctx, "bad id", "meter-a"); !errors.Is(err, registry.ErrInvalidID) {
		t.Errorf("Set(bad vehicle) = %v", err)
	}
	if _, err := r.Set(ctx, "EV-1", "meter a"); !errors.Is(err, registry.ErrInvalidID) {
		t.Errorf("Set(bad meter) = %v", err)
	}
}

func TestConcurrentWritersAllLand(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	r, ctx := newRegistry(t, clk)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := r.Set(ctx, "EV-1", "meter-"+string(rune('a'+i)))
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.Get(ctx, "EV-1")
	if err != nil {
		t.Fatal(err)
	}
	// Every writer changed the meter at the same instant, so zero-length intervals collapse:
	// exactly one open interval remains and it names the current meter.
	if len(m.Intervals) != 1 || m.Intervals[0].MeterID != m.MeterID || m.Intervals[0].To != nil {
		t.Errorf("after concurrent writes = %+v", m)
	}
}

func TestCopyCatchesUpAndFollowsWrites(t *testing.T) {
	clk := &clock{t: time.Now()}
	r, ctx := newRegistry(t, clk)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Set(ctx, "EV-7", "meter-z"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for r.PlacementKey("EV-7", clk.Now()) != "meter-z" {
		if time.Now().After(deadline) {
			t.Fatal("the in-memory copy did not see the write within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	list, more := r.ListCached("", 10)
	if len(list) != 1 || more || list[0].VehicleID != "EV-7" {
		t.Errorf("ListCached = %+v more=%v", list, more)
	}
}

// TestTheWriterRoutesByItsOwnWriteAtOnce: a process that writes a mapping (analytics and the
// gateway share one copy in `fleetingest dev`) places the next reading by it without waiting
// for its watch; here the watch never runs, so only the write can have put it in the copy.
func TestTheWriterRoutesByItsOwnWriteAtOnce(t *testing.T) {
	ctx := t.Context()
	open := newBucket(t)
	clk := &clock{t: time.Now()}
	r := open(registry.Config{Now: clk.Now})
	for _, meter := range []string{"meter-a", "meter-b"} {
		if _, err := r.Set(ctx, "EV-1", meter); err != nil {
			t.Fatal(err)
		}
		clk.Set(clk.Now().Add(time.Second))
		if got := r.PlacementKey("EV-1", clk.Now()); got != meter {
			t.Fatalf("after mapping EV-1 to %s, its reading is placed by %q", meter, got)
		}
		if got := r.MappedTo(meter, clk.Now(), clk.Now().Add(time.Second)); !slices.Equal(got, []string{"EV-1"}) {
			t.Fatalf("mapped to %s: %v", meter, got)
		}
	}
	// Another writer's later revision replaces it; an older one (the watch bringing back the
	// writer's own) never does.
	other := open(registry.Config{Now: clk.Now})
	if _, err := other.Set(ctx, "EV-1", "meter-c"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Run(ctx) }()
	deadline := time.Now().Add(time.Second)
	for r.PlacementKey("EV-1", clk.Now()) != "meter-c" {
		if time.Now().After(deadline) {
			t.Fatal("another writer's mapping did not reach the copy within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNoReadingStampedAfterAWriteIsPlacedByTheMappingBefore places readings stamped with the
// real clock while the same process re-maps the vehicle again and again: whatever the write's
// round trip to the bucket, each placement equals the one the final intervals give its time.
func TestNoReadingStampedAfterAWriteIsPlacedByTheMappingBefore(t *testing.T) {
	r, ctx := newRegistryWith(t, registry.Config{})
	if _, err := r.Set(ctx, "EV-1", "meter-0"); err != nil {
		t.Fatal(err)
	}
	type placed struct {
		at  time.Time
		key string
	}
	var got []placed
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			at := time.Now()
			got = append(got, placed{at, r.PlacementKey("EV-1", at)})
		}
	}()
	var m registry.Mapping
	for i := 1; i <= 20; i++ {
		var err error
		if m, err = r.Set(ctx, "EV-1", fmt.Sprintf("meter-%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	for _, p := range got {
		if want := registry.PlacementKey(&m, "EV-1", p.at); p.key != want {
			t.Fatalf("a reading at %s placed by %s, the intervals say %s", p.at.Format(time.RFC3339Nano), p.key, want)
		}
	}
	if len(got) < 20 {
		t.Fatalf("%d placements made during 20 writes", len(got))
	}
}

func TestAWriterWithASlowClockKeepsIntervalsOrdered(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	r, ctx := newRegistry(t, clk)
	if _, err := r.Set(ctx, "EV-1", "meter-a"); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(-time.Second))
	m, err := r.Set(ctx, "EV-1", "meter-b")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Intervals) != 1 || m.Intervals[0].MeterID != "meter-b" || !m.Intervals[0].From.Equal(t0) {
		t.Errorf("intervals = %+v, want one meter-b interval from %s", m.Intervals, t0)
	}
}

func TestMappedToFollowsSetsMovesAndUnsets(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	r, ctx := newRegistry(t, clk)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	// EV-1 and EV-2 share m1 from 8:00; EV-2 moves to m2 at 10:00; EV-1 is unset at 12:00.
	for _, w := range []struct {
		h           int
		vehicle, to string
	}{{0, "EV-1", "m1"}, {0, "EV-2", "m1"}, {2, "EV-2", "m2"}, {4, "EV-1", ""}} {
		clk.Set(at(w.h))
		var err error
		if w.to == "" {
			_, err = r.Unset(ctx, w.vehicle)
		} else {
			_, err = r.Set(ctx, w.vehicle, w.to)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if m, _ := r.Cached("EV-1"); m.MeterID == "" && len(m.Intervals) == 1 && m.Intervals[0].To != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the in-memory copy did not see the writes within 2s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range []struct {
		meter    string
		from, to int
		want     []string
	}{
		{"m1", 0, 1, []string{"EV-1", "EV-2"}},
		{"m1", 2, 3, []string{"EV-1"}}, // EV-2 left at 10:00
		{"m1", 1, 3, []string{"EV-1", "EV-2"}},
		{"m1", 4, 5, nil}, // EV-1 unset at 12:00
		{"m2", 0, 2, nil},
		{"m2", 2, 9, []string{"EV-2"}},
		{"m3", 0, 9, nil},
	} {
		if got := r.MappedTo(c.meter, at(c.from), at(c.to)); !slices.Equal(got, c.want) {
			t.Errorf("MappedTo(%s, %d:00, %d:00) = %v, want %v", c.meter, 8+c.from, 8+c.to, got, c.want)
		}
	}
}
