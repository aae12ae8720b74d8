package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/internal/localpg"
)

func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339)
	vehicle := func(fields string) string {
		return `{"vehicleId":"EV-1","soc":50,"kwhDeliveredDc":1,"batteryTemp":25,"timestamp":"` + ts + `"` + fields + `}`
	}
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		wantCode    int
		wantGRPC    int
	}{
		{"malformed JSON", "/v1/telemetry", "application/json", `{"vehicleId":`, 400, 3},
		{"trailing garbage", "/v1/telemetry", "application/json", vehicle("") + "x", 400, 3},
		{"unknown field", "/v1/telemetry", "application/json", vehicle(`,"speed":3`), 400, 3},
		{"both ids", "/v1/telemetry", "application/json", vehicle(`,"meterId":"m-1"`), 400, 3},
		{"neither id", "/v1/telemetry", "application/json", `{"soc":50,"kwhDeliveredDc":1,"batteryTemp":25,"timestamp":"` + ts + `"}`, 400, 3},
		{"id with a space", "/v1/telemetry", "application/json", `{"meterId":"m 1","kwhConsumedAc":1,"voltage":230,"timestamp":"` + ts + `"}`, 400, 3},
		{"id with SQL in it", "/v1/telemetry", "application/json", `{"meterId":"m';DROP TABLE x;--","kwhConsumedAc":1,"voltage":230,"timestamp":"` + ts + `"}`, 400, 3},
		{"number as a string", "/v1/telemetry", "application/json", `{"meterId":"m-1","kwhConsumedAc":"1","voltage":230,"timestamp":"` + ts + `"}`, 400, 3},
		{"timestamp not RFC 3339", "/v1/telemetry", "application/json", `{"meterId":"m-1","kwhConsumedAc":1,"voltage":230,"timestamp":"yesterday"}`, 400, 3},
		{"soc above 100", "/v1/telemetry", "application/json", `{"vehicleId":"EV-1","soc":140,"kwhDeliveredDc":1,"batteryTemp":25,"timestamp":"` + ts + `"}`, 422, 3},
		{"negative energy", "/v1/telemetry", "application/json", `{"meterId":"m-1","kwhConsumedAc":-1,"voltage":230,"timestamp":"` + ts + `"}`, 422, 3},
		{"timestamp older than the lateness", "/v1/telemetry", "application/json", `{"meterId":"m-1","kwhConsumedAc":1,"voltage":230,"timestamp":"` + now.Add(-8*24*time.Hour).Format(time.RFC3339) + `"}`, 422, 3},
		{"timestamp in the future", "/v1/telemetry", "application/json", `{"meterId":"m-1","kwhConsumedAc":1,"voltage":230,"timestamp":"` + now.Add(10*time.Minute).Format(time.RFC3339) + `"}`, 422, 3},
		{"body over 1 MiB", "/v1/telemetry", "application/json", `{"meterId":"` + strings.Repeat("a", 1<<20) + `"}`, 413, 8},
		{"wrong content type", "/v1/telemetry", "text/plain", vehicle(""), 415, 3},
		{"batch that is not an array", "/v1/telemetry/batch", "application/json", `{"readings":[]}`, 400, 3},
		{"batch over 10,000 readings", "/v1/telemetry/batch", "application/x-ndjson", strings.Repeat(vehicle("")+"\n", 10_001), 413, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, http.MethodPost, s.URL()+tt.path, tt.contentType, []byte(tt.body))
			if resp.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d: %s", resp.Code, tt.wantCode, resp.Body)
			}
			var st struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Details []any  `json:"details"`
			}
			resp.json(t, &st)
			if st.Code != tt.wantGRPC || st.Message == "" {
				t.Errorf("error body = %s, want code %d and a message", resp.Body, tt.wantGRPC)
			}
		})
	}
	// A batch whose every item is bad: per-item errors, nothing accepted.
	bad := vehicle(`,"x":1`) + "\n" + `{"meterId":"m-1","kwhConsumedAc":1,"voltage":9999,"timestamp":"` + ts + `"}` + "\n"
	resp := do(t, http.MethodPost, s.URL()+"/v1/telemetry/batch", "application/x-ndjson", []byte(bad))
	var br struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index int `json:"index"`
		} `json:"rejected"`
	}
	resp.json(t, &br)
	if br.Accepted != 0 || len(br.Rejected) != 2 {
		t.Errorf("all-bad batch answered %d %s", resp.Code, resp.Body)
	}

	// A good reading posted last lands; it must be the only row on any shard.
	if resp := postJSON(t, s.URL()+"/v1/telemetry", map[string]any{"meterId": "sentinel", "kwhConsumedAc": 1, "voltage": 230, "timestamp": ts}); resp.Code != 202 {
		t.Fatalf("sentinel: %d %s", resp.Code, resp.Body)
	}
	waitForRows(t, pools, 1)
	for i, p := range pools {
		want := 0
		if twoShards.ShardOf("sentinel") == i {
			want = 2 // its status row and its hourly rollup
		}
		if n := count(t, p, `SELECT (SELECT count(*) FROM current_meter_status) + (SELECT count(*) FROM current_vehicle_status)
			+ (SELECT count(*) FROM meter_hourly) + (SELECT count(*) FROM vehicle_hourly)`); n != want {
			t.Errorf("shard %d holds %d status/rollup rows, want %d (the sentinel's only)", i, n, want)
		}
	}
}

func TestAFullStreamAnswers503AndLosesNothingAccepted(t *testing.T) {
	s := startStack(t, func(c *devstack.Config) {
		c.Shards = 1
		c.Streams.MaxBytes = 32 << 10
	})
	pools := shardPools(t, s)
	ctx := context.Background()

	// With the shard's database down, the ingester cannot commit, so nothing is acked and the
	// stream fills up.
	pg := s.Postgres(0)
	dataDir, port := pg.DataDir(), pg.Port()
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	accepted, refused := 0, 0
	for i := 0; i < 5000 && refused < 3; i++ {
		var body bytes.Buffer
		for j := 0; j < 20; j++ {
			fmt.Fprintf(&body, `{"meterId":"m-%d","kwhConsumedAc":1.5,"voltage":230,"timestamp":"%s"}`+"\n", j, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
		}
		resp := do(t, http.MethodPost, s.URL()+"/v1/telemetry/batch", "application/x-ndjson", body.Bytes())
		switch resp.Code {
		case http.StatusAccepted:
			var br struct {
				Accepted int   `json:"accepted"`
				Rejected []any `json:"rejected"`
			}
			resp.json(t, &br)
			accepted += br.Accepted
			if len(br.Rejected) > 0 {
				refused++
			}
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After: %s", resp.Body)
			}
			refused++
		default:
			t.Fatalf("POST = %d %s", resp.Code, resp.Body)
		}
	}
	if refused == 0 {
		t.Fatal("the stream never filled up")
	}
	if accepted == 0 {
		t.Fatal("nothing was accepted before the stream filled up")
	}
	t.Logf("accepted %d readings before the stream refused", accepted)

	restarted, err := localpg.Start(ctx, localpg.Config{DataDir: dataDir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restarted.Stop(context.Background()) })
	waitForRows(t, pools, accepted)
}
