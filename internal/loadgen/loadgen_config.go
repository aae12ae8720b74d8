package loadgen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
)

// Default sizes of a run.
const (
	DefaultDevices     = 1000
	DefaultReadings    = 100_000
	DefaultConcurrency = 64
	DefaultInterval    = time.Minute
	DefaultPrefix      = "lg"
)

// Config of a run. Zero values take the documented defaults; negative ones are refused.
type Config struct {
	// URL of the gateway, e.g. http://127.0.0.1:8080. Required.
	URL string
	// AnalyticsURL is where mappings are written. Default URL.
	AnalyticsURL string
	// Token is the device token every reading carries (one that covers every generated id:
	// an every-device or Prefix token). Empty sends none.
	Token string
	// AdminToken is the admin user token the mappings are written with. Empty sends none.
	AdminToken string
	// WriteMappings maps each vehicle to its charger through the analytics API before the
	// first reading. Without it, vehicle readings are placed by the vehicle's own id.
	WriteMappings bool
	// SettleMappings is how long to wait after the last mapping write before the first
	// reading, for every gateway's copy of the mappings to catch up. Default 1 s.
	SettleMappings time.Duration

	// Meters (chargers) and Vehicles are the device counts. Default 1,000 each when both
	// are 0. Vehicles need at least one charger.
	Meters, Vehicles int
	// Faulty is the fraction of chargers (rounded to a whole number) that are faulty.
	// Default 0; 0 to 1.
	Faulty float64
	// Seed makes the run reproducible. Default 0: a random seed, reported in Result.Seed.
	Seed uint64
	// Prefix of the device ids (<prefix>-m-<i>, <prefix>-v-<i>), so separate runs do not
	// collide. Default "lg".
	Prefix string

	// Readings is how many readings to send in all. Default 100,000 without Duration, no
	// limit with it; the first of the two reached ends the run.
	Readings int
	// Duration runs live for that long: timestamps are the wall clock. Default 0: as fast
	// as possible.
	Duration time.Duration
	// Interval between a device's readings. Default 1 minute; at least 1 ms.
	Interval time.Duration
	// Start of the run's first interval (reading k of a device is stamped Start +
	// k×Interval), at most 7 days ago (less an hour), not for live runs; mappings are
	// written from it. Default: after the mappings are written, or, without mappings, the
	// run's span before now.
	Start time.Time
	// Rate caps the readings sent per second. Default 0: as fast as the gateway answers.
	Rate float64
	// MaxLead is how far ahead of the clock a timestamp may be when it is sent. Default 4
	// minutes (the gateway refuses more than 5).
	MaxLead time.Duration

	// Concurrency is the number of requests in flight. Default 64.
	Concurrency int
	// BatchSize > 0 posts to /v1/telemetry/batch with that many readings a request
	// (NDJSON, at most 10,000); 0 posts one reading a request to /v1/telemetry.
	BatchSize int
	// Client to post with. Default: a keep-alive client sized for Concurrency.
	Client *http.Client

	// Acknowledged, when set, is called with the device id and timestamp of every reading
	// the gateway acknowledged (answered 2xx and not listed as rejected), as its answer
	// arrives, from the goroutines that post: a ledger of what must be stored. Default none.
	Acknowledged func(device string, at time.Time)
	// Progress, when set, is called every ProgressEvery during the run (from another
	// goroutine) with the figures so far.
	Progress func(Progress)
	// ProgressEvery is the period of Progress. Default 1 s.
	ProgressEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Meters == 0 && c.Vehicles == 0 {
		c.Meters, c.Vehicles = DefaultDevices, DefaultDevices
	}
	if c.Readings == 0 && c.Duration == 0 {
		c.Readings = DefaultReadings
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.AnalyticsURL == "" {
		c.AnalyticsURL = c.URL
	}
	if c.SettleMappings == 0 {
		c.SettleMappings = time.Second
	}
	if c.MaxLead == 0 {
		c.MaxLead = telemetry.DefaultLimits().MaxFutureSkew - time.Minute
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()>>11 | 1 // never 0 (which asks for one), exact as a JSON number
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        c.Concurrency,
				MaxIdleConnsPerHost: c.Concurrency,
				MaxConnsPerHost:     c.Concurrency,
				IdleConnTimeout:     time.Minute,
			},
		}
	}
	return c
}

// Validate reports the first setting that makes the run impossible; it applies the
// defaults first.
func (c Config) Validate() error {
	return c.withDefaults().validate()
}

func (c Config) validate() error {
	if err := checkURL("gateway URL", c.URL); err != nil {
		return err
	}
	if c.WriteMappings {
		if err := checkURL("analytics URL", c.AnalyticsURL); err != nil {
			return err
		}
	}
	if err := c.validateFleet(); err != nil {
		return err
	}
	return c.validateTimes()
}

// validateFleet checks everything but where the run goes.
func (c Config) validateFleet() error {
	for _, n := range []struct {
		name string
		v    int
	}{{"meters", c.Meters}, {"vehicles", c.Vehicles}, {"readings", c.Readings}, {"concurrency", c.Concurrency}, {"batch size", c.BatchSize}} {
		if n.v < 0 {
			return fmt.Errorf("%s must not be negative, got %d", n.name, n.v)
		}
	}
	switch {
	case c.Vehicles > 0 && c.Meters == 0:
		return errors.New("vehicles need at least one meter (charger) to charge at")
	case c.Concurrency < 1:
		return errors.New("concurrency must be at least 1")
	case c.BatchSize > telemetry.DefaultMaxBatchReadings:
		return fmt.Errorf("batch size must be at most %d (a batch request's limit), got %d", telemetry.DefaultMaxBatchReadings, c.BatchSize)
	case math.IsNaN(c.Faulty) || c.Faulty < 0 || c.Faulty > 1:
		return fmt.Errorf("faulty is a fraction of the chargers, from 0 to 1, got %v", c.Faulty)
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		return fmt.Errorf("rate must be a positive number of readings per second (0: no limit), got %v", c.Rate)
	case c.Interval < time.Millisecond:
		return fmt.Errorf("interval must be at least 1ms, got %s", c.Interval)
	case c.Duration < 0:
		return fmt.Errorf("duration must not be negative, got %s", c.Duration)
	case c.Duration > 0 && c.Duration < c.Interval:
		return fmt.Errorf("duration %s is shorter than one interval (%s)", c.Duration, c.Interval)
	case c.MaxLead < 0 || c.SettleMappings < 0 || c.ProgressEvery < 0:
		return errors.New("the lead, the settling time of mappings and the progress period must not be negative")
	case !c.Start.IsZero() && c.Duration > 0:
		return errors.New("a live run starts now: a start time is for runs that are not live")
	}
	for _, id := range []string{c.meterID(max(c.Meters-1, 0)), c.vehicleID(max(c.Vehicles-1, 0))} {
		if !placement.ValidDeviceID(id) {
			return fmt.Errorf("prefix %q makes device ids such as %q, which are not valid device ids (letters, digits, '.', '_' and '-', at most 64)", c.Prefix, id)
		}
	}
	return nil
}

// validateTimes checks that the gateway will take the run's timestamps and the analytics
// API its mappings.
func (c Config) validateTimes() error {
	lateness := telemetry.DefaultLimits().MaxLateness
	switch {
	case !c.Start.IsZero() && c.Start.Before(c.Now().Add(-oldestSpan())):
		return fmt.Errorf("start %s is older than the %s of lateness readings are accepted with, less an hour", c.Start.UTC().Format(time.RFC3339), lateness)
	case !c.Start.IsZero() && c.WriteMappings && c.Start.After(c.Now()):
		return errors.New("a mapping cannot start in the future: with mappings, the start time must be in the past")
	case c.Start.IsZero() && !c.WriteMappings && c.Duration == 0:
		if span := time.Duration(c.intervals()) * c.Interval; span > oldestSpan() {
			return fmt.Errorf("the run's %d intervals of %s span %s, and readings older than %s are refused: send fewer readings, use more devices or a shorter interval",
				c.intervals(), c.Interval, span, lateness)
		}
	}
	return nil
}

// oldestSpan is how far into the past a run without mappings may reach: the gateway's
// lateness, less an hour for the run itself and clock skew.
func oldestSpan() time.Duration { return telemetry.DefaultLimits().MaxLateness - time.Hour }

func checkURL(name, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", name)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want http://host:port or https://host:port", name, s)
	}
	return nil
}

// devices is the number of devices of the run.
func (c Config) devices() int { return c.Meters + c.Vehicles }

// intervals is the number of intervals the run lasts (the last one may be cut short by
// Readings).
func (c Config) intervals() int {
	n := math.MaxInt
	if c.Duration > 0 {
		n = int(c.Duration / c.Interval)
	}
	if c.Readings > 0 && c.devices() > 0 {
		n = min(n, (c.Readings+c.devices()-1)/c.devices())
	}
	return n
}

// deviceID is the id of device i: the meters first, then the vehicles.
func (c Config) deviceID(i int) string {
	if i < c.Meters {
		return c.meterID(i)
	}
	return c.vehicleID(i - c.Meters)
}

func (c Config) meterID(i int) string   { return c.Prefix + "-m-" + strconv.Itoa(i) }
func (c Config) vehicleID(i int) string { return c.Prefix + "-v-" + strconv.Itoa(i) }
