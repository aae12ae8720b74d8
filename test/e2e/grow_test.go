package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/analytics/attribution"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

// growFleet is the load of TestAFleetGrowsOnlineWithoutMovingARow: vehicles charging at
// meters, each reading of a vehicle posted with one of its meter at the same instant, and
// the ledger of every reading answered 202.
type growFleet struct {
	s        *devstack.Stack
	rng      *rand.Rand
	mu       sync.Mutex
	meterOf  map[string]string      // vehicle → meter it charges at now
	ledger   map[ledgerKey]ledgered // accepted readings
	accepted []ledgerKey            // in order, for duplicates
}

type ledgerKey struct {
	device string
	micros int64
}

type ledgered struct {
	meter bool
	mwh   int64
}

func gmeter(i int) string   { return fmt.Sprintf("gm-%03d", i) }
func gvehicle(i int) string { return fmt.Sprintf("gv-%03d", i) }

// post posts pairs of readings (a vehicle's and its meter's) at the given times and records
// what was accepted.
func (f *growFleet) post(t *testing.T, vehicles []string, at func(i int) time.Time) {
	t.Helper()
	f.mu.Lock()
	type item struct {
		key  ledgerKey
		rec  ledgered
		line string
	}
	var items []item
	for i, v := range vehicles {
		ts := at(i).UTC().Truncate(time.Microsecond)
		m := f.meterOf[v]
		ac, dc := 400_000+f.rng.Int64N(400_000), 300_000+f.rng.Int64N(300_000)
		stamp := ts.Format(time.RFC3339Nano)
		items = append(items,
			item{ledgerKey{m, ts.UnixMicro()}, ledgered{meter: true, mwh: ac}, fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":%d.%06d,"voltage":230,"timestamp":%q}`, m, ac/1e6, ac%1e6, stamp)},
			item{ledgerKey{v, ts.UnixMicro()}, ledgered{mwh: dc}, fmt.Sprintf(`{"vehicleId":%q,"soc":50,"kwhDeliveredDc":%d.%06d,"batteryTemp":25,"timestamp":%q}`, v, dc/1e6, dc%1e6, stamp)})
	}
	f.mu.Unlock()
	lines := make([]string, len(items))
	for i, it := range items {
		lines[i] = it.line
	}
	r := do(t, http.MethodPost, f.s.URL()+"/v1/telemetry/batch", "application/x-ndjson", []byte(strings.Join(lines, "\n")))
	var res struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index int `json:"index"`
		} `json:"rejected"`
	}
	if r.Code != http.StatusAccepted || json.Unmarshal(r.Body, &res) != nil {
		t.Errorf("batch: %d %s", r.Code, r.Body)
		return
	}
	refused := map[int]bool{}
	for _, x := range res.Rejected {
		refused[x.Index] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, it := range items {
		if !refused[i] {
			if _, dup := f.ledger[it.key]; !dup {
				f.accepted = append(f.accepted, it.key)
			}
			f.ledger[it.key] = it.rec
		}
	}
}

// TestAFleetGrowsOnlineWithoutMovingARow grows a 2-shard dev stack to 3, then 4 shards while
// 200 vehicles and their meters report twice a second, with re-mappings, a backfilled
// mapping, late readings from before each cutover and duplicates: every reading answered 202
// is in Postgres once, on the shard the shard map names for its key at its time; the
// per-vehicle, per-meter, series and alert answers equal the ones computed from the readings
// sent; and after the last cutover each shard takes about a quarter of the new readings.
func TestAFleetGrowsOnlineWithoutMovingARow(t *testing.T) {
	const n = 200
	s := startStack(t, nil)
	ctx := t.Context()
	f := &growFleet{s: s, rng: rand.New(rand.NewPCG(16, 16)), meterOf: map[string]string{}, ledger: map[ledgerKey]ledgered{}}
	var vehicles []string
	for i := range n {
		v := gvehicle(i)
		vehicles = append(vehicles, v)
		f.meterOf[v] = gmeter(i)
		if r := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": v, "meterId": gmeter(i)}); r.Code != http.StatusOK {
			t.Fatalf("mapping %s: %d %s", v, r.Code, r.Body)
		}
	}
	// A vehicle whose history is backfilled: mapped from 30 minutes ago.
	backfilledFrom := time.Now().Add(-30 * time.Minute).UTC().Truncate(time.Second)
	if r := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]any{"vehicleId": "gv-bf", "meterId": "gm-bf", "from": backfilledFrom.Format(time.RFC3339)}); r.Code != http.StatusOK {
		t.Fatalf("backfilled mapping: %d %s", r.Code, r.Body)
	}
	f.meterOf["gv-bf"] = "gm-bf"

	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	load.Go(func() {
		for loadCtx.Err() == nil {
			now := time.Now()
			f.post(t, vehicles, func(i int) time.Time { return now.Add(time.Duration(i) * time.Microsecond) })
			select {
			case <-loadCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	defer func() { stopLoad(); load.Wait() }()

	time.Sleep(time.Second)
	// Ten vehicles move to meters 100..109 (shared from then on with those meters' own).
	for i := range 10 {
		r := do(t, http.MethodPut, s.URL()+"/v1/analytics/mappings/"+gvehicle(i), "application/json", fmt.Appendf(nil, `{"meterId":%q}`, gmeter(100+i)))
		if r.Code != http.StatusOK {
			t.Fatalf("re-mapping: %d %s", r.Code, r.Body)
		}
		f.mu.Lock()
		f.meterOf[gvehicle(i)] = gmeter(100 + i)
		f.mu.Unlock()
	}
	grow := func(shards int, late []string) time.Time {
		t.Helper()
		cutover, err := s.Grow(ctx, shards)
		if err != nil {
			t.Fatalf("growing to %d: %v", shards, err)
		}
		time.Sleep(time.Until(cutover.Add(1500 * time.Millisecond)))
		// Late readings, stamped before the cutover, land where their keys were then.
		f.post(t, late, func(i int) time.Time { return cutover.Add(-2*time.Second + time.Duration(i)*time.Millisecond) })
		return cutover
	}
	first := grow(3, vehicles[20:40])
	// Duplicates of readings already accepted: stored once.
	f.mu.Lock()
	dups := slices.Clone(f.accepted[:40])
	f.mu.Unlock()
	for _, k := range dups {
		f.mu.Lock()
		rec := f.ledger[k]
		f.mu.Unlock()
		line := fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":%d.%06d,"voltage":230,"timestamp":%q}`, k.device, rec.mwh/1e6, rec.mwh%1e6, time.UnixMicro(k.micros).UTC().Format(time.RFC3339Nano))
		if !rec.meter {
			line = fmt.Sprintf(`{"vehicleId":%q,"soc":50,"kwhDeliveredDc":%d.%06d,"batteryTemp":25,"timestamp":%q}`, k.device, rec.mwh/1e6, rec.mwh%1e6, time.UnixMicro(k.micros).UTC().Format(time.RFC3339Nano))
		}
		if r := do(t, http.MethodPost, s.URL()+"/v1/telemetry", "application/json", []byte(line)); r.Code != http.StatusAccepted {
			t.Fatalf("duplicate: %d %s", r.Code, r.Body)
		}
	}
	last := grow(4, vehicles[40:60])
	// The backfilled vehicle's history, from before both cutovers.
	f.post(t, slices.Repeat([]string{"gv-bf"}, 20), func(i int) time.Time { return backfilledFrom.Add(time.Duration(i) * 30 * time.Second) })
	time.Sleep(3 * time.Second)
	stopLoad()
	load.Wait()
	if t.Failed() {
		return
	}

	pools := shardPools(t, s)
	if len(pools) != 4 {
		t.Fatalf("%d shards after growing to 4", len(pools))
	}
	waitForRows(t, pools, len(f.ledger))
	smap := s.ShardMap()
	if len(smap.Versions) != 3 || !smap.Versions[1].From.Equal(first) || !smap.Versions[2].From.Equal(last) {
		t.Fatalf("shard map versions %+v, want cutovers %s and %s", smap.Versions, first, last)
	}
	mappings := growMappings(t, s, append(vehicles, "gv-bf"))
	checkPlacement(t, pools, smap, mappings, f.ledger, last)
	checkGrownAnswers(t, s, f.ledger, mappings)
}

// growMappings reads the vehicles' mapping intervals.
func growMappings(t *testing.T, s *devstack.Stack, vehicles []string) map[string]registry.Mapping {
	t.Helper()
	out := map[string]registry.Mapping{}
	for _, v := range vehicles {
		var m struct {
			Intervals []struct {
				MeterID string     `json:"meterId"`
				From    time.Time  `json:"from"`
				To      *time.Time `json:"to,omitempty"`
			} `json:"intervals"`
		}
		get(t, s, "/v1/analytics/mappings/"+v).json(t, &m)
		var rm registry.Mapping
		for _, iv := range m.Intervals {
			rm.Intervals = append(rm.Intervals, registry.Interval{MeterID: iv.MeterID, From: iv.From, To: iv.To})
		}
		out[v] = rm
	}
	return out
}

// checkPlacement checks that every accepted reading is stored once, on the shard the shard
// map names for its key at its time, that nothing else is stored, and that the readings
// after the last cutover spread over the shards.
func checkPlacement(t *testing.T, pools []*pgxpool.Pool, smap *placement.ShardMap, mappings map[string]registry.Mapping, ledger map[ledgerKey]ledgered, last time.Time) {
	t.Helper()
	stored := map[ledgerKey][]int{}
	after := make([]int, len(pools))
	for shard, p := range pools {
		for _, q := range []string{`SELECT meter_id, ts FROM meter_telemetry_history`, `SELECT vehicle_id, ts FROM vehicle_telemetry_history`} {
			rows, err := p.Query(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				var ts time.Time
				if err := rows.Scan(&id, &ts); err != nil {
					t.Fatal(err)
				}
				k := ledgerKey{id, ts.UnixMicro()}
				stored[k] = append(stored[k], shard)
				if !ts.Before(last) {
					after[shard]++
				}
			}
			rows.Close()
		}
	}
	for k, rec := range ledger {
		key := k.device
		if !rec.meter {
			m := mappings[k.device]
			key = registry.PlacementKey(&m, k.device, time.UnixMicro(k.micros))
		}
		want := smap.ShardOf(key, time.UnixMicro(k.micros))
		if got := stored[k]; len(got) != 1 || got[0] != want {
			t.Fatalf("%s at %s stored on shards %v, want once on shard %d", k.device, time.UnixMicro(k.micros).UTC(), got, want)
		}
	}
	if len(stored) != len(ledger) {
		t.Fatalf("%d readings stored, %d accepted", len(stored), len(ledger))
	}
	total := sum(after)
	for shard, c := range after {
		if share := float64(c) / float64(total); share < 0.5/4 || share > 1.5/4 {
			t.Fatalf("after the last cutover shard %d took %d of %d readings (%v)", shard, c, total, after)
		}
	}
	t.Logf("readings after the last cutover per shard: %v", after)
}

// checkGrownAnswers computes every vehicle's and meter's energy from the readings sent, hour
// by hour with the one AC-share rule, and compares the answers over a window holding them all.
func checkGrownAnswers(t *testing.T, s *devstack.Stack, ledger map[ledgerKey]ledgered, mappings map[string]registry.Mapping) {
	t.Helper()
	type mh struct {
		meter string
		hour  int64
	}
	ac := map[mh]int64{}
	dc := map[mh]map[string]int64{}
	var latest int64
	for k, rec := range ledger {
		latest = max(latest, k.micros)
		h := time.UnixMicro(k.micros).Truncate(time.Hour).Unix()
		if rec.meter {
			ac[mh{k.device, h}] += rec.mwh
			continue
		}
		m := mappings[k.device]
		meter, _ := m.MeterAt(time.UnixMicro(k.micros))
		key := mh{meter, h}
		if dc[key] == nil {
			dc[key] = map[string]int64{}
		}
		dc[key][k.device] += rec.mwh
	}
	vehicleAC, vehicleDC, meterAC, meterDC := map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	for key, a := range ac {
		meterAC[key.meter] += a
		var total int64
		for _, d := range dc[key] {
			total += d
		}
		if total == 0 {
			t.Fatalf("meter %s had AC without DC in an hour: the load always posts pairs", key.meter)
		}
		for v, d := range dc[key] {
			vehicleAC[v] += attribution.Share(a, d, total)
			vehicleDC[v] += d
			meterDC[key.meter] += d
		}
	}
	end := time.UnixMicro(latest).UTC().Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339)
	q := "?window=24h&end=" + end
	kwh := func(mwh int64) float64 { return float64(mwh) / 1e6 }
	for v, d := range vehicleDC {
		var got struct {
			Energy map[string]float64 `json:"energy"`
		}
		get(t, s, "/v1/analytics/performance/"+v+q).json(t, &got)
		if got.Energy["acConsumed"] != kwh(vehicleAC[v]) || got.Energy["dcDelivered"] != kwh(d) {
			t.Fatalf("vehicle %s: %v, want AC %v DC %v", v, got.Energy, kwh(vehicleAC[v]), kwh(d))
		}
	}
	for m, a := range meterAC {
		var got struct {
			Energy map[string]float64 `json:"energy"`
		}
		get(t, s, "/v1/analytics/meters/"+m+"/performance"+q).json(t, &got)
		if got.Energy["acConsumed"] != kwh(a) || got.Energy["dcDelivered"] != kwh(meterDC[m]) {
			t.Fatalf("meter %s: %v, want AC %v DC %v", m, got.Energy, kwh(a), kwh(meterDC[m]))
		}
	}
	for _, v := range []string{gvehicle(0), gvehicle(25), gvehicle(150), "gv-bf"} {
		var series struct {
			Points []struct{ AcConsumed, DcDelivered float64 } `json:"points"`
		}
		get(t, s, "/v1/analytics/vehicles/"+v+"/series"+q).json(t, &series)
		var a, d int64
		for _, p := range series.Points {
			a, d = a+int64(p.AcConsumed*1e6+0.5), d+int64(p.DcDelivered*1e6+0.5)
		}
		if a != vehicleAC[v] || d != vehicleDC[v] {
			t.Fatalf("series of %s: AC %d DC %d mWh, want %d %d", v, a, d, vehicleAC[v], vehicleDC[v])
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
		MissingShards []int `json:"missingShards"`
	}
	get(t, s, "/v1/analytics/alerts?threshold=100&window=24h&pageSize=1000&end="+end).json(t, &alerts)
	if len(alerts.MissingShards) != 0 || len(alerts.Sites) != len(meterAC) || len(alerts.Vehicles) != len(vehicleDC) {
		t.Fatalf("alerts list %d sites and %d vehicles (missing shards %v), want %d and %d", len(alerts.Sites), len(alerts.Vehicles), alerts.MissingShards, len(meterAC), len(vehicleDC))
	}
	for _, st := range alerts.Sites {
		if st.AcConsumed != kwh(meterAC[st.MeterID]) || st.DcDelivered != kwh(meterDC[st.MeterID]) {
			t.Fatalf("alert site %s: AC %v DC %v, want %v %v", st.MeterID, st.AcConsumed, st.DcDelivered, kwh(meterAC[st.MeterID]), kwh(meterDC[st.MeterID]))
		}
	}
	for _, v := range alerts.Vehicles {
		if v.AcConsumed != kwh(vehicleAC[v.VehicleID]) || v.DcDelivered != kwh(vehicleDC[v.VehicleID]) {
			t.Fatalf("alert vehicle %s: AC %v DC %v, want %v %v", v.VehicleID, v.AcConsumed, v.DcDelivered, kwh(vehicleAC[v.VehicleID]), kwh(vehicleDC[v.VehicleID]))
		}
	}
}

// devIn runs `fleetingest dev` on dataDir with args until it printed its tokens, and returns
// its URL, what it printed and what stops it.
func devIn(t *testing.T, dataDir string, args ...string) (url, printed string, stop func()) {
	t.Helper()
	out := newLineWriter("export FLEETINGEST_ADMIN_TOKEN=")
	cmd := exec.Command(command.Path(t), append([]string{"dev", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nats-port", "0", "--postgres-port", "0"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = sync.OnceFunc(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	t.Cleanup(stop)
	select {
	case <-out.seen:
	case <-time.After(2 * time.Minute):
		t.Fatalf("dev never got ready:\n%s", out)
	}
	m := regexp.MustCompile(`fleetingest dev ready: (http://\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no ready line:\n%s", out)
	}
	return m[1], out.String(), stop
}

// TestDevGrowsADataFolderAndKeepsIt starts dev on a new folder (2 shards), posts a
// vehicle's and its meter's readings, restarts it with --shards 3 (it grows before it
// reports ready and prints the cutover), then with no --shards (still 3, same answers), and
// refuses --shards 2.
func TestDevGrowsADataFolderAndKeepsIt(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev")
	shardLines := regexp.MustCompile(`(?m)^ {2}shard \d+: `)
	token := func(printed string) string {
		return regexp.MustCompile(`export FLEETINGEST_ADMIN_TOKEN=(\S+)`).FindStringSubmatch(printed)[1]
	}
	call := func(url, token, method, path, body string) response {
		t.Helper()
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		return doRequest(t, req)
	}

	url, printed, stop := devIn(t, dataDir)
	if n := len(shardLines.FindAllString(printed, -1)); n != 2 || strings.Contains(printed, "cutover:") {
		t.Fatalf("a new folder: %d shard lines\n%s", n, printed)
	}
	admin := token(printed)
	device := regexp.MustCompile(`export FLEETINGEST_DEVICE_TOKEN=(\S+)`).FindStringSubmatch(printed)[1]
	if r := call(url, admin, http.MethodPost, "/v1/analytics/mappings", `{"vehicleId":"dg-ev","meterId":"dg-m"}`); r.Code != http.StatusOK {
		t.Fatalf("mapping: %d %s", r.Code, r.Body)
	}
	at := time.Now().Add(time.Second).UTC().Truncate(time.Second)
	for i := range 5 {
		ts := at.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		for _, body := range []string{
			fmt.Sprintf(`{"meterId":"dg-m","kwhConsumedAc":0.5,"voltage":230,"timestamp":%q}`, ts),
			fmt.Sprintf(`{"vehicleId":"dg-ev","soc":50,"kwhDeliveredDc":0.4,"batteryTemp":25,"timestamp":%q}`, ts),
		} {
			if r := call(url, device, http.MethodPost, "/v1/telemetry", body); r.Code != http.StatusAccepted {
				t.Fatalf("reading: %d %s", r.Code, r.Body)
			}
		}
	}
	q := "/v1/analytics/performance/dg-ev?window=1h&end=" + at.Add(time.Minute).Format(time.RFC3339)
	answer := func(url, admin string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := call(url, admin, http.MethodGet, q, "")
			if r.Code == http.StatusOK && strings.Contains(string(r.Body), `"vehicleReadings":5`) {
				return string(r.Body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("answer: %d %s", r.Code, r.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	before := answer(url, admin)
	stop()

	url, printed, stop = devIn(t, dataDir, "--shards", "3")
	cutover := regexp.MustCompile(`(?m)^cutover: (\S+)$`).FindStringSubmatch(printed)
	if n := len(shardLines.FindAllString(printed, -1)); n != 3 || cutover == nil {
		t.Fatalf("grown to 3: %d shard lines, cutover %v\n%s", n, cutover, printed)
	}
	if c, err := time.Parse(time.RFC3339Nano, cutover[1]); err != nil || c.Before(time.Now()) {
		t.Fatalf("cutover %q, want a time ahead of the ready line: %v", cutover[1], err)
	}
	if got := answer(url, token(printed)); got != before {
		t.Fatalf("after growing: %s, before: %s", got, before)
	}
	stop()

	url, printed, stop = devIn(t, dataDir)
	if n := len(shardLines.FindAllString(printed, -1)); n != 3 || strings.Contains(printed, "cutover:") {
		t.Fatalf("restarted with no --shards: %d shard lines\n%s", n, printed)
	}
	if got := answer(url, token(printed)); got != before {
		t.Fatalf("after restarting: %s, before: %s", got, before)
	}
	stop()

	var out bytes.Buffer
	cmd := exec.Command(command.Path(t), "dev", "--data-dir", dataDir, "--shards", "2", "--http-addr", "127.0.0.1:0", "--nats-port", "0", "--postgres-port", "0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "holds 3 shards, not 2") {
		t.Fatalf("--shards 2 on a 3-shard folder: %v\n%s", err, out.String())
	}
}

func doRequest(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Code: res.StatusCode, Header: res.Header, Body: body}
}
