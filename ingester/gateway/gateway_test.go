package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester/gateway"
)

func TestGatewayRefusesBadInputWithItsCodeAndPublishesNothing(t *testing.T) {
	e := newEnv(t, envOptions{gateway: func(c *gateway.Config) {
		c.MaxBodyBytes = 512
		c.MaxBatchBodyBytes = 4096
		c.MaxBatchReadings = 3
		c.QueueSize = 100
	}})
	now := time.Now()
	good := meterJSON("meter-1", now)
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		httpCode    int
		rpcCode     int
		field       string // the first field violation, "-" for no details
	}{
		{"not JSON", gateway.PathTelemetry, "application/json", `hello`, 400, 3, "-"},
		{"trailing data", gateway.PathTelemetry, "application/json", good + `{}`, 400, 3, "-"},
		{"a wrong type", gateway.PathTelemetry, "application/json", `{"meterId":"m","kwhConsumedAc":"1","voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, 400, 3, "kwhConsumedAc"},
		{"an unknown field", gateway.PathTelemetry, "application/json", strings.TrimSuffix(good, "}") + `,"x":1}`, 400, 3, "x"},
		{"a duplicate field", gateway.PathTelemetry, "application/json", strings.TrimSuffix(good, "}") + `,"voltage":1}`, 400, 3, "voltage"},
		{"a missing field", gateway.PathTelemetry, "application/json", `{"vehicleId":"v","soc":1}`, 400, 3, "kwhDeliveredDc"},
		{"both ids", gateway.PathTelemetry, "application/json", strings.TrimSuffix(good, "}") + `,"vehicleId":"v"}`, 400, 3, "meterId"},
		{"neither id", gateway.PathTelemetry, "application/json", `{"kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, 400, 3, "meterId"},
		{"a bad id", gateway.PathTelemetry, "application/json", meterJSON("meter/1", now), 400, 3, "meterId"},
		{"a timestamp that is not RFC 3339", gateway.PathTelemetry, "", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"yesterday"}`, 400, 3, "timestamp"},
		{"soc out of range", gateway.PathTelemetry, "application/json", strings.Replace(vehicleJSON("ev-1", now), `"soc":50`, `"soc":101`, 1), 422, 3, "soc"},
		{"a negative energy", gateway.PathTelemetry, "application/json; charset=utf-8", strings.Replace(meterJSON("m-1", now), `"kwhConsumedAc":1.25`, `"kwhConsumedAc":-1`, 1), 422, 3, "kwhConsumedAc"},
		{"a timestamp past the lateness", gateway.PathTelemetry, "application/json", meterJSON("m-1", now.Add(-8*24*time.Hour)), 422, 3, "timestamp"},
		{"a timestamp in the future", gateway.PathTelemetry, "application/json", meterJSON("m-1", now.Add(10*time.Minute)), 422, 3, "timestamp"},
		{"an oversized body", gateway.PathTelemetry, "application/json", good + strings.Repeat(" ", 600), 413, 8, "-"},
		{"a form content type", gateway.PathTelemetry, "application/x-www-form-urlencoded", good, 415, 3, "-"},
		{"NDJSON for one reading", gateway.PathTelemetry, "application/x-ndjson", good, 415, 3, "-"},
		{"a batch that is not an array", gateway.PathTelemetryBatch, "application/json", good, 400, 3, "-"},
		{"a batch with a broken envelope", gateway.PathTelemetryBatch, "application/json", "[" + good + ",{", 400, 3, "-"},
		{"a batch with too many readings", gateway.PathTelemetryBatch, "application/json", "[" + strings.Repeat(good+",", 3) + good + "]", 413, 8, "-"},
		{"an oversized batch body", gateway.PathTelemetryBatch, "application/x-ndjson", strings.Repeat(good+"\n", 100), 413, 8, "-"},
		{"a batch of text", gateway.PathTelemetryBatch, "text/plain", good, 415, 3, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.post(tt.path, tt.contentType, tt.body)
			if a.code != tt.httpCode {
				t.Fatalf("HTTP %d, want %d: %s", a.code, tt.httpCode, a.body)
			}
			s := parseStatus(t, a.body)
			if s.Code != tt.rpcCode {
				t.Fatalf("code %d, want %d: %s", s.Code, tt.rpcCode, a.body)
			}
			if tt.field == "-" {
				if len(s.Details) != 0 {
					t.Fatalf("unexpected details: %s", a.body)
				}
				return
			}
			if len(s.Details) != 1 || s.Details[0].Type != "type.googleapis.com/google.rpc.BadRequest" || len(s.Details[0].FieldViolations) == 0 {
				t.Fatalf("no BadRequest details: %s", a.body)
			}
			if fv := s.Details[0].FieldViolations[0]; fv.Field != tt.field || fv.Description == "" {
				t.Fatalf("first violation %+v, want field %q", fv, tt.field)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+gateway.PathTelemetry, http.NoBody)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" || parseStatus(t, body).Code != 12 {
		t.Fatalf("GET: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if msgs, readings := e.published(); msgs != 0 || readings != 0 {
		t.Fatalf("refused requests published %d messages with %d readings", msgs, readings)
	}
	if got := e.post(gateway.PathTelemetry, "application/json", good); got.code != http.StatusAccepted {
		t.Fatalf("a good reading after the bad ones: %d %s", got.code, got.body)
	}
}

func TestGatewayAcceptsAndRoutesReadings(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now().Add(-time.Minute)
	meter := idOnShard(t, e.slots, "meter", 1)
	vehicle := idOnShard(t, e.slots, "ev", 2)

	a := e.post(gateway.PathTelemetry, "application/json", meterJSON(meter, now))
	if a.code != http.StatusAccepted || string(a.body) != `{"status":"meter telemetry ingested"}` {
		t.Fatalf("meter: %d %s", a.code, a.body)
	}
	a = e.post(gateway.PathTelemetry, "", vehicleJSON(vehicle, now))
	if a.code != http.StatusAccepted || string(a.body) != `{"status":"vehicle telemetry ingested"}` {
		t.Fatalf("vehicle: %d %s", a.code, a.body)
	}

	shard, meters, _ := e.find(meter)
	if shard != 1 || len(meters) != 1 {
		t.Fatalf("meter on shard %d (%d readings), want shard 1", shard, len(meters))
	}
	if m := meters[0]; m.GetMwhConsumedAc() != 1_250_000 || m.GetVoltage() != 230 || m.GetTimestampMicros() != now.UnixMicro() {
		t.Fatalf("meter stored as %+v", m)
	}
	shard, _, vehicles := e.find(vehicle)
	if shard != 2 || len(vehicles) != 1 {
		t.Fatalf("unmapped vehicle on shard %d (%d readings), want its own shard 2", shard, len(vehicles))
	}
	if v := vehicles[0]; v.GetMeterId() != "" || v.GetSoc() != 50 || v.GetTimestampMicros() != now.UnixMicro() {
		t.Fatalf("vehicle stored as %+v", v)
	}
	// What the ingester's durable consumer sees is the same.
	if got := e.consume(1); len(got) != 1 || got[0].GetMeters()[0].GetMeterId() != meter {
		t.Fatalf("shard 1 consumer saw %v", got)
	}
}

func TestGatewayRoutesVehiclesByTheMappingAtTheirTimestamp(t *testing.T) {
	var clockMu sync.Mutex
	clock := time.Now().Add(-3 * time.Hour)
	writerNow := func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return clock
	}
	setClock := func(t time.Time) {
		clockMu.Lock()
		clock = t
		clockMu.Unlock()
	}
	e := newEnv(t, envOptions{})
	writer, err := openWriter(e, writerNow)
	if err != nil {
		t.Fatal(err)
	}
	vehicle := idOnShard(t, e.slots, "ev", 0)
	meterA := idOnShard(t, e.slots, "site-a", 1)
	meterB := idOnShard(t, e.slots, "site-b", 3)
	ctx := context.Background()

	// Whole seconds: readings carry microseconds, and the interval bounds must be exact.
	start := time.Now().Truncate(time.Second)
	tA := start.Add(-2 * time.Hour)
	setClock(tA)
	if _, err := writer.Set(ctx, vehicle, meterA); err != nil {
		t.Fatal(err)
	}
	// The next reading is routed to meter A's shard within a second.
	deadline := time.Now().Add(time.Second)
	for i := 0; ; i++ {
		ts := time.Now().Add(-time.Duration(i+1) * time.Millisecond)
		if a := e.post(gateway.PathTelemetry, "application/json", vehicleJSON(vehicle, ts)); a.code != http.StatusAccepted {
			t.Fatalf("%d %s", a.code, a.body)
		}
		if shard, _, vs := e.find(vehicle); shard == 1 && vs[len(vs)-1].GetMeterId() == meterA {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mapping to meter A not used within 1s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	routedAfterA := len(e.consume(0)) // readings routed before the copy saw the change
	_ = e.consume(1)

	tB := start.Add(-time.Hour)
	setClock(tB)
	if _, err := writer.Set(ctx, vehicle, meterB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, func() bool {
		return e.reg.PlacementKey(vehicle, start) == meterB
	})

	cases := []struct {
		name  string
		ts    time.Time
		shard int
		meter string
	}{
		{"a reading from before any mapping stays on the vehicle's shard", tA.Add(-time.Minute), 0, ""},
		{"a late reading from meter A's interval goes to meter A", tA.Add(30 * time.Minute), 1, meterA},
		{"a reading at the change goes to meter B", tB, 3, meterB},
		{"a current reading goes to meter B", start, 3, meterB},
	}
	for _, c := range cases {
		if a := e.post(gateway.PathTelemetry, "application/json", vehicleJSON(vehicle, c.ts)); a.code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", c.name, a.code, a.body)
		}
		got := e.consume(c.shard)
		if len(got) != 1 || len(got[0].GetVehicles()) != 1 {
			t.Fatalf("%s: shard %d holds %v", c.name, c.shard, got)
		}
		v := got[0].GetVehicles()[0]
		if v.GetVehicleId() != vehicle || v.GetMeterId() != c.meter || v.GetTimestampMicros() != c.ts.UnixMicro() {
			t.Fatalf("%s: got %+v, want meter %q", c.name, v, c.meter)
		}
	}
	t.Logf("%d readings were routed to the vehicle's own shard before the copy saw meter A", routedAfterA)
}

func TestGatewayCoalescesConcurrentReadingsAndAnswersAfterThePubAck(t *testing.T) {
	e := newEnv(t, envOptions{shards: 2, gateway: func(c *gateway.Config) {
		c.Linger = 2 * time.Millisecond
		c.Publishers = 2
	}})
	const n = 200
	now := time.Now().Add(-time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("meter-%d", i)
			a := e.post(gateway.PathTelemetry, "application/json", meterJSON(id, now))
			if a.code != http.StatusAccepted {
				errs <- fmt.Errorf("%s: %d %s", id, a.code, a.body)
				return
			}
			// Answered only after the PubAck: the reading is already stored in its stream.
			if shard, ms, _ := e.find(id); len(ms) != 1 || shard != e.slots.ShardOf(id) {
				errs <- fmt.Errorf("%s answered 202 but found %d times (shard %d)", id, len(ms), shard)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	msgs, readings := e.published()
	if readings != n {
		t.Fatalf("%d readings published, want %d", readings, n)
	}
	if msgs >= n/2 {
		t.Fatalf("%d readings took %d messages: not coalesced", n, msgs)
	}
	t.Logf("%d concurrent readings in %d messages", n, msgs)
	if !strings.Contains(metricsText(t, e), "fleetingest_gateway_readings_per_message_count") {
		t.Fatal("readings-per-message histogram missing")
	}
}

func TestGatewayBatchAcceptsValidItemsAndListsTheRest(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now().Add(-time.Minute)
	bad := strings.Replace(vehicleJSON("ev-9", now), `"soc":50`, `"soc":-1`, 1)
	items := []string{meterJSON("meter-1", now), bad, `{"meterId":"m","oops":1}`, vehicleJSON("ev-1", now), meterJSON("meter-2", now)}
	for _, f := range []struct{ contentType, body string }{
		{"application/json", "[" + strings.Join(items, ",\n") + "]"},
		{"application/x-ndjson", strings.Join(items, "\n") + "\n"},
	} {
		t.Run(f.contentType, func(t *testing.T) {
			a := e.post(gateway.PathTelemetryBatch, f.contentType, f.body)
			if a.code != http.StatusAccepted {
				t.Fatalf("%d %s", a.code, a.body)
			}
			var resp struct {
				Accepted int `json:"accepted"`
				Rejected []struct {
					Index int             `json:"index"`
					Error json.RawMessage `json:"error"`
				} `json:"rejected"`
			}
			if err := json.Unmarshal(a.body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Accepted != 3 || len(resp.Rejected) != 2 || resp.Rejected[0].Index != 1 || resp.Rejected[1].Index != 2 {
				t.Fatalf("answer %s", a.body)
			}
			if s := parseStatus(t, resp.Rejected[0].Error); s.Code != 3 || s.Details[0].FieldViolations[0].Field != "soc" {
				t.Fatalf("item 1 error %s", resp.Rejected[0].Error)
			}
			if s := parseStatus(t, resp.Rejected[1].Error); s.Code != 3 || s.Details[0].FieldViolations[0].Field != "oops" {
				t.Fatalf("item 2 error %s", resp.Rejected[1].Error)
			}
			total := 0
			for shard := 0; shard < e.topo.Shards; shard++ {
				for _, b := range e.consume(shard) {
					for _, m := range b.GetMeters() {
						if e.slots.ShardOf(m.GetMeterId()) != shard {
							t.Fatalf("%s on shard %d", m.GetMeterId(), shard)
						}
					}
					for _, v := range b.GetVehicles() {
						if v.GetVehicleId() != "ev-1" || e.slots.ShardOf("ev-1") != shard {
							t.Fatalf("vehicle %s on shard %d", v.GetVehicleId(), shard)
						}
					}
					total += len(b.GetMeters()) + len(b.GetVehicles())
				}
			}
			if total != 3 {
				t.Fatalf("%d readings published, want 3", total)
			}
		})
	}
}

func TestGatewayBatchOfManyReadingsSplitsIntoBoundedMessages(t *testing.T) {
	e := newEnv(t, envOptions{shards: 2, gateway: func(c *gateway.Config) { c.MaxReadingsPerMessage = 64 }})
	now := time.Now().Add(-time.Minute)
	var sb strings.Builder
	const n = 5000
	for i := range n {
		sb.WriteString(meterJSON(fmt.Sprintf("meter-%d", i%300), now.Add(-time.Duration(i)*time.Second)))
		sb.WriteByte('\n')
	}
	a := e.post(gateway.PathTelemetryBatch, "application/x-ndjson", sb.String())
	if a.code != http.StatusAccepted || string(a.body) != fmt.Sprintf(`{"accepted":%d,"rejected":[]}`, n) {
		t.Fatalf("%d %s", a.code, a.body)
	}
	msgs, readings := e.published()
	if readings != n {
		t.Fatalf("%d readings published, want %d", readings, n)
	}
	for shard := 0; shard < 2; shard++ {
		for _, b := range e.messages(shard) {
			if len(b.GetMeters()) > 64 {
				t.Fatalf("a message of %d readings exceeds the bound of 64", len(b.GetMeters()))
			}
		}
	}
	if msgs > n/64+4 {
		t.Fatalf("%d messages for %d readings at 64 a message", msgs, n)
	}
}

func TestGatewayClientGoneBeforeQueueingPublishesNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, path := range []string{gateway.PathTelemetry, gateway.PathTelemetryBatch} {
		body := meterJSON("meter-1", time.Now())
		if path == gateway.PathTelemetryBatch {
			body = "[" + body + "]"
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.gw.Handler().ServeHTTP(rec, req)
		if rec.Code == http.StatusAccepted {
			t.Fatalf("%s: a cancelled request was answered 202", path)
		}
	}
	if msgs, _ := e.published(); msgs != 0 {
		t.Fatalf("%d messages published for cancelled requests", msgs)
	}
	if !strings.Contains(metricsText(t, e), `code="499"`) {
		t.Fatal("cancelled requests not counted as 499")
	}
}

func TestGatewayDrainsQueuedReadingsOnShutdown(t *testing.T) {
	e := newEnv(t, envOptions{shards: 1, gateway: func(c *gateway.Config) { c.Publishers = 1 }})
	now := time.Now().Add(-time.Minute)
	const n = 50
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			codes <- e.post(gateway.PathTelemetry, "application/json", meterJSON(fmt.Sprintf("m-%d", i), now)).code
		})
	}
	time.Sleep(2 * time.Millisecond)
	e.stopGateway()
	if err := <-e.gatewayDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.gatewayDone <- nil // for the cleanup
	wg.Wait()
	close(codes)
	accepted := 0
	for c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("answer %d during shutdown", c)
		}
	}
	if _, readings := e.published(); readings != accepted {
		t.Fatalf("%d answered 202 but %d published", accepted, readings)
	}
	a := e.post(gateway.PathTelemetry, "application/json", meterJSON("late", now))
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
		t.Fatalf("after shutdown: %d %q %s", a.code, a.retryAfter, a.body)
	}
	if err := e.gw.Ready(context.Background()); err == nil {
		t.Fatal("ready after shutdown")
	}
}

func metricsText(t testing.TB, e *env) string {
	t.Helper()
	mfs, err := e.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sb.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&sb, " %s=%q", l.GetName(), l.GetValue())
			}
			sb.WriteByte('\n')
		}
		if mf.GetType().String() == "HISTOGRAM" {
			sb.WriteString(mf.GetName() + "_count\n")
		}
	}
	return sb.String()
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
