package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry"
)

// got is one reading a fake gateway accepted.
type got struct {
	device  string
	meter   bool
	ts      time.Time
	mwh     int64
	arrived time.Time
	text    string
}

// fakeStack plays the gateway and the mapping API: it decodes and validates every reading
// as the gateway does, keeps those it accepts, and keeps the mappings written.
type fakeStack struct {
	t   *testing.T
	srv *httptest.Server
	// reject, when set, refuses the readings it is true for (422, or listed in a batch).
	reject func(line string) bool

	mu       sync.Mutex
	readings []got
	mappings map[string]string    // vehicle → meter
	mappedAt map[string]time.Time // vehicle → from
	posts    int
}

func newFakeStack(t *testing.T) *fakeStack {
	t.Helper()
	f := &fakeStack{t: t, mappings: map[string]string{}, mappedAt: map[string]time.Time{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/analytics/mappings", f.mapping)
	mux.HandleFunc("POST /v1/telemetry", f.single)
	mux.HandleFunc("POST /v1/telemetry/batch", f.batch)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeStack) URL() string { return f.srv.URL }

// run runs cfg against the fake; what the fake kept may be read once it returns.
func (f *fakeStack) run(ctx context.Context, cfg Config) (Result, error) {
	res, err := Run(ctx, cfg)
	f.mu.Lock() // orders the handlers' writes before the test's reads
	defer f.mu.Unlock()
	return res, err
}

func (f *fakeStack) mapping(w http.ResponseWriter, r *http.Request) {
	var m struct{ VehicleID, MeterID, From string }
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.Header.Get("Authorization") != "Bearer admin" {
		http.Error(w, `{"code":7,"message":"no"}`, http.StatusForbidden)
		return
	}
	from := time.Now().UTC()
	if m.From != "" {
		var err error
		if from, err = time.Parse(time.RFC3339Nano, m.From); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	f.mu.Lock()
	f.mappings[m.VehicleID], f.mappedAt[m.VehicleID] = m.MeterID, from
	f.mu.Unlock()
	writeJSON(f.t, w, map[string]any{"vehicleId": m.VehicleID, "meterId": m.MeterID, "message": "ok",
		"intervals": []map[string]any{{"meterId": m.MeterID, "from": from.Format(time.RFC3339Nano)}}})
}

// accept decodes one line as the gateway would; ok false when it refuses it.
func (f *fakeStack) accept(line string) (got, string, bool) {
	now := time.Now()
	r, err := telemetry.DecodeReading([]byte(line), now, telemetry.DefaultLimits())
	if err != nil {
		return got{}, err.Error(), false
	}
	if f.reject != nil && f.reject(line) {
		return got{}, "refused by the test", false
	}
	g := got{device: r.DeviceID(), meter: r.Kind() == telemetry.KindMeter, ts: r.Time(), arrived: now, text: line}
	if g.meter {
		g.mwh = r.Meter.GetMwhConsumedAc()
	} else {
		g.mwh = r.Vehicle.GetMwhDeliveredDc()
	}
	return g, "", true
}

func (f *fakeStack) single(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	if _, err := body.ReadFrom(r.Body); err != nil {
		f.t.Error(err)
	}
	g, why, ok := f.accept(body.String())
	f.mu.Lock()
	f.posts++
	if ok {
		f.readings = append(f.readings, g)
	}
	f.mu.Unlock()
	if !ok {
		http.Error(w, why, http.StatusUnprocessableEntity)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	writeJSON(f.t, w, map[string]string{"status": "ingested"})
}

func (f *fakeStack) batch(w http.ResponseWriter, r *http.Request) {
	type rejection struct {
		Index int            `json:"index"`
		Error map[string]any `json:"error"`
	}
	answer := struct {
		Accepted int         `json:"accepted"`
		Rejected []rejection `json:"rejected"`
	}{Rejected: []rejection{}}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	var kept []got
	for i := 0; sc.Scan(); i++ {
		g, why, ok := f.accept(sc.Text())
		if !ok {
			answer.Rejected = append(answer.Rejected, rejection{Index: i, Error: map[string]any{"code": 3, "message": why}})
			continue
		}
		kept = append(kept, g)
		answer.Accepted++
	}
	f.mu.Lock()
	f.posts++
	f.readings = append(f.readings, kept...)
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	writeJSON(f.t, w, answer)
}

func writeJSON(t *testing.T, w http.ResponseWriter, v any) {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		t.Error(err)
	}
}

// sums are the accepted energies of a run, by charger.
type sums struct {
	ac, dc map[string]int64
	// vehicleDC is each vehicle's accepted DC.
	vehicleDC map[string]int64
}

// sumsByCharger sums what the fake accepted, attributing each vehicle to the meter it was
// mapped to.
func (f *fakeStack) sumsByCharger() sums {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := sums{ac: map[string]int64{}, dc: map[string]int64{}, vehicleDC: map[string]int64{}}
	for _, g := range f.readings {
		if g.meter {
			s.ac[g.device] += g.mwh
			continue
		}
		s.dc[f.mappings[g.device]] += g.mwh
		s.vehicleDC[g.device] += g.mwh
	}
	return s
}

// truth is what the alerts would list from the sums.
func (s sums) truth(mappings map[string]string) Truth {
	t := Truth{FaultyMeters: []string{}, FaultyVehicles: []string{}}
	faulty := map[string]bool{}
	for m, ac := range s.ac {
		if ac > 0 && float64(s.dc[m])/float64(ac) < FaultThreshold {
			faulty[m] = true
			t.FaultyMeters = append(t.FaultyMeters, m)
		}
	}
	for v, dc := range s.vehicleDC {
		if dc > 0 && faulty[mappings[v]] {
			t.FaultyVehicles = append(t.FaultyVehicles, v)
		}
	}
	return t
}

func sameSet(a, b []string) bool {
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}
