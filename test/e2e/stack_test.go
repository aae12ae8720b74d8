// Package e2e drives the whole system end to end: the dev stack in process (embedded NATS,
// real Postgres shards, gateway, ingesters, analytics) and the fleetingest binary as separate
// processes, over HTTP as devices and operators use it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/internal/devstack"
	"github.com/fleetingest/fleetingest/test/envtest"
)

// startStack starts a dev stack in a temp folder on free ports; it stops when the test ends.
func startStack(t *testing.T, tune func(*devstack.Config)) *devstack.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := devstack.Config{
		DataDir:  filepath.Join(t.TempDir(), "data"),
		Shards:   2,
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := devstack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("starting dev stack: %v", err)
	}
	trust(s)
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping dev stack: %v", err)
		}
	})
	return s
}

// shardPools opens a pool on every shard of s; they close when the test ends.
func shardPools(t *testing.T, s *devstack.Stack) []*pgxpool.Pool {
	t.Helper()
	pools := make([]*pgxpool.Pool, len(s.DSNs()))
	for i, dsn := range s.DSNs() {
		p, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[i] = p
	}
	return pools
}

// count runs a counting query on one shard.
func count(t *testing.T, p *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	if err := p.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// historyRows is the number of history rows of both kinds on every shard.
func historyRows(t *testing.T, pools []*pgxpool.Pool) []int {
	t.Helper()
	out := make([]int, len(pools))
	for i, p := range pools {
		out[i] = count(t, p, `SELECT (SELECT count(*) FROM meter_telemetry_history) + (SELECT count(*) FROM vehicle_telemetry_history)`)
	}
	return out
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// waitForRows waits until the shards hold want history rows in all, and then a little
// longer to see that no more arrive.
func waitForRows(t *testing.T, pools []*pgxpool.Pool, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := sum(historyRows(t, pools))
		if got == want {
			time.Sleep(300 * time.Millisecond)
			if again := sum(historyRows(t, pools)); again != want {
				t.Fatalf("history rows went on from %d to %d, want exactly %d", got, again, want)
			}
			return
		}
		if got > want {
			t.Fatalf("history holds %d rows, want %d", got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("history holds %d rows after 60s, want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

func do(t *testing.T, method, url, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return response{Code: resp.StatusCode, Header: resp.Header, Body: data}
}

func postJSON(t *testing.T, url string, v any) response {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, http.MethodPost, url, "application/json", data)
}

// client is the tests' HTTP client: it sends each request to a dev stack with the stack's
// tokens, as a device (ingest paths) or as an admin (everything else), unless the request
// carries its own Authorization header.
var client = &http.Client{Transport: tokenTransport{}}

// stackTokens holds the tokens of every trusted stack by host:port.
var stackTokens sync.Map // string → [2]string{device, admin}

// trust makes client send the stack's tokens to it.
func trust(s *devstack.Stack) {
	stackTokens.Store(strings.TrimPrefix(s.URL(), "http://"), [2]string{s.DeviceToken(), s.AdminToken()})
}

type tokenTransport struct{}

func (tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tokens, ok := stackTokens.Load(req.URL.Host); ok && req.Header.Get("Authorization") == "" {
		token := tokens.([2]string)[1]
		if strings.HasPrefix(req.URL.Path, "/v1/telemetry") {
			token = tokens.([2]string)[0]
		}
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// command is the fleetingest command the tests run, built once and removed after them.
var command envtest.Fleetingest

func TestMain(m *testing.M) {
	code := m.Run()
	command.Remove()
	os.Exit(code)
}

// lineWriter collects a process' output and signals when a line containing want appears.
type lineWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
	once sync.Once
}

func newLineWriter(want string) *lineWriter {
	return &lineWriter{want: want, seen: make(chan struct{})}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
