package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/mappingio"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/internal/devstack"
)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// writeMapping posts a mapping with optional from and to (zero: left out) and returns the
// response.
func writeMapping(t *testing.T, s *devstack.Stack, vehicle, meter string, from, to time.Time) response {
	t.Helper()
	body := map[string]string{"vehicleId": vehicle, "meterId": meter}
	if !from.IsZero() {
		body["from"] = rfc3339(from)
	}
	if !to.IsZero() {
		body["to"] = rfc3339(to)
	}
	return postJSON(t, s.URL()+"/v1/analytics/mappings", body)
}

func mustWriteMapping(t *testing.T, s *devstack.Stack, vehicle, meter string, from, to time.Time) {
	t.Helper()
	if r := writeMapping(t, s, vehicle, meter, from, to); r.Code != http.StatusOK {
		t.Fatalf("mapping %s to %s from %s to %s: %d %s", vehicle, meter, from, to, r.Code, r.Body)
	}
}

// exportedMappings lists every mapping of s from the in-memory copy, as an export holds them.
func exportedMappings(t *testing.T, s *devstack.Stack) []mappingio.Mapping {
	t.Helper()
	var list struct {
		Mappings []mappingio.Mapping `json:"mappings"`
	}
	get(t, s, "/v1/analytics/mappings?pageSize=1000").json(t, &list)
	for i := range list.Mappings {
		list.Mappings[i].UpdatedAt = nil
	}
	return list.Mappings
}

// waitForIntervals waits until the stack's in-memory mapping copy (which the gateway
// places readings by) holds n intervals in all.
func waitForIntervals(t *testing.T, s *devstack.Stack, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := 0
		for _, m := range exportedMappings(t, s) {
			got += len(m.Intervals)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mapping copy holds %d intervals after 10s, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postNDJSON posts readings as one NDJSON batch and fails unless every one is accepted.
func postNDJSON(t *testing.T, s *devstack.Stack, readings []reading) {
	t.Helper()
	var lines []string
	for _, r := range readings {
		line, err := json.Marshal(r.payload())
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(line))
	}
	checkBatch(t, do(t, http.MethodPost, s.URL()+"/v1/telemetry/batch", "application/x-ndjson", []byte(strings.Join(lines, "\n"))), len(readings))
}

// charge is n readings a minute apart from start: the meter's AC and the vehicle's DC.
func charge(vehicle, meter string, start time.Time, n int, ac, dc float64) []reading {
	var out []reading
	for i := range n {
		ts := start.Add(time.Duration(i) * time.Minute)
		if meter != "" {
			out = append(out, reading{meter: true, id: meter, ts: ts, a: ac, b: 230})
		}
		if vehicle != "" {
			out = append(out, reading{id: vehicle, ts: ts, a: 50, b: dc, c: 25})
		}
	}
	return out
}

// TestABackfilledMappingAttributesTheReadingsPostedAfterIt writes a mapping that started
// three hours ago, then posts 30 minutes of charging from two hours ago: the readings land on the
// meter's shard attributed to it, and every answer (per vehicle, per meter, alerts, series)
// gives the vehicle the meter's whole AC.
func TestABackfilledMappingAttributesTheReadingsPostedAfterIt(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	slots := placement.MustSlotMap(2)
	const vehicle = "bf-ev"
	meter := ""
	for i := 0; meter == ""; i++ {
		if id := fmt.Sprintf("bf-site-%d", i); slots.ShardOf(id) != slots.ShardOf(vehicle) {
			meter = id
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	r := writeMapping(t, s, vehicle, meter, now.Add(-3*time.Hour), time.Time{})
	var written analyticsv1.MappingResponse
	if r.Code != http.StatusOK {
		t.Fatalf("backfilled mapping: %d %s", r.Code, r.Body)
	}
	protoJSON(t, r, &written)
	if written.MeterId != meter || len(written.Intervals) != 1 || !written.Intervals[0].From.AsTime().Equal(now.Add(-3*time.Hour)) || written.Intervals[0].To != nil {
		t.Fatalf("backfilled mapping answered %s, want one open interval on %s from three hours ago", r.Body, meter)
	}
	waitForIntervals(t, s, 1)

	// 30 minutes of 0.6 kWh AC and 0.5 kWh DC, from two hours ago.
	postNDJSON(t, s, charge(vehicle, meter, now.Add(-2*time.Hour), 30, 0.6, 0.5))
	waitForRows(t, pools, 60)
	if n := count(t, pools[slots.ShardOf(meter)], `SELECT count(*) FROM vehicle_telemetry_history WHERE vehicle_id = $1 AND meter_id = $2`, vehicle, meter); n != 30 {
		t.Fatalf("%d of the vehicle's 30 readings are on the meter's shard attributed to it", n)
	}

	end := now.Add(time.Minute)
	q := "?window=24h&end=" + rfc3339(end)
	for round := range 4 { // answered from Postgres first, then from memory
		checkBackfilledAnswers(t, s, vehicle, meter, q, rfc3339(end.Truncate(time.Hour).Add(time.Hour)))
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func checkBackfilledAnswers(t *testing.T, s *devstack.Stack, vehicle, meter, q, alertEnd string) {
	t.Helper()
	const ac, dc = 18.0, 15.0
	var perf analyticsv1.GetVehiclePerformanceResponse
	protoJSON(t, get(t, s, "/v1/analytics/performance/"+vehicle+q), &perf)
	if e := perf.Energy; e.GetAcConsumed() != ac || e.GetDcDelivered() != dc || e.GetEfficiencyRatio() != dc/ac || perf.SharedMeter ||
		len(perf.Meters) != 1 || perf.Meters[0].MeterId != meter || perf.Meters[0].AcConsumed != ac {
		t.Errorf("vehicle: %v, want AC %v and DC %v all from %s", &perf, ac, dc, meter)
	}
	var site analyticsv1.GetMeterPerformanceResponse
	protoJSON(t, get(t, s, "/v1/analytics/meters/"+meter+"/performance"+q), &site)
	if e := site.Energy; e.GetAcConsumed() != ac || e.GetDcDelivered() != dc || site.UnattributedAc != 0 ||
		len(site.Vehicles) != 1 || site.Vehicles[0].VehicleId != vehicle || site.Vehicles[0].AcConsumed != ac || site.Vehicles[0].DcDelivered != dc {
		t.Errorf("meter: %v, want AC %v and DC %v, all of it the vehicle's", &site, ac, dc)
	}
	var alerts analyticsv1.ListAlertsResponse
	protoJSON(t, get(t, s, "/v1/analytics/alerts?threshold=0.9&window=24h&end="+alertEnd), &alerts)
	if len(alerts.Sites) != 1 || alerts.Sites[0].MeterId != meter || alerts.Sites[0].AcConsumed != ac || alerts.Sites[0].DcDelivered != dc ||
		!reflect.DeepEqual(alerts.Sites[0].VehicleIds, []string{vehicle}) {
		t.Errorf("site alerts: %v, want %s with AC %v, DC %v and its vehicle", alerts.Sites, meter, ac, dc)
	}
	if len(alerts.Vehicles) != 1 || alerts.Vehicles[0].VehicleId != vehicle || alerts.Vehicles[0].AcConsumed != ac || alerts.Vehicles[0].DcDelivered != dc ||
		!reflect.DeepEqual(alerts.Vehicles[0].MeterIds, []string{meter}) {
		t.Errorf("vehicle alerts: %v, want %s with AC %v, DC %v from %s", alerts.Vehicles, vehicle, ac, dc, meter)
	}
	for _, path := range []string{"/v1/analytics/vehicles/" + vehicle + "/series", "/v1/analytics/meters/" + meter + "/series"} {
		var series analyticsv1.GetSeriesResponse
		protoJSON(t, get(t, s, path+q), &series)
		var sumAC, sumDC int64
		for _, p := range series.Points {
			sumAC, sumDC = sumAC+int64(p.AcConsumed*1e6+0.5), sumDC+int64(p.DcDelivered*1e6+0.5)
			if (p.AcConsumed == 0) != (p.DcDelivered == 0) {
				t.Errorf("%s: point %v has AC without DC or DC without AC", path, p)
			}
		}
		if sumAC != int64(ac*1e6) || sumDC != int64(dc*1e6) {
			t.Errorf("%s: AC %d mWh, DC %d mWh, want %v and %v kWh", path, sumAC, sumDC, ac, dc)
		}
	}
}

// protoJSON decodes an answer into its message.
func protoJSON(t *testing.T, r response, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(r.Body, m); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

// TestBackfillRefusalsSayWhyAndChangeNothing writes each kind of refused interval, over REST
// and Connect: the answer is 400 or 409 with its reason, and the vehicle's mapping is as it
// was.
func TestBackfillRefusalsSayWhyAndChangeNothing(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const vehicle, hidden = "bf-ref", "bf-hidden"
	mustWriteMapping(t, s, vehicle, "bf-m-a", ago(6*time.Hour), ago(5*time.Hour))
	mustWriteMapping(t, s, vehicle, "bf-m-b", ago(time.Hour), time.Time{})
	waitForIntervals(t, s, 2)
	// Readings stored without a mapping: one of bf-ref between its intervals, three of
	// bf-hidden, which has none.
	postNDJSON(t, s, append(charge(vehicle, "", ago(3*time.Hour), 1, 0, 0.5), charge(hidden, "", ago(2*time.Hour), 3, 0, 0.5)...))
	waitForRows(t, pools, 4)

	tests := []struct {
		name          string
		method, path  string
		body          map[string]string
		code          int
		says          string
		vehicleOfCase string
	}{
		{"from in the future", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(now.Add(time.Hour))},
			400, "is in the future", vehicle},
		{"from older than the acceptance window", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(8 * 24 * time.Hour))},
			400, "older than the readings' acceptance window of 168h0m0s", vehicle},
		{"to before from", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(4 * time.Hour)), "to": rfc3339(ago(4*time.Hour + 30*time.Minute))},
			400, "is not after from", vehicle},
		{"to in the future", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(30 * time.Minute)), "to": rfc3339(now.Add(time.Hour))},
			400, "is in the future", vehicle},
		{"to without from", "POST", "/v1/analytics/mappings", map[string]string{"to": rfc3339(ago(4 * time.Hour))},
			400, "to needs from", vehicle},
		{"an overlap with an existing interval", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(5*time.Hour + 30*time.Minute)), "to": rfc3339(ago(4 * time.Hour))},
			409, "overlaps the vehicle's interval [" + rfc3339(ago(6*time.Hour)) + ", " + rfc3339(ago(5*time.Hour)) + ") on bf-m-a", vehicle},
		{"an overlap through PUT", "PUT", "/v1/analytics/mappings/" + vehicle, map[string]string{"from": rfc3339(ago(90 * time.Minute)), "to": rfc3339(ago(30 * time.Minute))},
			409, "overlaps the vehicle's interval [" + rfc3339(ago(time.Hour)) + ", open) on bf-m-b", vehicle},
		{"an open interval before a later one", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(4 * time.Hour))},
			409, "would run into the vehicle's later interval [" + rfc3339(ago(time.Hour)) + ", open) on bf-m-b", vehicle},
		{"a reading stored without a mapping hidden", "POST", "/v1/analytics/mappings", map[string]string{"from": rfc3339(ago(4 * time.Hour)), "to": rfc3339(ago(2 * time.Hour))},
			409, "has 1 reading from " + rfc3339(ago(3*time.Hour)) + " on", vehicle},
		{"readings of an unmapped vehicle hidden", "POST", "/v1/analytics/mappings", map[string]string{"vehicleId": hidden, "from": rfc3339(ago(3 * time.Hour))},
			409, "has 3 readings from " + rfc3339(ago(2*time.Hour)) + " on", hidden},
		{"PUT with from for a vehicle never mapped", "PUT", "/v1/analytics/mappings/" + hidden, map[string]string{"from": rfc3339(ago(30 * time.Minute))},
			404, "no meter mapping", hidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := do(t, http.MethodGet, s.URL()+"/v1/analytics/mappings/"+tc.vehicleOfCase, "", nil)
			body := map[string]string{"vehicleId": vehicle, "meterId": "bf-m-c"}
			for k, v := range tc.body {
				body[k] = v
			}
			data, _ := json.Marshal(body)
			r := do(t, tc.method, s.URL()+tc.path, "application/json", data)
			var e struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(r.Body, &e); err != nil || r.Code != tc.code || !strings.Contains(e.Message, tc.says) {
				t.Fatalf("%d %s, want %d saying %q", r.Code, r.Body, tc.code, tc.says)
			}
			if after := do(t, http.MethodGet, s.URL()+"/v1/analytics/mappings/"+tc.vehicleOfCase, "", nil); after.Code != before.Code || !bytes.Equal(after.Body, before.Body) {
				t.Fatalf("the mapping changed: %d %s, was %d %s", after.Code, after.Body, before.Code, before.Body)
			}
		})
	}

	t.Run("over Connect the code is AlreadyExists", func(t *testing.T) {
		c := analyticsv1connect.NewAnalyticsServiceClient(client, s.URL())
		_, err := c.CreateMapping(t.Context(), connect.NewRequest(&analyticsv1.CreateMappingRequest{
			VehicleId: vehicle, MeterId: "bf-m-c", From: timestamppb.New(ago(5*time.Hour + 30*time.Minute)), To: timestamppb.New(ago(4 * time.Hour)),
		}))
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeAlreadyExists || !strings.Contains(ce.Message(), "on bf-m-a") {
			t.Fatalf("overlap over Connect: %v, want AlreadyExists naming bf-m-a's interval", err)
		}
	})

	t.Run("an interval that fits is written in its place, once", func(t *testing.T) {
		var first, again analyticsv1.MappingResponse
		for _, m := range []*analyticsv1.MappingResponse{&first, &again} {
			r := writeMapping(t, s, vehicle, "bf-m-c", ago(5*time.Hour), ago(4*time.Hour))
			if r.Code != http.StatusOK {
				t.Fatalf("%d %s", r.Code, r.Body)
			}
			protoJSON(t, r, m)
		}
		var meters []string
		for i, iv := range again.Intervals {
			meters = append(meters, iv.MeterId)
			if i > 0 && iv.From.AsTime().Before(again.Intervals[i-1].To.AsTime()) {
				t.Fatalf("intervals not sorted and disjoint: %v", again.Intervals)
			}
		}
		if !reflect.DeepEqual(meters, []string{"bf-m-a", "bf-m-c", "bf-m-b"}) || again.MeterId != "bf-m-b" || !again.UpdatedAt.AsTime().Equal(first.UpdatedAt.AsTime()) {
			t.Fatalf("after writing the gap twice: %v (first %v)", &again, &first)
		}
	})
}

// TestMappingsMoveBetweenFleetsWithTheirHistory exports the mappings of one dev fleet with
// `fleetingest mappings export`, imports them into a fresh one with `fleetingest mappings
// import`, and posts the same readings to both: the intervals are identical and so is every
// answer.
func TestMappingsMoveBetweenFleetsWithTheirHistory(t *testing.T) {
	src, dst := startStack(t, nil), startStack(t, nil)
	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }

	// ev-1 moved from m-1 to m-2 three hours ago; ev-2 shared m-1 with it for an hour; ev-3 is
	// mapped from now on, after readings that have no mapping.
	mustWriteMapping(t, src, "mv-ev-1", "mv-m-1", ago(5*time.Hour), ago(3*time.Hour))
	mustWriteMapping(t, src, "mv-ev-1", "mv-m-2", ago(3*time.Hour), time.Time{})
	mustWriteMapping(t, src, "mv-ev-2", "mv-m-1", ago(4*time.Hour), ago(2*time.Hour))
	mustWriteMapping(t, src, "mv-ev-3", "mv-m-3", time.Time{}, time.Time{})
	waitForIntervals(t, src, 4)

	var readings []reading
	start := ago(5 * time.Hour)
	readings = append(readings, charge("mv-ev-1", "mv-m-1", start, 120, 0.7, 0.6)...)
	readings = append(readings, charge("mv-ev-1", "mv-m-2", start.Add(2*time.Hour+30*time.Second), 90, 0.5, 0.45)...)
	readings = append(readings, charge("mv-ev-2", "", start.Add(time.Hour+10*time.Second), 120, 0, 0.3)...)
	readings = append(readings, charge("mv-ev-3", "mv-m-3", start.Add(20*time.Second), 60, 0.2, 0.2)...)
	postNDJSON(t, src, readings)

	dir := t.TempDir()
	exported, imported := filepath.Join(dir, "src.json"), filepath.Join(dir, "dst.json")
	fleetingest(t, "mappings", "export", "--server", src.URL(), "--token", src.AdminToken(), "--file", exported)
	fleetingest(t, "mappings", "import", "--server", dst.URL(), "--token", dst.AdminToken(), "--file", exported)
	waitForIntervals(t, dst, 4)
	fleetingest(t, "mappings", "export", "--server", dst.URL(), "--token", dst.AdminToken(), "--file", imported)
	if a, b := readExport(t, exported), readExport(t, imported); !reflect.DeepEqual(a, b) || len(a) != 3 {
		t.Fatalf("imported mappings differ from the exported ones:\n%v\nwant\n%v", b, a)
	}

	// The same readings, after the mappings, as backfill is done.
	postNDJSON(t, dst, readings)
	waitForRows(t, shardPools(t, src), len(readings))
	waitForRows(t, shardPools(t, dst), len(readings))
	q := "?window=24h&end=" + rfc3339(now.Add(time.Minute))
	paths := []string{"/v1/analytics/alerts?threshold=10&window=24h&end=" + rfc3339(now.Truncate(time.Hour).Add(time.Hour))}
	for _, v := range []string{"mv-ev-1", "mv-ev-2", "mv-ev-3"} {
		paths = append(paths, "/v1/analytics/performance/"+v+q, "/v1/analytics/vehicles/"+v+"/series"+q)
	}
	for _, m := range []string{"mv-m-1", "mv-m-2", "mv-m-3"} {
		paths = append(paths, "/v1/analytics/meters/"+m+"/performance"+q, "/v1/analytics/meters/"+m+"/series"+q)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, path := range paths {
		for {
			a, b := get(t, src, path), get(t, dst, path)
			if bytes.Equal(a.Body, b.Body) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s differs:\n%s\nin the fleet imported into, in the one exported from:\n%s", path, b.Body, a.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var perf analyticsv1.GetVehiclePerformanceResponse
	protoJSON(t, get(t, dst, "/v1/analytics/performance/mv-ev-1"+q), &perf)
	if len(perf.Meters) != 2 || !perf.SharedMeter || perf.Energy.GetAcConsumed() == 0 {
		t.Fatalf("mv-ev-1 in the fleet imported into: %v, want AC from two meters, one shared", &perf)
	}
}

// readExport reads an export file as the intervals of each vehicle.
func readExport(t *testing.T, path string) []mappingio.Mapping {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ms []mappingio.Mapping
	if err := json.Unmarshal(data, &ms); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	for i := range ms {
		ms[i].UpdatedAt = nil
	}
	return ms
}
