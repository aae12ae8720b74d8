package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/test/mountedsecret"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// env is one gateway over an embedded JetStream server, with its streams and mapping
// bucket made by ingester.EnsureStreams and a real mapping registry as its placement.
type env struct {
	t      testing.TB
	srv    *localnats.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	topo   ingester.Topology
	slots  *placement.SlotMap // the shard map's first version
	maps   *ingester.ShardMaps
	reg    *registry.Registry
	gw     *gateway.Gateway
	http   *httptest.Server
	client *http.Client
	prom   *prometheus.Registry

	stopGateway context.CancelFunc
	gatewayDone chan error

	mu   sync.Mutex
	seen map[string]map[uint64]*telemetrypb.ReadingBatch // stream → seq → message

	// With envOptions.auth: the device keys' mounted folder, its first signing key, the
	// revocation bucket and the token every request carries unless it names its own.
	keyDir  string
	signer  *auth.Signer
	revoked jetstream.KeyValue
	token   string
}

type envOptions struct {
	shards        int
	streams       ingester.StreamOptions
	gateway       func(*gateway.Config)
	registryClock func() time.Time
	// startRegistry false leaves the registry's watch to the test.
	skipRegistry bool
	// before runs once the bucket exists and before the registry starts watching.
	before func(js jetstream.JetStream, topo ingester.Topology)
	// auth verifies device tokens: keys in a folder mounted as kubelet mounts a Secret,
	// revocations from the fleet's bucket, and an every-device token for env.post.
	auth bool
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.shards == 0 {
		o.shards = 4
	}
	e := &env{t: t, seen: map[string]map[uint64]*telemetrypb.ReadingBatch{}}
	e.srv = natstest.Start(t)
	var err error
	// Without a reconnect buffer a publish while disconnected fails at once instead of
	// waiting for the publish timeout.
	e.nc, err = nats.Connect(e.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(e.nc.Close)
	if e.js, err = jetstream.New(e.nc); err != nil {
		t.Fatal(err)
	}
	e.topo = ingester.Topology{Namespace: "test", Fleet: "gw", Shards: o.shards}
	e.slots = placement.MustSlotMap(o.shards)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := ingester.EnsureStreams(ctx, e.js, e.topo, o.streams); err != nil {
		t.Fatalf("provisioning: %v", err)
	}
	if o.before != nil {
		o.before(e.js, e.topo)
	}
	e.reg, err = registry.Open(ctx, e.js, e.topo.MappingBucket(), registry.Config{Now: o.registryClock})
	if err != nil {
		t.Fatal(err)
	}
	if !o.skipRegistry {
		e.startRegistry(ctx)
	}
	e.maps, err = ingester.OpenShardMaps(ctx, e.js, e.topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.maps.Run(ctx) }()
	e.prom = prometheus.NewRegistry()
	cfg := gateway.Config{
		Topology:   e.topo,
		ShardMap:   e.maps,
		Placement:  e.reg,
		Registerer: e.prom,
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if o.auth {
		cfg.Devices = e.startAuth(ctx)
	}
	if o.gateway != nil {
		o.gateway(&cfg)
	}
	if e.gw, err = gateway.New(e.nc, cfg); err != nil {
		t.Fatalf("new gateway: %v", err)
	}
	gctx, stop := context.WithCancel(context.Background())
	e.stopGateway = stop
	e.gatewayDone = make(chan error, 1)
	go func() { e.gatewayDone <- e.gw.Run(gctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-e.gatewayDone; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	})
	e.http = httptest.NewServer(e.gw.Handler())
	t.Cleanup(e.http.Close)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}, Timeout: 30 * time.Second}
	t.Cleanup(e.client.CloseIdleConnections)
	if !o.skipRegistry {
		e.waitReady()
	}
	return e
}

// startAuth makes a device key, publishes its verification half in a mounted folder and
// returns a verifier that re-reads the folder and watches the revocation bucket.
func (e *env) startAuth(ctx context.Context) *auth.DeviceVerifier {
	t := e.t
	t.Helper()
	signingDir := t.TempDir()
	kid, err := auth.GenerateKey(signingDir)
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = auth.LoadSigner(filepath.Join(signingDir, kid+".key")); err != nil {
		t.Fatal(err)
	}
	e.keyDir = t.TempDir()
	mountedsecret.Publish(t, e.keyDir, mountedsecret.Files(t, filepath.Join(signingDir, kid+".pub")))
	quiet := slog.New(slog.DiscardHandler)
	keys, err := auth.NewKeySet(auth.KeySetConfig{Dir: e.keyDir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = keys.Run(ctx) }()
	revocations, err := auth.NewRevocations(auth.RevocationsConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if e.revoked, err = e.js.KeyValue(ctx, e.topo.RevocationBucket()); err != nil {
		t.Fatal(err)
	}
	go func() { _ = revocations.Run(ctx, e.revoked) }()
	v, err := auth.NewDeviceVerifier(auth.DeviceVerifierConfig{Keys: keys, Revocations: revocations})
	if err != nil {
		t.Fatal(err)
	}
	e.token = e.mint(auth.PrefixScope(""), time.Hour)
	return v
}

// mint returns a device token of the env's key.
func (e *env) mint(scope auth.Scope, ttl time.Duration) string {
	e.t.Helper()
	token, _, err := e.signer.DeviceToken(scope, ttl, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return token
}

func (e *env) startRegistry(ctx context.Context) {
	go func() { _ = e.reg.Run(ctx) }()
}

func (e *env) waitReady() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := e.gw.Ready(context.Background())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("gateway not ready: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type answer struct {
	code       int
	retryAfter string
	challenge  string // WWW-Authenticate
	body       []byte
}

func (e *env) post(path, contentType, body string) answer {
	e.t.Helper()
	return e.postCtx(context.Background(), path, contentType, body)
}

func (e *env) postCtx(ctx context.Context, path, contentType, body string) answer {
	var h http.Header
	if e.token != "" {
		h = http.Header{"Authorization": {"Bearer " + e.token}}
	}
	return e.postHeaders(ctx, path, contentType, body, h)
}

// postHeaders posts with the given headers (and no token unless they hold one).
func (e *env) postHeaders(ctx context.Context, path, contentType, body string, h http.Header) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.http.URL+path, bytes.NewBufferString(body))
	if err != nil {
		e.t.Fatal(err)
	}
	maps.Copy(req.Header, h)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{code: -1, body: []byte(err.Error())}
	}
	data, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return answer{code: -1, body: []byte("reading the answer: " + err.Error())}
	}
	return answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), challenge: resp.Header.Get("WWW-Authenticate"), body: data}
}

// rpcStatus is the google.rpc.Status error body.
type rpcStatus struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func parseStatus(t testing.TB, body []byte) rpcStatus {
	t.Helper()
	var s rpcStatus
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("error body %s is not a google.rpc.Status: %v", body, err)
	}
	if s.Code == 0 || s.Message == "" {
		t.Fatalf("error body %s lacks a code or message", body)
	}
	return s
}

// messages returns every message in shard's stream (not consuming it), in order.
func (e *env) messages(shard int) []*telemetrypb.ReadingBatch {
	e.t.Helper()
	ctx := context.Background()
	name := e.topo.Stream(shard)
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream %s info: %v", name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := e.seen[name]
	if seen == nil {
		seen = map[uint64]*telemetrypb.ReadingBatch{}
		e.seen[name] = seen
	}
	var out []*telemetrypb.ReadingBatch
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		b, ok := seen[seq]
		if !ok {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				e.t.Fatalf("stream %s seq %d: %v", name, seq, err)
			}
			if m.Subject != e.topo.Subject(shard) {
				e.t.Fatalf("message on subject %s in stream %s", m.Subject, name)
			}
			if b, err = telemetry.UnmarshalBatch(m.Data); err != nil {
				e.t.Fatalf("stream %s seq %d: %v", name, seq, err)
			}
			seen[seq] = b
		}
		out = append(out, b)
	}
	return out
}

// consume reads and acknowledges every message of shard's stream with the durable
// ingester consumer, as a shard ingester would.
func (e *env) consume(shard int) []*telemetrypb.ReadingBatch {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, e.topo.Stream(shard))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	want := int(info.State.Msgs) // work-queue retention: what is left is what is unacknowledged
	c, err := s.Consumer(ctx, ingester.ConsumerName)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*telemetrypb.ReadingBatch
	for len(out) < want {
		batch, err := c.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			b, err := telemetry.UnmarshalBatch(m.Data())
			if err != nil {
				e.t.Fatal(err)
			}
			if m.Subject() != e.topo.Subject(shard) {
				e.t.Fatalf("message on subject %s, want %s", m.Subject(), e.topo.Subject(shard))
			}
			out = append(out, b)
			if err := m.DoubleAck(ctx); err != nil {
				e.t.Fatal(err)
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			e.t.Fatal(err)
		}
		if n == 0 {
			e.t.Fatalf("shard %d: fetched %d of %d messages", shard, len(out), want)
		}
	}
	return out
}

// published counts the readings in every shard's stream.
func (e *env) published() (msgs, readings int) {
	e.t.Helper()
	for i := 0; i < e.topo.Shards; i++ {
		for _, b := range e.messages(i) {
			msgs++
			readings += telemetry.BatchLen(b)
		}
	}
	return msgs, readings
}

// findShard returns the readings of device id across all streams, with the shard holding them.
func (e *env) find(id string) (shard int, meters []*telemetrypb.MeterReading, vehicles []*telemetrypb.VehicleReading) {
	e.t.Helper()
	shard = -1
	for i := 0; i < e.topo.Shards; i++ {
		for _, b := range e.messages(i) {
			for _, m := range b.GetMeters() {
				if m.GetMeterId() == id {
					shard, meters = i, append(meters, m)
				}
			}
			for _, v := range b.GetVehicles() {
				if v.GetVehicleId() == id {
					shard, vehicles = i, append(vehicles, v)
				}
			}
		}
	}
	return shard, meters, vehicles
}

// idOnShard returns the first id prefix-N that the slot map places on shard, skipping avoid.
func idOnShard(t testing.TB, m *placement.SlotMap, prefix string, shard int, avoid ...string) string {
	t.Helper()
next:
	for i := 0; i < 10_000; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		for _, a := range avoid {
			if a == id {
				continue next
			}
		}
		if m.ShardOf(id) == shard {
			return id
		}
	}
	t.Fatalf("no %s id on shard %d", prefix, shard)
	return ""
}

func meterJSON(id string, ts time.Time) string {
	return fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":1.25,"voltage":230,"timestamp":%q}`, id, ts.UTC().Format(time.RFC3339Nano))
}

func vehicleJSON(id string, ts time.Time) string {
	return fmt.Sprintf(`{"vehicleId":%q,"soc":50,"kwhDeliveredDc":1.1,"batteryTemp":25,"timestamp":%q}`, id, ts.UTC().Format(time.RFC3339Nano))
}
