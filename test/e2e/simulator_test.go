package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// simulatorReport is the part of `fleetingest loadgen --json` the test reads.
type simulatorReport struct {
	Mappings     int       `json:"mappings"`
	Sent         int       `json:"sent"`
	Accepted     int       `json:"accepted"`
	Rejected     int       `json:"rejected"`
	Failed       int       `json:"failed"`
	FirstReading time.Time `json:"firstReading"`
	LastReading  time.Time `json:"lastReading"`
	FirstError   string    `json:"firstError"`
	Rejection    string    `json:"firstRejection"`
}

// alertSets are the ids an alerts answer lists.
type alertSets struct {
	Sites []struct {
		MeterID string `json:"meterId"`
	} `json:"sites"`
	Vehicles []struct {
		VehicleID string `json:"vehicleId"`
	} `json:"vehicles"`
	MissingShards []int `json:"missingShards"`
}

func (a alertSets) ids() (sites, vehicles []string) {
	for _, s := range a.Sites {
		sites = append(sites, s.MeterID)
	}
	for _, v := range a.Vehicles {
		vehicles = append(vehicles, v.VehicleID)
	}
	return sites, vehicles
}

// precisionRecall compares what was found with what is true.
func precisionRecall(found, truth []string) (precision, recall float64) {
	want := map[string]bool{}
	for _, id := range truth {
		want[id] = true
	}
	hits := 0
	for _, id := range found {
		if want[id] {
			hits++
		}
	}
	precision, recall = 1, 1
	if len(found) > 0 {
		precision = float64(hits) / float64(len(found))
	}
	if len(truth) > 0 {
		recall = float64(hits) / float64(len(truth))
	}
	return precision, recall
}

// TestTheAlertsFindExactlyTheSimulatedFaultyChargers runs the fleet simulator against a dev
// stack (20 chargers, 4 of them faulty, 40 vehicles, two hours of readings a minute apart,
// the mappings written from the run's start) and asks the alerts over whole hours that hold
// every reading: the sites and vehicles below 0.85 are exactly the simulator's truth.
func TestTheAlertsFindExactlyTheSimulatedFaultyChargers(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	const meters, vehicles, intervals = 20, 40, 120
	start := time.Now().UTC().Add(-intervals * time.Minute).Truncate(time.Minute)
	truthFile := filepath.Join(t.TempDir(), "truth.json")

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(command.Path(t), "loadgen",
		"--url", s.URL(), "--token", s.DeviceToken(), "--admin-token", s.AdminToken(),
		"--meters", strconv.Itoa(meters), "--vehicles", strconv.Itoa(vehicles), "--faulty", "0.2", "--seed", "20260601",
		"--prefix", "sim", "--start", start.Format(time.RFC3339), "--interval", "1m",
		"--readings", strconv.Itoa(intervals*(meters+vehicles)), "--batch", "250", "--concurrency", "8",
		"--truth", truthFile, "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("loadgen: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var report simulatorReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("loadgen --json printed %q: %v", stdout.String(), err)
	}
	if want := intervals * (meters + vehicles); report.Accepted != want || report.Mappings != vehicles {
		t.Fatalf("%d mappings, %d of %d readings accepted (%d rejected, %d failed): %s %s",
			report.Mappings, report.Accepted, want, report.Rejected, report.Failed, report.Rejection, report.FirstError)
	}
	var truth struct {
		FaultyMeters   []string `json:"faultyMeters"`
		FaultyVehicles []string `json:"faultyVehicles"`
	}
	data, err := os.ReadFile(truthFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &truth); err != nil {
		t.Fatal(err)
	}
	// 20 × 0.2 chargers are faulty, each with the 2 vehicles that charge there.
	if len(truth.FaultyMeters) != 4 || len(truth.FaultyVehicles) != 8 {
		t.Fatalf("truth %s: want 4 faulty chargers and 8 vehicles", data)
	}

	waitForRows(t, pools, report.Accepted)

	// Whole hours from the hour of the first reading to the end of the hour of the last.
	end := report.LastReading.UTC().Truncate(time.Hour).Add(time.Hour)
	hours := int(end.Sub(report.FirstReading.UTC().Truncate(time.Hour)) / time.Hour)
	query := url.Values{"threshold": {"0.85"}, "end": {end.Format(time.RFC3339)}, "window": {fmt.Sprintf("%dh", hours)}, "pageSize": {"1000"}}
	var alerts alertSets
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp := do(t, http.MethodGet, s.URL()+"/v1/analytics/alerts?"+query.Encode(), "", nil)
		if resp.Code != http.StatusOK {
			t.Fatalf("alerts: %d %s", resp.Code, resp.Body)
		}
		alerts = alertSets{}
		resp.json(t, &alerts)
		sites, vehs := alerts.ids()
		sp, sr := precisionRecall(sites, truth.FaultyMeters)
		vp, vr := precisionRecall(vehs, truth.FaultyVehicles)
		if sp == 1 && sr == 1 && vp == 1 && vr == 1 && len(alerts.MissingShards) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts over %d hours to %s:\n  sites %v (precision %.2f, recall %.2f), truth %v\n  vehicles %v (precision %.2f, recall %.2f), truth %v\n  missing shards %v",
				hours, end.Format(time.RFC3339), sites, sp, sr, truth.FaultyMeters, vehs, vp, vr, truth.FaultyVehicles, alerts.MissingShards)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
