package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// reading is one generated reading; a, b, c are its three measurements in payload order.
type reading struct {
	meter   bool
	id      string
	ts      time.Time
	a, b, c float64
}

func (r reading) payload() map[string]any {
	ts := r.ts.UTC().Format(time.RFC3339Nano)
	if r.meter {
		return map[string]any{"meterId": r.id, "kwhConsumedAc": r.a, "voltage": r.b, "timestamp": ts}
	}
	return map[string]any{"vehicleId": r.id, "soc": r.a, "kwhDeliveredDc": r.b, "batteryTemp": r.c, "timestamp": ts}
}

type key struct {
	id string
	ts int64
}

// fleet is a generated data set with the placement every reading must get.
type fleet struct {
	readings []reading // with duplicates
	mappings map[string]*registry.Mapping
	slotMap  *placement.SlotMap
}

func (f *fleet) shardOf(r reading) int {
	if r.meter {
		return f.slotMap.ShardOf(r.id)
	}
	return f.slotMap.ShardOf(registry.PlacementKey(f.mappings[r.id], r.id, r.ts))
}

// distinct returns the readings without duplicates, by (device, ts).
func (f *fleet) distinct() map[key]reading {
	out := map[key]reading{}
	for _, r := range f.readings {
		out[key{r.id, r.ts.UnixMicro()}] = r
	}
	return out
}

// postAll posts the readings in rounds, each round shuffled and sent through NDJSON batches,
// JSON-array batches and single requests in turn, and fails on anything but full acceptance.
func postAll(t *testing.T, url string, readings []reading, rounds int, rng *rand.Rand) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		rs := append([]reading(nil), readings...)
		rng.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
		for start := 0; start < len(rs); {
			n := min(1+rng.IntN(120), len(rs)-start)
			chunk := rs[start : start+n]
			start += n
			switch rng.IntN(3) {
			case 0:
				var body bytes.Buffer
				for _, r := range chunk {
					line, _ := json.Marshal(r.payload())
					body.Write(line)
					body.WriteByte('\n')
				}
				checkBatch(t, do(t, http.MethodPost, url+"/v1/telemetry/batch", "application/x-ndjson", body.Bytes()), n)
			case 1:
				items := make([]map[string]any, n)
				for i, r := range chunk {
					items[i] = r.payload()
				}
				data, _ := json.Marshal(items)
				checkBatch(t, do(t, http.MethodPost, url+"/v1/telemetry/batch", "application/json", data), n)
			default:
				for _, r := range chunk {
					resp := postJSON(t, url+"/v1/telemetry", r.payload())
					if resp.Code != http.StatusAccepted {
						t.Fatalf("POST /v1/telemetry = %d %s", resp.Code, resp.Body)
					}
				}
			}
		}
	}
}

func checkBatch(t *testing.T, resp response, n int) {
	t.Helper()
	if resp.Code != http.StatusAccepted {
		t.Fatalf("POST /v1/telemetry/batch = %d %s", resp.Code, resp.Body)
	}
	var br struct {
		Accepted int   `json:"accepted"`
		Rejected []any `json:"rejected"`
	}
	resp.json(t, &br)
	if br.Accepted != n || len(br.Rejected) != 0 {
		t.Fatalf("batch of %d: %s", n, resp.Body)
	}
}

func TestRoundTripStoresEveryReadingOnceOnItsShard(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	rng := rand.New(rand.NewPCG(1, 2))
	f := &fleet{mappings: map[string]*registry.Mapping{}, slotMap: placement.MustSlotMap(2)}

	// Vehicles v-00..v-39 charge from meters m-00..m-19, two or more to a meter.
	for i := 0; i < 40; i++ {
		v, m := fmt.Sprintf("v-%02d", i), fmt.Sprintf("m-%02d", i%20)
		resp := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": v, "meterId": m})
		if resp.Code != http.StatusOK {
			t.Fatalf("creating mapping %s→%s: %d %s", v, m, resp.Code, resp.Body)
		}
		var mr registry.Mapping
		resp.json(t, &mr)
		f.mappings[v] = &mr
	}
	time.Sleep(500 * time.Millisecond) // the gateway's copy follows within 1s
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	old := time.Now().Add(-72 * time.Hour).Truncate(time.Minute)

	add := func(r reading) {
		f.readings = append(f.readings, r)
		if rng.IntN(20) == 0 { // ~5% sent twice within the set
			f.readings = append(f.readings, r)
		}
	}
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("m-%02d", i)
		for k := 0; k < 8; k++ {
			add(reading{meter: true, id: id, ts: t0.Add(time.Duration(k)*7*time.Second + time.Duration(i)*time.Millisecond), a: float64(rng.IntN(3_000_000)) / 1e6, b: 220 + rng.Float64()*20})
		}
		add(reading{meter: true, id: id, ts: old.Add(time.Duration(i) * time.Minute), a: float64(rng.IntN(1_000_000)) / 1e6, b: 230})
	}
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("v-%02d", i)
		for k := 0; k < 8; k++ {
			add(reading{id: id, ts: t0.Add(time.Duration(k)*7*time.Second + 123*time.Microsecond), a: float64(10 + k), b: float64(rng.IntN(2_500_000)) / 1e6, c: 20 + rng.Float64()*10})
		}
		// 3 days old: before any mapping, so placed by the vehicle's own id.
		add(reading{id: id, ts: old.Add(time.Duration(i) * time.Second), a: 50, b: 0.5, c: 25})
	}

	postAll(t, s.URL(), f.readings, 3, rng)

	want := f.distinct()
	waitForRows(t, pools, len(want))

	// Every reading on exactly the shard placement names, and nowhere else.
	wantByShard := make([]map[key]reading, 2)
	for i := range wantByShard {
		wantByShard[i] = map[key]reading{}
	}
	for k, r := range want {
		wantByShard[f.shardOf(r)][k] = r
	}
	if len(wantByShard[0]) == 0 || len(wantByShard[1]) == 0 {
		t.Fatalf("the data set does not exercise both shards: %d / %d", len(wantByShard[0]), len(wantByShard[1]))
	}
	for i, p := range pools {
		got := readKeys(t, p)
		if len(got) != len(wantByShard[i]) {
			t.Errorf("shard %d holds %d readings, want %d", i, len(got), len(wantByShard[i]))
		}
		for k := range got {
			if _, ok := wantByShard[i][k]; !ok {
				t.Errorf("shard %d holds %v, which placement puts elsewhere", i, k)
			}
		}
		for k, r := range wantByShard[i] {
			v, ok := got[k]
			if !ok {
				t.Errorf("shard %d lacks %v", i, k)
				continue
			}
			if v != [2]float64{r.a, r.b} {
				t.Errorf("shard %d %v = %v, want %v", i, k, v, [2]float64{r.a, r.b})
			}
		}
		checkStatusIsNewest(t, i, p, wantByShard[i])
		checkRollupsMatchHistory(t, i, p)
	}
	// Vehicles mapped at the reading's time carry their meter.
	for i, p := range pools {
		n := count(t, p, `SELECT count(*) FROM vehicle_telemetry_history WHERE vehicle_id < 'v-40' AND ts >= $1 AND meter_id = ''`, t0)
		if n != 0 {
			t.Errorf("shard %d: %d readings of mapped vehicles without their meter", i, n)
		}
	}
}

// readKeys returns every history row of a shard as key → first two measurements.
func readKeys(t *testing.T, p *pgxpool.Pool) map[key][2]float64 {
	t.Helper()
	rows, err := p.Query(context.Background(), `
		SELECT meter_id, ts, mwh_consumed_ac::float8 / 1000000, voltage FROM meter_telemetry_history
		UNION ALL SELECT vehicle_id, ts, soc, mwh_delivered_dc::float8 / 1000000 FROM vehicle_telemetry_history`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[key][2]float64{}
	for rows.Next() {
		var id string
		var ts time.Time
		var a, b float64
		if err := rows.Scan(&id, &ts, &a, &b); err != nil {
			t.Fatal(err)
		}
		k := key{id, ts.UnixMicro()}
		if _, dup := out[k]; dup {
			t.Errorf("%v stored twice", k)
		}
		out[k] = [2]float64{a, b}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkStatusIsNewest(t *testing.T, shard int, p *pgxpool.Pool, want map[key]reading) {
	t.Helper()
	newest := map[string]reading{}
	for _, r := range want {
		if cur, ok := newest[r.id]; !ok || r.ts.After(cur.ts) {
			newest[r.id] = r
		}
	}
	rows, err := p.Query(context.Background(), `
		SELECT meter_id, last_updated_at, last_mwh_consumed_ac::float8 / 1000000 FROM current_meter_status
		UNION ALL SELECT vehicle_id, last_updated_at, last_mwh_delivered_dc::float8 / 1000000 FROM current_vehicle_status`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id string
		var ts time.Time
		var energy float64
		if err := rows.Scan(&id, &ts, &energy); err != nil {
			t.Fatal(err)
		}
		seen++
		r, ok := newest[id]
		if !ok {
			t.Errorf("shard %d has a status row for %s, which has no readings there", shard, id)
			continue
		}
		wantEnergy := r.a
		if !r.meter {
			wantEnergy = r.b
		}
		if !ts.Equal(r.ts) || energy != wantEnergy {
			t.Errorf("shard %d status of %s = %s %v, want the newest reading %s %v", shard, id, ts, energy, r.ts, wantEnergy)
		}
	}
	if seen != len(newest) {
		t.Errorf("shard %d has %d status rows, want %d", shard, seen, len(newest))
	}
}

// checkRollupsMatchHistory compares the hourly rollups with GROUP BY over history.
func checkRollupsMatchHistory(t *testing.T, shard int, p *pgxpool.Pool) {
	t.Helper()
	checks := []struct {
		name  string
		query string
	}{
		{"meter_hourly", `
			WITH h AS (
				SELECT meter_id, date_bin('1 hour', ts, '1970-01-01') AS hour,
				       sum(mwh_consumed_ac) AS ac, sum(voltage) AS v, count(*) AS n
				FROM meter_telemetry_history GROUP BY 1, 2)
			SELECT count(*) FILTER (WHERE r.meter_id IS NULL OR h.meter_id IS NULL OR r.readings <> h.n
			                          OR r.mwh_consumed_ac <> h.ac),
			       coalesce(max(abs(r.voltage_sum - h.v) / greatest(abs(h.v), 1e-12)), 0),
			       count(*)
			FROM h FULL JOIN meter_hourly r USING (meter_id, hour)`},
		{"vehicle_hourly", `
			WITH h AS (
				SELECT vehicle_id, meter_id, date_bin('1 hour', ts, '1970-01-01') AS hour,
				       sum(mwh_delivered_dc) AS dc, sum(battery_temp) AS temp,
				       min(soc) AS smin, max(soc) AS smax, count(*) AS n
				FROM vehicle_telemetry_history GROUP BY 1, 2, 3)
			SELECT count(*) FILTER (WHERE r.vehicle_id IS NULL OR h.vehicle_id IS NULL OR r.readings <> h.n
			                          OR r.soc_min <> h.smin OR r.soc_max <> h.smax OR r.mwh_delivered_dc <> h.dc),
			       coalesce(max(abs(r.battery_temp_sum - h.temp) / greatest(abs(h.temp), 1e-12)), 0),
			       count(*)
			FROM h FULL JOIN vehicle_hourly r USING (vehicle_id, meter_id, hour)`},
	}
	for _, c := range checks {
		var mismatched, rows int
		var relErr float64
		if err := p.QueryRow(context.Background(), c.query).Scan(&mismatched, &relErr, &rows); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if rows == 0 {
			t.Errorf("shard %d %s is empty", shard, c.name)
		}
		if mismatched != 0 || relErr > 1e-9 || math.IsNaN(relErr) {
			t.Errorf("shard %d %s: %d rows differ from GROUP BY over history, max relative error %g", shard, c.name, mismatched, relErr)
		}
	}
}
