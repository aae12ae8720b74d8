package app

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/freeport"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestGatewayCommandServesUntilCancelled(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	topo := ingester.Topology{Namespace: "cmd", Fleet: "gw", Shards: 2}
	if _, err := ingester.EnsureStreams(context.Background(), js, topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	addr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, err := freeport.Addr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	kid, err := auth.GenerateKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auth.LoadSigner(filepath.Join(keyDir, kid+".key"))
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := signer.DeviceToken(auth.DeviceScope("meter-1"), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	cmd := newGatewayCommand()
	if err := cmd.ParseFlags([]string{
		"--nats-url", srv.URL(), "--namespace", "cmd", "--fleet", "gw",
		"--http-addr", addr, "--metrics-addr", metricsAddr, "--linger", "2ms",
		"--device-keys", keyDir,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd.SetContext(ctx)
	done := make(chan error, 1)
	go func() { done <- cmd.RunE(cmd, nil) }()

	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			readBody(t, resp)
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	body := `{"meterId":"meter-1","kwhConsumedAc":1,"voltage":230,"timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	resp, err := http.Post(base+"/v1/telemetry", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a token: %d %s, want 401", resp.StatusCode, got)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/telemetry", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	got := readBody(t, resp)
	if resp.StatusCode != http.StatusAccepted || string(got) != `{"status":"meter telemetry ingested"}` {
		t.Fatalf("POST: %d %s", resp.StatusCode, got)
	}
	if resp, err = http.Get(base + "/metrics"); err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the main port: %d, want 404 (served on --metrics-addr)", resp.StatusCode)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics := readBody(t, resp)
	if !strings.Contains(string(metrics), `fleetingest_gateway_readings_accepted_total{kind="meter"} 1`) {
		t.Fatalf("metrics lack the accepted reading:\n%s", metrics)
	}
	s, err := js.Stream(context.Background(), topo.Stream(placement.MustSlotMap(2).ShardOf("meter-1")))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream holds %v messages (%v)", info.State.Msgs, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway command: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway command did not shut down")
	}
}

// readBody reads and closes resp's body, failing the test when either fails.
func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", resp.Request.URL, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatalf("closing the answer to %s: %v", resp.Request.URL, err)
	}
	return body
}

func TestGatewayCommandRefusesToStartWithoutAnAuthenticationChoice(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"neither keys nor insecure", nil, "--device-keys is required"},
		{"both keys and insecure", []string{"--device-keys", t.TempDir(), "--insecure-no-auth"}, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := natstest.Start(t)
			_, err := deviceAuthFromFlags(t, nc.URL(), tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// deviceAuthFromFlags parses args as the gateway command's and builds its device auth.
func deviceAuthFromFlags(t *testing.T, natsURL string, args []string) (*auth.Devices, error) {
	t.Helper()
	cmd := newGatewayCommand()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	keys, _ := cmd.Flags().GetString("device-keys")
	insecure, _ := cmd.Flags().GetBool("insecure-no-auth")
	nc, err := connectNATS(natsURL, "", "test", logger("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	d, _, err := deviceAuth(t.Context(), nc, ingester.Topology{Namespace: "cmd", Fleet: "gw", Shards: 1}, keys, insecure, logger("test"))
	return d, err
}
