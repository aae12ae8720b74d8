package analytics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/internal/httpserver"
	"github.com/fleetingest/fleetingest/test/fleetload"
	"github.com/fleetingest/fleetingest/test/natstest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// authFixture is an analytics service over one empty shard that verifies user tokens of a
// local key, with tokens of every kind a caller may bring.
type authFixture struct {
	url                            string
	reg                            *registry.Registry
	viewer, admin, expired, device string
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	ctx := t.Context()
	c := pgtest.Start(t)
	dsn := c.DSN("postgres")
	if _, err := fleetload.Prepare(ctx, openPool(t, dsn), time.Now().Add(-48*time.Hour), time.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "auth", Shards: 1}
	if _, err := ingester.EnsureStreams(ctx, js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(ctx, js, top.MappingBucket(), registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = reg.Run(ctx) }()
	if err := reg.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	keys, err := auth.EnsureDevKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	userKeys, err := auth.NewKeySet(auth.KeySetConfig{Dir: keys.UserKeyDir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NewLocalUserVerifier(auth.LocalUserConfig{Keys: userKeys})
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{reg: reg}
	now := time.Now()
	mint := func(role auth.Role, ttl time.Duration, at time.Time) string {
		token, _, err := keys.UserSigner.UserToken("someone", role, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	f.viewer, f.admin, f.expired = mint(auth.RoleViewer, time.Hour, now), mint(auth.RoleAdmin, time.Hour, now), mint(auth.RoleAdmin, time.Second, now.Add(-time.Hour))
	if f.device, _, err = keys.DeviceSigner.DeviceToken(auth.PrefixScope(""), time.Hour, now); err != nil {
		t.Fatal(err)
	}

	svc, err := analytics.New(analytics.Config{
		Shards:   shards.Config{DSNs: []string{dsn}, MaxConns: 4, QueryTimeout: 3 * time.Second},
		ShardMap: placement.Fixed{Map: placement.MustShardMap(1)},
		Registry: reg,
		Users:    users,
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; svc.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = httpserver.ServeListener(ctx, l, httpserver.Config{Handler: svc.Handler(), Ready: []httpserver.ReadyFunc{svc.Ready}, Logger: quiet})
	}()
	f.url = "http://" + l.Addr().String()
	deadline := time.Now().Add(30 * time.Second)
	for svc.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("service not ready after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

// bearer adds a token to every call of a Connect client.
func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}))
}

func TestAnalyticsAsksEveryCallerForAUserTokenWithTheRightRole(t *testing.T) {
	f := newAuthFixture(t)
	ctx := t.Context()
	// EV-1 is mapped by an admin first; every refused write below must leave it as it is.
	admin := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, bearer(f.admin))
	if _, err := admin.CreateMapping(ctx, connect.NewRequest(&analyticsv1.CreateMappingRequest{VehicleId: "EV-1", MeterId: "meter-1"})); err != nil {
		t.Fatal(err)
	}
	before, _ := f.reg.Get(ctx, "EV-1")

	rest := func(method, path, body string) func(token string) (int, string, string) {
		return func(token string) (int, string, string) {
			req, err := http.NewRequestWithContext(ctx, method, f.url+path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			res, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			data, _ := io.ReadAll(res.Body)
			return res.StatusCode, res.Header.Get("WWW-Authenticate"), string(data)
		}
	}
	// Connect, gRPC and reflection calls answer with their own codes; map them to HTTP's.
	httpOf := map[connect.Code]int{connect.CodeUnauthenticated: 401, connect.CodePermissionDenied: 403, connect.CodeNotFound: 404, connect.CodeAlreadyExists: 409}
	call := func(opts ...connect.ClientOption) func(token string) (int, string, string) {
		return func(token string) (int, string, string) {
			c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, append(opts, bearer(token))...)
			_, err := c.UpdateMapping(ctx, connect.NewRequest(&analyticsv1.UpdateMappingRequest{VehicleId: "EV-1", MeterId: "meter-2"}))
			if err == nil {
				return 200, "", ""
			}
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatal(err)
			}
			return httpOf[ce.Code()], ce.Meta().Get("WWW-Authenticate"), ce.Message()
		}
	}
	reflection := func(token string) (int, string, string) {
		c := grpcreflect.NewClient(h2cClient(), f.url, connect.WithGRPC(), bearer(token))
		stream := c.NewStream(ctx, grpcreflect.WithRequestHeaders(http.Header{"Authorization": {"Bearer " + token}}))
		defer func() { _, _ = stream.Close() }()
		if _, err := stream.ListServices(); err != nil {
			var ce *connect.Error
			if errors.As(err, &ce) {
				return httpOf[ce.Code()], ce.Meta().Get("WWW-Authenticate"), ce.Message()
			}
			t.Fatal(err)
		}
		return 200, "", ""
	}

	type want struct{ none, device, expired, viewer, admin int }
	reads := want{401, 401, 401, 200, 200}
	writes := want{401, 401, 401, 403, 0} // 0: not called with an admin token (it would change EV-1)
	for _, tc := range []struct {
		name string
		do   func(token string) (int, string, string)
		want want
	}{
		{"REST create mapping", rest(http.MethodPost, "/v1/analytics/mappings", `{"vehicleId":"EV-1","meterId":"meter-3"}`), writes},
		{"REST update mapping", rest(http.MethodPut, "/v1/analytics/mappings/EV-1", `{"meterId":"meter-3"}`), writes},
		{"REST delete mapping", rest(http.MethodDelete, "/v1/analytics/mappings/EV-1", ""), writes},
		{"REST get mapping", rest(http.MethodGet, "/v1/analytics/mappings/EV-1", ""), reads},
		{"REST list mappings", rest(http.MethodGet, "/v1/analytics/mappings", ""), reads},
		{"REST vehicle performance", rest(http.MethodGet, "/v1/analytics/performance/EV-1", ""), reads},
		{"REST alerts", rest(http.MethodGet, "/v1/analytics/alerts", ""), reads},
		{"REST vehicle status", rest(http.MethodGet, "/v1/status/vehicles/EV-1", ""), want{401, 401, 401, 404, 404}},
		{"Connect update mapping", call(), writes},
		{"gRPC update mapping", call(connect.WithGRPC()), writes},
		{"gRPC-Web update mapping", call(connect.WithGRPCWeb()), writes},
		{"gRPC server reflection", reflection, reads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				who, token string
				want       int
			}{
				{"no token", "", tc.want.none},
				{"a device token", f.device, tc.want.device},
				{"an expired admin token", f.expired, tc.want.expired},
				{"a viewer", f.viewer, tc.want.viewer},
				{"an admin", f.admin, tc.want.admin},
			} {
				if c.want == 0 {
					continue
				}
				code, challenge, body := tc.do(c.token)
				if code != c.want {
					t.Errorf("%s: %d, want %d: %s", c.who, code, c.want, body)
				}
				// gRPC carries no HTTP challenge: its status is in the trailers.
				if code == 401 && !strings.HasPrefix(tc.name, "gRPC ") && !strings.HasPrefix(challenge, "Bearer") {
					t.Errorf("%s: 401 without a Bearer challenge (WWW-Authenticate %q)", c.who, challenge)
				}
				if code == 403 && !strings.Contains(body, "admin") {
					t.Errorf("%s: 403 that does not name the role needed: %s", c.who, body)
				}
			}
		})
	}

	after, err := f.reg.Get(ctx, "EV-1")
	if err != nil || after.MeterID != "meter-1" || len(after.Intervals) != len(before.Intervals) {
		t.Errorf("refused writes changed EV-1's mapping: %+v (%v), was %+v", after, err, before)
	}
	if _, err := f.reg.Get(ctx, "EV-2"); err == nil {
		t.Error("a refused create wrote EV-2")
	}
}

func TestAnalyticsLetsAnAdminChangeMappings(t *testing.T) {
	f := newAuthFixture(t)
	c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.url, bearer(f.admin))
	ctx := t.Context()
	if _, err := c.CreateMapping(ctx, connect.NewRequest(&analyticsv1.CreateMappingRequest{VehicleId: "EV-7", MeterId: "meter-1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateMapping(ctx, connect.NewRequest(&analyticsv1.UpdateMappingRequest{VehicleId: "EV-7", MeterId: "meter-2"})); err != nil {
		t.Fatal(err)
	}
	if m, err := f.reg.Get(ctx, "EV-7"); err != nil || m.MeterID != "meter-2" {
		t.Fatalf("after an admin's update: %+v, %v", m, err)
	}
	if _, err := c.DeleteMapping(ctx, connect.NewRequest(&analyticsv1.DeleteMappingRequest{VehicleId: "EV-7"})); err != nil {
		t.Fatal(err)
	}
	if m, err := f.reg.Get(ctx, "EV-7"); err != nil || m.MeterID != "" {
		t.Fatalf("after an admin's delete: %+v, %v", m, err)
	}
}
