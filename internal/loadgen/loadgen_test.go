package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// mapped is a run with mappings against fake: batches, 10-second intervals (so that 20
// intervals stay within MaxLead) and no wait for the mappings to settle.
func mapped(fake *fakeStack, seed uint64) Config {
	return Config{
		URL: fake.URL(), AdminToken: "admin", WriteMappings: true, SettleMappings: time.Millisecond, Prefix: "sim",
		Meters: 6, Vehicles: 15, Faulty: 0.34, Seed: seed, Interval: 10 * time.Second,
		Readings: 20 * 21, BatchSize: 37, Concurrency: 4,
	}
}

func TestChargersConvertAtTheirDrawnEfficiencyInWholeMilliwattHours(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			fake := newFakeStack(t)
			cfg := mapped(fake, seed)
			res, err := fake.run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != cfg.Readings || res.Rejected != 0 || res.Failed != 0 {
				t.Fatalf("accepted %d rejected %d failed %d of %d: %s %s", res.Accepted, res.Rejected, res.Failed, cfg.Readings, res.FirstRejection, res.FirstError)
			}
			checkWholeMilliwattHours(t, fake)
			s := fake.sumsByCharger()
			f := newFleet(cfg.withDefaults())
			for c := range f.chargers {
				id, ch := cfg.meterID(c), f.chargers[c]
				ac, dc := s.ac[id], s.dc[id]
				if len(ch.vehicles) > 0 && dc == 0 {
					t.Errorf("%s: its %d vehicles charged nothing", id, len(ch.vehicles))
				}
				lo, hi := HealthyEfficiencyMin, HealthyEfficiencyMax
				if ch.faulty {
					lo, hi = FaultyEfficiencyMin, FaultyEfficiencyMax
				}
				if ch.efficiency < lo || ch.efficiency >= hi {
					t.Errorf("%s: efficiency %v drawn outside [%v, %v)", id, ch.efficiency, lo, hi)
				}
				// Within 1 mWh of the drawn efficiency, so inside its range to within 1 mWh.
				if want := int64(math.Round(float64(dc) / ch.efficiency)); ac < want-1 || ac > want+1 {
					t.Errorf("%s: AC %d mWh for DC %d mWh at efficiency %v, want %d", id, ac, dc, ch.efficiency, want)
				}
				if float64(dc) < lo*float64(ac)-1 || float64(dc) > hi*float64(ac)+1 {
					t.Errorf("%s: DC/AC %d/%d = %v outside [%v, %v]", id, dc, ac, float64(dc)/float64(ac), lo, hi)
				}
			}
			want := s.truth(fake.mappings)
			if !sameSet(res.Truth.FaultyMeters, want.FaultyMeters) || !sameSet(res.Truth.FaultyVehicles, want.FaultyVehicles) {
				t.Errorf("truth %+v, the sums say %+v", res.Truth, want)
			}
			if len(res.Truth.FaultyMeters) != res.FaultyChargers {
				t.Errorf("truth lists %d faulty meters, %d were drawn faulty (all charged)", len(res.Truth.FaultyMeters), res.FaultyChargers)
			}
			for _, v := range res.Truth.FaultyVehicles {
				if !slices.Contains(res.Truth.FaultyMeters, fake.mappings[v]) {
					t.Errorf("%s is faulty, its charger %s is not", v, fake.mappings[v])
				}
			}
		})
	}
}

// checkWholeMilliwattHours checks that every energy sent has at most 6 decimals.
func checkWholeMilliwattHours(t *testing.T, fake *fakeStack) {
	t.Helper()
	for _, g := range fake.readings {
		dec := json.NewDecoder(strings.NewReader(g.text))
		dec.UseNumber()
		var fields map[string]any
		if err := dec.Decode(&fields); err != nil {
			t.Fatalf("%s: %v", g.text, err)
		}
		for _, k := range []string{"kwhConsumedAc", "kwhDeliveredDc"} {
			n, ok := fields[k].(json.Number)
			if !ok {
				continue
			}
			if _, frac, _ := strings.Cut(n.String(), "."); len(frac) > 6 || strings.ContainsAny(n.String(), "eE-") {
				t.Fatalf("%s: %s = %s is not a whole number of mWh", g.text, k, n)
			}
		}
	}
}

func TestTheTruthCountsOnlyAcceptedReadings(t *testing.T) {
	fake := newFakeStack(t)
	cfg := mapped(fake, 7)
	f := newFleet(cfg.withDefaults())
	var faulty string
	for c := range f.chargers {
		if f.chargers[c].faulty && len(f.chargers[c].vehicles) > 0 {
			faulty = cfg.meterID(c)
			break
		}
	}
	if faulty == "" {
		t.Fatal("seed 7 draws no faulty charger with vehicles")
	}
	// The faulty charger's readings are all refused: it exchanged no energy as far as the
	// system knows, and neither it nor its vehicles can be listed.
	fake.reject = func(line string) bool { return strings.Contains(line, `"meterId":"`+faulty+`"`) }
	res, err := fake.run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 20 || res.FirstRejection == "" {
		t.Errorf("rejected %d (first %q), want the faulty charger's 20 readings", res.Rejected, res.FirstRejection)
	}
	want := fake.sumsByCharger().truth(fake.mappings)
	if slices.Contains(res.Truth.FaultyMeters, faulty) || !sameSet(res.Truth.FaultyMeters, want.FaultyMeters) || !sameSet(res.Truth.FaultyVehicles, want.FaultyVehicles) {
		t.Errorf("truth %+v, the accepted readings say %+v", res.Truth, want)
	}
	for _, v := range res.Truth.FaultyVehicles {
		if fake.mappings[v] == faulty {
			t.Errorf("%s is listed, but its charger's AC was refused", v)
		}
	}
}

func TestMappingsHoldBeforeEveryReadingAndNoReadingIsTooFarAhead(t *testing.T) {
	fake := newFakeStack(t)
	cfg := mapped(fake, 3)
	// 20 intervals of 100 ms, at most 300 ms ahead: the run has to wait for the clock.
	cfg.Interval, cfg.MaxLead = 100*time.Millisecond, 300*time.Millisecond
	res, err := fake.run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(fake.mappings) != cfg.Vehicles || res.Mappings != cfg.Vehicles {
		t.Fatalf("%d mappings written (%d reported), want %d", len(fake.mappings), res.Mappings, cfg.Vehicles)
	}
	if res.Accepted != cfg.Readings {
		t.Fatalf("accepted %d of %d: %s", res.Accepted, cfg.Readings, res.FirstRejection)
	}
	for _, g := range fake.readings {
		if !g.meter && !g.ts.After(fake.mappedAt[g.device]) {
			t.Errorf("%s reading at %s, its mapping holds from %s", g.device, g.ts, fake.mappedAt[g.device])
		}
		if ahead := g.ts.Sub(g.arrived); ahead > cfg.MaxLead {
			t.Errorf("%s reading at %s arrived %s ahead", g.device, g.ts, ahead)
		}
	}
	if span := res.LastReading.Sub(res.FirstReading); span != 19*cfg.Interval {
		t.Errorf("readings span %s, want 19 intervals", span)
	}
}

func TestAStartInThePastWritesTheMappingsFromItAndSendsAtOnce(t *testing.T) {
	fake := newFakeStack(t)
	cfg := mapped(fake, 9)
	cfg.Start = time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	cfg.Interval, cfg.Readings = time.Minute, 120*21
	res, err := fake.run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != cfg.Readings || res.Duration > 10*time.Second {
		t.Fatalf("accepted %d of %d in %s: %s", res.Accepted, cfg.Readings, res.Duration, res.FirstRejection)
	}
	for v, from := range fake.mappedAt {
		if !from.Equal(cfg.Start) {
			t.Errorf("%s mapped from %s, want the run's start %s", v, from, cfg.Start)
		}
	}
	if !res.FirstReading.Equal(cfg.Start.Add(time.Minute)) || !res.LastReading.Equal(cfg.Start.Add(2*time.Hour)) {
		t.Errorf("readings stamped %s to %s, want the 120 minutes after %s", res.FirstReading, res.LastReading, cfg.Start)
	}
}

func TestALiveRunStampsReadingsWithTheClock(t *testing.T) {
	fake := newFakeStack(t)
	res, err := fake.run(context.Background(), Config{
		URL: fake.URL(), Meters: 2, Vehicles: 4, Interval: 200 * time.Millisecond, Duration: time.Second, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 5*6 {
		t.Fatalf("accepted %d, want 5 intervals of 6 devices: %s", res.Accepted, res.FirstRejection)
	}
	for _, g := range fake.readings {
		if late := g.arrived.Sub(g.ts); late < 0 || late > time.Second {
			t.Errorf("%s reading at %s arrived %s after its timestamp", g.device, g.ts, late)
		}
	}
	if res.Duration < 900*time.Millisecond {
		t.Errorf("a live run of 1s took %s", res.Duration)
	}
}

func TestRunSendsEveryReadingOnceAndCountsAnswers(t *testing.T) {
	fake := newFakeStack(t)
	n := 0
	var mu sync.Mutex
	fake.reject = func(string) bool { mu.Lock(); defer mu.Unlock(); n++; return n%10 == 0 }
	res, err := fake.run(context.Background(), Config{URL: fake.URL(), Meters: 5, Vehicles: 5, Readings: 1000, Concurrency: 8, BatchSize: 30})
	if err != nil {
		t.Fatal(err)
	}
	requests := (1000 + 29) / 30
	if res.Requests != requests || res.Sent != 1000 || res.Failed != 0 {
		t.Errorf("requests %d sent %d failed %d, want %d, 1000 and 0", res.Requests, res.Sent, res.Failed, requests)
	}
	if res.Accepted != 900 || res.Rejected != 100 || len(fake.readings) != 900 {
		t.Errorf("accepted %d rejected %d (fake kept %d), want 900 and 100", res.Accepted, res.Rejected, len(fake.readings))
	}
	seen := map[string]bool{}
	for _, g := range fake.readings {
		key := fmt.Sprint(g.device, g.ts)
		if seen[key] {
			t.Errorf("%s sent twice", key)
		}
		seen[key] = true
	}
	if res.Percentile(50) <= 0 || res.Percentile(99) < res.Percentile(50) {
		t.Errorf("latencies p50 %s p99 %s", res.Percentile(50), res.Percentile(99))
	}
	if res.FirstReading.IsZero() || !res.LastReading.After(res.FirstReading) || res.LastReading.After(time.Now().Add(time.Second)) {
		t.Errorf("readings stamped %s to %s", res.FirstReading, res.LastReading)
	}

	single := newFakeStack(t)
	res, err = single.run(context.Background(), Config{URL: single.URL(), Readings: 50, Concurrency: 4, Token: "device"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.Accepted != 50 || single.posts != 50 {
		t.Errorf("single-reading run: %+v, fake saw %d requests", res, single.posts)
	}
}

func TestTheSameSeedSendsTheSameReadings(t *testing.T) {
	gen := func(seed uint64) []string {
		var out []string
		cfg := Config{Meters: 3, Vehicles: 7, Readings: 200, Faulty: 0.5, Seed: seed, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		if err := Generate(cfg, func(r []byte) bool { out = append(out, string(r)); return true }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := gen(5), gen(5), gen(6)
	if len(a) != 200 || !slices.Equal(a, b) {
		t.Errorf("two runs of seed 5 differ (%d readings)", len(a))
	}
	if slices.Equal(a, c) {
		t.Error("seeds 5 and 6 send the same readings")
	}
}

func TestARunStopsWhenItsContextEnds(t *testing.T) {
	fake := newFakeStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	fake.reject = func(string) bool { once.Do(cancel); return false }
	res, err := fake.run(ctx, Config{URL: fake.URL(), Meters: 10, Vehicles: 10, Readings: 100_000, Concurrency: 4, Rate: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Sent >= 100_000 {
		t.Errorf("interrupted %v after %d readings", res.Interrupted, res.Sent)
	}
	if res.Accepted != len(fake.readings) || res.Sent != res.Accepted+res.Rejected {
		t.Errorf("sent %d accepted %d rejected %d, fake kept %d: the answers of the requests in flight must count", res.Sent, res.Accepted, res.Rejected, len(fake.readings))
	}

	res, err = fake.run(ctx, Config{URL: fake.URL(), Meters: 1, Vehicles: 1, Readings: 10})
	if err != nil || !res.Interrupted || res.Sent != 0 {
		t.Errorf("a run with its context ended already: %+v, %v", res, err)
	}
}

func TestRateCapsReadingsPerSecond(t *testing.T) {
	fake := newFakeStack(t)
	res, err := fake.run(context.Background(), Config{URL: fake.URL(), Meters: 5, Vehicles: 5, Readings: 300, Rate: 1000, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 300 || res.Duration < 280*time.Millisecond {
		t.Errorf("300 readings at 1,000/s: %d accepted in %s", res.Accepted, res.Duration)
	}
}

func TestMappingFailuresStopTheRun(t *testing.T) {
	fake := newFakeStack(t)
	cfg := mapped(fake, 1)
	cfg.AdminToken = "viewer"
	_, err := fake.run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("err = %v, want the mapping's 403", err)
	}
	if len(fake.readings) != 0 {
		t.Errorf("%d readings sent without mappings", len(fake.readings))
	}
}

func TestValidateRefusesWhatCannotRun(t *testing.T) {
	ok := Config{URL: "http://127.0.0.1:1"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // "" for valid
	}{
		{"defaults are valid", func(*Config) {}, ""},
		{"a gateway URL is required", func(c *Config) { c.URL = "" }, "URL is required"},
		{"a URL needs a scheme and host", func(c *Config) { c.URL = "127.0.0.1:8080" }, "want http://"},
		{"faulty above 1", func(c *Config) { c.Faulty = 1.5 }, "faulty"},
		{"faulty below 0", func(c *Config) { c.Faulty = -0.1 }, "faulty"},
		{"faulty NaN", func(c *Config) { c.Faulty = math.NaN() }, "faulty"},
		{"faulty of all chargers", func(c *Config) { c.Faulty = 1 }, ""},
		{"a negative batch", func(c *Config) { c.BatchSize = -1 }, "batch size"},
		{"a batch above the gateway's limit", func(c *Config) { c.BatchSize = 10_001 }, "batch size"},
		{"negative readings", func(c *Config) { c.Readings = -5 }, "readings"},
		{"negative devices", func(c *Config) { c.Meters = -1 }, "meters"},
		{"vehicles without chargers", func(c *Config) { c.Meters, c.Vehicles = 0, 3 }, "at least one meter"},
		{"chargers alone", func(c *Config) { c.Meters, c.Vehicles, c.Readings = 3, 0, 300 }, ""},
		{"negative concurrency", func(c *Config) { c.Concurrency = -2 }, "concurrency"},
		{"a negative rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"an infinite rate", func(c *Config) { c.Rate = math.Inf(1) }, "rate"},
		{"an interval below 1ms", func(c *Config) { c.Interval = time.Microsecond }, "interval"},
		{"a duration shorter than an interval", func(c *Config) { c.Duration = 30 * time.Second }, "shorter than one interval"},
		{"a negative duration", func(c *Config) { c.Duration = -time.Second }, "duration"},
		{"a start in the past with mappings", func(c *Config) { c.Start, c.WriteMappings = time.Now().Add(-time.Hour), true }, ""},
		{"a start in the future with mappings", func(c *Config) { c.Start, c.WriteMappings = time.Now().Add(time.Hour), true }, "in the past"},
		{"a start for a live run", func(c *Config) { c.Start, c.Duration = time.Now().Add(-time.Hour), time.Hour }, "live run starts now"},
		{"a start beyond the accepted lateness", func(c *Config) { c.Start = time.Now().Add(-7 * 24 * time.Hour) }, "older than"},
		{"a prefix that makes bad ids", func(c *Config) { c.Prefix = "a b" }, "prefix"},
		{"a prefix that makes long ids", func(c *Config) { c.Prefix = strings.Repeat("x", 60) }, "prefix"},
		{"a run reaching past the accepted lateness", func(c *Config) { c.Meters, c.Vehicles, c.Readings = 1, 1, 30_000 }, "older than"},
		{"a long run with mappings paces itself instead", func(c *Config) { c.Meters, c.Vehicles, c.Readings, c.WriteMappings = 1, 1, 30_000, true }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

func TestEnergiesAreWrittenAsExactKilowattHours(t *testing.T) {
	for mwh, want := range map[int64]string{0: "0", 1: "0.000001", 1_000_000: "1", 1_250_000: "1.25", 123_456_789: "123.456789", 10_000_000_000: "10000"} {
		if got := string(appendKWh(nil, mwh)); got != want {
			t.Errorf("%d mWh = %s, want %s", mwh, got, want)
		}
	}
	for x, want := range map[float64]string{0: "0.0", 25.04: "25.0", 25.06: "25.1", -3.25: "-3.3", 99.99: "100.0"} {
		if got := string(appendTenths(nil, x)); got != want {
			t.Errorf("%v = %s, want %s", x, got, want)
		}
	}
}

func TestPercentilesAreWithinTheHistogramsResolution(t *testing.T) {
	var h histogram
	for i := 1; i <= 10_000; i++ {
		h.record(time.Duration(i) * time.Microsecond * 7)
	}
	for _, p := range []float64{1, 50, 90, 99, 100} {
		want := time.Duration(math.Ceil(p/100*10_000)) * 7 * time.Microsecond
		if got := h.percentile(p); math.Abs(float64(got-want)) > 0.032*float64(want) {
			t.Errorf("p%v = %s, want %s within 3.2%%", p, got, want)
		}
	}
	var empty *histogram
	if empty.percentile(50) != 0 {
		t.Error("an empty histogram has a percentile")
	}
}
