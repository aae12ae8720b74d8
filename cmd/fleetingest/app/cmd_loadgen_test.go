package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runLoadgen runs `fleetingest loadgen args…` and returns its stdout and error.
func runLoadgen(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newLoadgenCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if strings.Contains(stderr.String(), "\r") {
		t.Errorf("a progress line on a stderr that is no terminal: %q", stderr.String())
	}
	return stdout.String(), err
}

func TestLoadgenRefusesSettingsThatCannotRun(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a faulty fraction above 1", []string{"--faulty", "1.5"}, "faulty is a fraction"},
		{"a negative faulty fraction", []string{"--faulty", "-0.2"}, "faulty is a fraction"},
		{"a negative batch", []string{"--batch", "-1"}, "batch size must not be negative"},
		{"a batch beyond the gateway's limit", []string{"--batch", "20000"}, "batch size must be at most 10000"},
		{"negative readings", []string{"--readings", "-1"}, "readings must not be negative"},
		{"vehicles without chargers", []string{"--meters", "0", "--vehicles", "4"}, "at least one meter"},
		{"a duration shorter than the interval", []string{"--duration", "10s", "--interval", "1m"}, "shorter than one interval"},
		{"a negative rate", []string{"--rate", "-5"}, "rate must be"},
		{"no gateway", []string{"--url", ""}, "gateway URL is required"},
		{"a gateway URL without a scheme", []string{"--url", "localhost:8080"}, "want http://host:port"},
		{"an id prefix devices cannot have", []string{"--prefix", "a/b"}, "prefix"},
		{"a flag that does not parse", []string{"--faulty", "much"}, "invalid argument"},
		{"a start that is no time", []string{"--start", "yesterday"}, "neither an RFC 3339 time nor a negative duration"},
		{"a start in the future", []string{"--start", "2h"}, "neither an RFC 3339 time nor a negative duration"},
		{"a start beyond the accepted lateness", []string{"--start", "-200h"}, "older than"},
		{"a start for a live run", []string{"--start", "-1h", "--duration", "1h"}, "live run starts now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Port 1 refuses connections: a run that got past validation would fail there.
			_, err := runLoadgen(t, append([]string{"--url", "http://127.0.0.1:1"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

// fakeFleetAPI accepts every reading and mapping, as a stack with room would.
func fakeFleetAPI(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/analytics/mappings":
			var m map[string]string
			if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
				t.Error(err)
			}
			_, _ = fmt.Fprintf(w, `{"vehicleId":%q,"meterId":%q,"intervals":[{"meterId":%q,"from":%q}]}`,
				m["vehicleId"], m["meterId"], m["meterId"], time.Now().UTC().Format(time.RFC3339Nano))
		case "/v1/telemetry/batch":
			n := 0
			for sc := bufio.NewScanner(r.Body); sc.Scan(); n++ {
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = fmt.Fprintf(w, `{"accepted":%d,"rejected":[]}`, n)
		default:
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status":"meter telemetry ingested"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLoadgenReportsAsJSONAndWritesTheTruth(t *testing.T) {
	srv := fakeFleetAPI(t)
	truth := filepath.Join(t.TempDir(), "truth.json")
	out, err := runLoadgen(t, "--url", srv.URL, "--meters", "10", "--vehicles", "20", "--faulty", "0.3", "--seed", "11",
		"--interval", "1s", "--readings", "300", "--batch", "40", "--truth", truth, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var report map[string]any
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	for field, want := range map[string]float64{
		"seed": 11, "chargers": 10, "faultyChargers": 3, "vehicles": 20, "mappings": 20,
		"requests": 8, "sent": 300, "accepted": 300, "rejected": 0, "failed": 0, "faultyMeters": 3,
	} {
		if report[field] != want {
			t.Errorf("%s = %v, want %v", field, report[field], want)
		}
	}
	for _, field := range []string{"durationSeconds", "readingsPerSecond", "latencyP50Ms", "latencyP99Ms", "firstReading", "lastReading"} {
		if _, ok := report[field]; !ok {
			t.Errorf("no %s in %s", field, out)
		}
	}
	data, err := os.ReadFile(truth)
	if err != nil {
		t.Fatal(err)
	}
	var tr struct{ FaultyMeters, FaultyVehicles []string }
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatal(err)
	}
	if len(tr.FaultyMeters) != 3 || len(tr.FaultyVehicles) != 6 {
		t.Errorf("truth %s: want 3 faulty chargers and their 6 vehicles", data)
	}
}

func TestLoadgenSummarisesForPeople(t *testing.T) {
	srv := fakeFleetAPI(t)
	out, err := runLoadgen(t, "--url", srv.URL, "--mappings=false", "--meters", "4", "--vehicles", "4", "--readings", "80", "--seed", "2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4 chargers (0 faulty), 4 vehicles, seed 2", "80 sent in 80 requests: 80 accepted, 0 rejected", "readings/s", "p50", "expected    0 chargers and 0 vehicles below 0.85"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mappings written") {
		t.Errorf("a run without mappings reports some:\n%s", out)
	}
}

func TestLoadgenFailsWhenNoRequestIsAnswered(t *testing.T) {
	out, err := runLoadgen(t, "--url", "http://127.0.0.1:1", "--mappings=false", "--meters", "1", "--vehicles", "1", "--readings", "4")
	if err == nil || !strings.Contains(err.Error(), "no request was answered") {
		t.Errorf("err = %v, want that no request was answered", err)
	}
	if !strings.Contains(out, "4 requests failed") {
		t.Errorf("no summary before the error:\n%s", out)
	}
}

func TestLoadgenStartIsATimeOrHowLongAgo(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 30, 15, 500_000_000, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-06-01T10:00:00Z":      time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC),
		"2026-06-01T12:00:00+02:00": time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC),
		"-2h":                       time.Date(2026, 6, 1, 10, 30, 15, 0, time.UTC),
		"-90m":                      time.Date(2026, 6, 1, 11, 0, 15, 0, time.UTC),
	} {
		got, err := parseLoadgenStart(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("--start %s = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"2h", "0s", "noon", "2026-06-01"} {
		if _, err := parseLoadgenStart(in, now); err == nil {
			t.Errorf("--start %s accepted", in)
		}
	}
}
