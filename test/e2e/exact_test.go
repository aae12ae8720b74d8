package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

// TestEnergyAddsUpExactlyInEveryAnswer posts 30 meter readings of 0.6 kWh and 30 vehicle
// readings of 0.1 kWh for two vehicle-and-meter pairs on different shards, one pair in time
// order one reading a request, the other shuffled in one batch: every answer (per vehicle, per
// meter, alerts, series), asked again and again as the service moves from Postgres to memory,
// says 18 and 3, exactly.
func TestEnergyAddsUpExactlyInEveryAnswer(t *testing.T) {
	s := startStack(t, nil)
	slots := placement.MustSlotMap(2)
	meterA, meterB := "exact-m-0", ""
	for i := 1; meterB == ""; i++ {
		if id := fmt.Sprintf("exact-m-%d", i); slots.ShardOf(id) != slots.ShardOf(meterA) {
			meterB = id
		}
	}
	pairs := [][2]string{{"exact-ev-a", meterA}, {"exact-ev-b", meterB}}
	for _, p := range pairs {
		if r := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": p[0], "meterId": p[1]}); r.Code != http.StatusOK {
			t.Fatalf("mapping %v: %d %s", p, r.Code, r.Body)
		}
	}
	// Readings after the mappings, a few seconds apart (the gateway takes up to 5 minutes ahead).
	start := time.Now().Add(2 * time.Second).Truncate(time.Second)
	ts := func(i int) string { return start.Add(time.Duration(i) * 4 * time.Second).UTC().Format(time.RFC3339) }
	for i := range 30 {
		for _, r := range []response{
			postJSON(t, s.URL()+"/v1/telemetry", map[string]any{"meterId": meterA, "kwhConsumedAc": 0.6, "voltage": 230, "timestamp": ts(i)}),
			postJSON(t, s.URL()+"/v1/telemetry", map[string]any{"vehicleId": pairs[0][0], "soc": 50, "kwhDeliveredDc": 0.1, "batteryTemp": 25, "timestamp": ts(i)}),
		} {
			if r.Code != http.StatusAccepted {
				t.Fatalf("reading: %d %s", r.Code, r.Body)
			}
		}
	}
	var lines []string
	for i := range 30 {
		lines = append(lines,
			fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":0.6,"voltage":230,"timestamp":%q}`, meterB, ts(i)),
			fmt.Sprintf(`{"vehicleId":%q,"soc":50,"kwhDeliveredDc":0.1,"batteryTemp":25,"timestamp":%q}`, pairs[1][0], ts(i)))
	}
	rand.New(rand.NewPCG(7, 7)).Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	if r := do(t, http.MethodPost, s.URL()+"/v1/telemetry/batch", "application/x-ndjson", []byte(strings.Join(lines, "\n"))); r.Code != http.StatusAccepted || !strings.Contains(string(r.Body), `"accepted":60`) {
		t.Fatalf("batch: %d %s", r.Code, r.Body)
	}
	waitForRows(t, shardPools(t, s), 120)

	end := start.Add(10 * time.Minute).UTC()
	q := "?window=24h&end=" + end.Format(time.RFC3339)
	alertEnd := end.Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339)
	for round := range 5 {
		for _, p := range pairs {
			var v struct {
				Energy map[string]float64 `json:"energy"`
			}
			get(t, s, "/v1/analytics/performance/"+p[0]+q).json(t, &v)
			if v.Energy["acConsumed"] != 18 || v.Energy["dcDelivered"] != 3 || v.Energy["efficiencyRatio"] != 3.0/18 {
				t.Fatalf("round %d, vehicle %s: %v, want AC 18, DC 3", round, p[0], v.Energy)
			}
			var m struct {
				Energy   map[string]float64 `json:"energy"`
				Vehicles []struct {
					AcConsumed, DcDelivered float64
				} `json:"vehicles"`
			}
			get(t, s, "/v1/analytics/meters/"+p[1]+"/performance"+q).json(t, &m)
			if m.Energy["acConsumed"] != 18 || m.Energy["dcDelivered"] != 3 || len(m.Vehicles) != 1 || m.Vehicles[0].AcConsumed != 18 || m.Vehicles[0].DcDelivered != 3 {
				t.Fatalf("round %d, meter %s: %+v, want AC 18, DC 3 and its one vehicle alike", round, p[1], m)
			}
			var series struct {
				Points []struct{ AcConsumed, DcDelivered float64 } `json:"points"`
			}
			get(t, s, "/v1/analytics/vehicles/"+p[0]+"/series"+q).json(t, &series)
			var ac, dc int64
			for _, pt := range series.Points {
				ac, dc = ac+int64(pt.AcConsumed*1e6+0.5), dc+int64(pt.DcDelivered*1e6+0.5)
			}
			if ac != 18_000_000 || dc != 3_000_000 {
				t.Fatalf("round %d, series of %s: AC %d mWh, DC %d mWh, want 18 and 3 kWh", round, p[0], ac, dc)
			}
		}
		var alerts struct {
			Sites []struct {
				MeterID                 string `json:"meterId"`
				AcConsumed, DcDelivered float64
			} `json:"sites"`
			Vehicles []struct {
				VehicleID               string `json:"vehicleId"`
				AcConsumed, DcDelivered float64
			} `json:"vehicles"`
		}
		get(t, s, "/v1/analytics/alerts?threshold=0.5&window=24h&end="+alertEnd).json(t, &alerts)
		found := 0
		for _, st := range alerts.Sites {
			if strings.HasPrefix(st.MeterID, "exact-") {
				found++
				if st.AcConsumed != 18 || st.DcDelivered != 3 {
					t.Fatalf("round %d, alert for site %s: AC %v, DC %v", round, st.MeterID, st.AcConsumed, st.DcDelivered)
				}
			}
		}
		for _, v := range alerts.Vehicles {
			if strings.HasPrefix(v.VehicleID, "exact-") {
				found++
				if v.AcConsumed != 18 || v.DcDelivered != 3 {
					t.Fatalf("round %d, alert for vehicle %s: AC %v, DC %v", round, v.VehicleID, v.AcConsumed, v.DcDelivered)
				}
			}
		}
		if found != 4 {
			t.Fatalf("round %d: %d of the 2 sites and 2 vehicles in the alerts", round, found)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func get(t *testing.T, s *devstack.Stack, path string) response {
	t.Helper()
	r := do(t, http.MethodGet, s.URL()+path, "", nil)
	if r.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Code, r.Body)
	}
	return r
}
