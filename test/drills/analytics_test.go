package drills

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/internal/loadgen"
	"github.com/fleetingest/fleetingest/internal/localpg"
)

// get asks the analytics API with a user token and returns the status and body.
func get(t *testing.T, token, u string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// alerts is the part of an alerts answer the drill reads.
type alerts struct {
	Sites []struct {
		MeterID string `json:"meterId"`
	} `json:"sites"`
	Vehicles []struct {
		VehicleID string `json:"vehicleId"`
	} `json:"vehicles"`
	MissingShards []int `json:"missingShards"`
}

func (a alerts) ids() (sites, vehicles []string) {
	for _, s := range a.Sites {
		sites = append(sites, s.MeterID)
	}
	for _, v := range a.Vehicles {
		vehicles = append(vehicles, v.VehicleID)
	}
	slices.Sort(sites)
	slices.Sort(vehicles)
	return sites, vehicles
}

// devicesOn lists the meters and vehicles shard p holds the status of.
func devicesOn(t *testing.T, p *pgxpool.Pool) (meters, vehicles map[string]bool) {
	t.Helper()
	meters, vehicles = map[string]bool{}, map[string]bool{}
	for q, into := range map[string]map[string]bool{
		`SELECT meter_id FROM current_meter_status`:     meters,
		`SELECT vehicle_id FROM current_vehicle_status`: vehicles,
	} {
		rows, err := p.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			into[id] = true
		}
		rows.Close()
	}
	return meters, vehicles
}

// setOf is ids as a set.
func setOf(ids []string) map[string]bool {
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// on keeps the ids of set.
func on(ids []string, set map[string]bool) []string {
	var out []string
	for _, id := range ids {
		if set[id] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// TestDrillAnalyticsWithAShardDown runs the simulator (20 chargers, 4 of them faulty, 40
// vehicles, an hour of readings) and then stops shard 1's Postgres: vehicles of shard 0
// still answer, those of shard 1 are unavailable naming their shard, and the alerts name the
// missing shard while listing exactly shard 0's part of the truth; once the shard is back,
// the alerts are whole again.
func TestDrillAnalyticsWithAShardDown(t *testing.T) {
	const prefix = "anadown"
	s, stopStack := startStack(t, 2, nil)
	pools := openPools(t, s.DSNs())
	start := time.Now().UTC().Add(-70 * time.Minute).Truncate(time.Minute)
	l := newLedger()
	cfg := loadgen.Config{URL: s.URL(), Token: s.DeviceToken(), AdminToken: s.AdminToken(), WriteMappings: true,
		Prefix: prefix, Meters: 20, Vehicles: 40, Faulty: 0.2, Seed: 20260601, Start: start,
		Interval: time.Minute, Readings: 60 * 60, BatchSize: 100, Concurrency: 4}
	res := startLoad(t, cfg, l).wait(t, 2*time.Minute)
	awaitStored(t, pools, prefix, l.snapshot(), time.Now(), 30*time.Second)
	if res.Accepted != cfg.Readings {
		t.Fatalf("%d of %d readings accepted (first error %s, first rejection %s)", res.Accepted, cfg.Readings, res.FirstError, res.FirstRejection)
	}
	meters0, vehicles0 := devicesOn(t, pools[0])
	_, vehicles1 := devicesOn(t, pools[1])

	end := res.LastReading.UTC().Truncate(time.Hour).Add(time.Hour)
	window := fmt.Sprintf("%dh", int(end.Sub(res.FirstReading.UTC().Truncate(time.Hour))/time.Hour))
	ask := func() alerts {
		q := url.Values{"threshold": {"0.85"}, "end": {end.Format(time.RFC3339)}, "window": {window}, "pageSize": {"1000"}}
		code, body := get(t, s.AdminToken(), s.URL()+"/v1/analytics/alerts?"+q.Encode())
		if code != http.StatusOK {
			t.Fatalf("alerts: %d %s", code, body)
		}
		var a alerts
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := s.Postgres(1)
	dataDir, port := pg.DataDir(), pg.Port()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	var a alerts
	for a = ask(); !slices.Equal(a.MissingShards, []int{1}); a = ask() {
		if time.Since(down) > 10*time.Second {
			t.Fatalf("alerts still do not name shard 1 missing 10 s after it stopped: %+v", a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	named := time.Since(down)
	// Sites are answered by their shard alone. A vehicle's alert also needs the shard of its
	// own id for the hours it was unmapped (the window's whole hours begin before its
	// mapping), so one of shard 0 may be left out, but none is listed wrongly.
	sites, vehicles := a.ids()
	wantSites, wantVehicles := on(res.Truth.FaultyMeters, meters0), on(res.Truth.FaultyVehicles, vehicles0)
	if !slices.Equal(sites, wantSites) || len(on(vehicles, setOf(wantVehicles))) != len(vehicles) {
		t.Errorf("alerts with shard 1 down list sites %v and vehicles %v, want shard 0's part of the truth: %v and some of %v", sites, vehicles, wantSites, wantVehicles)
	}
	downVehicles := vehicles

	// A vehicle's questions go to the shard of the charger it was mapped to; before its
	// mapping (from the run's start) it would be placed by its own id, so the window starts
	// there.
	answered, unavailable := 0, 0
	vend := res.LastReading.UTC().Add(time.Minute)
	q := url.Values{"end": {vend.Format(time.RFC3339)}, "window": {vend.Sub(start).String()}}.Encode()
	for i := range cfg.Vehicles {
		id := fmt.Sprintf("%s-v-%d", prefix, i)
		code, body := get(t, s.AdminToken(), s.URL()+"/v1/analytics/performance/"+id+"?"+q)
		switch {
		case vehicles0[id] && code == http.StatusOK:
			answered++
		case vehicles1[id] && code == http.StatusServiceUnavailable && strings.Contains(string(body), "shard 1"):
			unavailable++
		default:
			t.Errorf("%s (shard 0: %v, shard 1: %v): %d %s", id, vehicles0[id], vehicles1[id], code, body)
		}
	}

	restarted, err := localpg.Start(ctx, localpg.Config{DataDir: dataDir, Port: port, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopStack()
		if err := restarted.Stop(context.Background()); err != nil {
			t.Errorf("stopping the restarted shard: %v", err)
		}
	}()
	up := time.Now()
	for a = ask(); len(a.MissingShards) > 0; a = ask() {
		if time.Since(up) > 10*time.Second {
			t.Fatalf("alerts still name shard %v missing 10 s after it came back", a.MissingShards)
		}
		time.Sleep(100 * time.Millisecond)
	}
	whole := time.Since(up)
	sites, vehicles = a.ids()
	allSites, allVehicles := slices.Sorted(slices.Values(res.Truth.FaultyMeters)), slices.Sorted(slices.Values(res.Truth.FaultyVehicles))
	t.Logf("shard 1 stopped: alerts named it missing after %.1f s, listing %d of %d faulty sites (all of shard 0's) and %d of %d faulty vehicles (%d on shard 0), none wrongly; "+
		"%d vehicles of shard 0 answered, %d of shard 1 unavailable; alerts whole again %.1f s after it came back (%d sites, %d vehicles)",
		named.Seconds(), len(wantSites), len(allSites), len(downVehicles), len(allVehicles), len(wantVehicles), answered, unavailable, whole.Seconds(), len(sites), len(vehicles))
	if answered == 0 || unavailable == 0 || answered+unavailable != cfg.Vehicles {
		t.Errorf("%d vehicles answered and %d unavailable of %d", answered, unavailable, cfg.Vehicles)
	}
	if !slices.Equal(sites, allSites) || !slices.Equal(vehicles, allVehicles) {
		t.Errorf("alerts after the shard came back list %v and %v, want the truth %v and %v", sites, vehicles, allSites, allVehicles)
	}
}
