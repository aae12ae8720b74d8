package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Procedures of the test service.
const (
	procWho    = "/fleetingest.test.v1.TestService/Who"
	procWrite  = "/fleetingest.test.v1.TestService/Write"
	procPublic = "/fleetingest.test.v1.TestService/Public"
	procWatch  = "/fleetingest.test.v1.TestService/Watch"
)

// requiredRoles is the role table of the test service.
func requiredRoles(procedure string) Role {
	switch procedure {
	case procWrite:
		return RoleAdmin
	case procPublic:
		return ""
	default:
		return RoleViewer
	}
}

// connectServer serves the test service behind the interceptor.
func connectServer(t *testing.T, users UserVerifier) *httptest.Server {
	t.Helper()
	opts := connect.WithInterceptors(NewConnectInterceptor(users, requiredRoles))
	who := func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[wrapperspb.StringValue], error) {
		c, ok := UserFromContext(ctx)
		if !ok {
			return connect.NewResponse(wrapperspb.String("anonymous")), nil
		}
		return connect.NewResponse(wrapperspb.String(c.Name)), nil
	}
	mux := http.NewServeMux()
	for _, p := range []string{procWho, procWrite, procPublic} {
		mux.Handle(p, connect.NewUnaryHandler(p, who, opts))
	}
	mux.Handle(procWatch, connect.NewServerStreamHandler(procWatch, func(ctx context.Context, _ *connect.Request[emptypb.Empty], s *connect.ServerStream[wrapperspb.StringValue]) error {
		c, ok := UserFromContext(ctx)
		if !ok {
			return connect.NewError(connect.CodeInternal, errors.New("no user in the stream's context"))
		}
		return s.Send(wrapperspb.String(c.Name))
	}, opts))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestConnectInterceptor(t *testing.T) {
	f := newUserFixture(t, func(c *LocalUserConfig) { c.Now = time.Now })
	now := time.Now()
	viewer, _, err := f.keys.signer.UserToken("ada", RoleViewer, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := f.keys.signer.UserToken("grace", RoleAdmin, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := f.keys.signer.UserToken("ada", RoleAdmin, time.Second, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	device, _, err := newKeyDir(t).signer.DeviceToken(PrefixScope(""), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	srv := connectServer(t, f.verifier)

	tests := []struct {
		name          string
		procedure     string
		auth          string
		wantCode      connect.Code // 0: success
		wantName      string
		wantChallenge string
		wantMessage   string
	}{
		{name: "a viewer may call a viewer procedure", procedure: procWho, auth: "Bearer " + viewer, wantName: "ada"},
		{name: "an admin may call a viewer procedure", procedure: procWho, auth: "Bearer " + admin, wantName: "grace"},
		{name: "an admin may call an admin procedure", procedure: procWrite, auth: "Bearer " + admin, wantName: "grace"},
		{name: "a viewer may not call an admin procedure", procedure: procWrite, auth: "Bearer " + viewer, wantCode: connect.CodePermissionDenied, wantChallenge: `error="insufficient_scope"`, wantMessage: "needs the admin role"},
		{name: "no token is unauthenticated", procedure: procWho, wantCode: connect.CodeUnauthenticated, wantChallenge: `Bearer realm="fleetingest"`},
		{name: "an expired token is unauthenticated", procedure: procWho, auth: "Bearer " + expired, wantCode: connect.CodeUnauthenticated, wantChallenge: `error="invalid_token"`, wantMessage: "token expired at"},
		{name: "a device token is unauthenticated", procedure: procWho, auth: "Bearer " + device, wantCode: connect.CodeUnauthenticated, wantChallenge: `error="invalid_token"`, wantMessage: "not a user token"},
		{name: "another scheme is unauthenticated", procedure: procWho, auth: "Basic YWRhOnNlY3JldA==", wantCode: connect.CodeUnauthenticated, wantChallenge: `error="invalid_token"`},
		{name: "a public procedure needs no token", procedure: procPublic, wantName: "anonymous"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+tc.procedure)
			req := connect.NewRequest(&emptypb.Empty{})
			if tc.auth != "" {
				req.Header().Set("Authorization", tc.auth)
			}
			res, err := client.CallUnary(t.Context(), req)
			checkConnectAnswer(t, err, tc.wantCode, tc.wantChallenge, tc.wantMessage)
			if err == nil && res.Msg.GetValue() != tc.wantName {
				t.Fatalf("handler saw %q, want %q", res.Msg.GetValue(), tc.wantName)
			}
		})
	}
}

func TestConnectInterceptorGuardsStreams(t *testing.T) {
	f := newUserFixture(t, func(c *LocalUserConfig) { c.Now = time.Now })
	viewer, _, err := f.keys.signer.UserToken("ada", RoleViewer, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := connectServer(t, f.verifier)
	tests := []struct {
		name          string
		auth          string
		wantCode      connect.Code
		wantChallenge string
	}{
		{name: "a stream with a valid token gets the user in its context", auth: "Bearer " + viewer},
		{name: "a stream without token is unauthenticated", wantCode: connect.CodeUnauthenticated, wantChallenge: `Bearer realm="fleetingest"`},
		{name: "a stream with a bad token is unauthenticated", auth: "Bearer x.y.z", wantCode: connect.CodeUnauthenticated, wantChallenge: `error="invalid_token"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+procWatch)
			req := connect.NewRequest(&emptypb.Empty{})
			if tc.auth != "" {
				req.Header().Set("Authorization", tc.auth)
			}
			stream, err := client.CallServerStream(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = stream.Close() }()
			var names []string
			for stream.Receive() {
				names = append(names, stream.Msg().GetValue())
			}
			checkConnectAnswer(t, stream.Err(), tc.wantCode, tc.wantChallenge, "")
			if tc.wantCode == 0 && (len(names) != 1 || names[0] != "ada") {
				t.Fatalf("stream sent %v, want [ada]", names)
			}
		})
	}
}

func TestConnectInterceptorAnswersUnavailableWhenTheIssuerIsDown(t *testing.T) {
	iss := newTestIssuer(t)
	iss.addKey("k1", true)
	iss.up.Store(false)
	v := newOIDCVerifier(t, iss, newClock(t0))
	srv := connectServer(t, v)
	client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+procWho)
	req := connect.NewRequest(&emptypb.Empty{})
	req.Header().Set("Authorization", "Bearer "+iss.token("k1", nil))
	_, err := client.CallUnary(t.Context(), req)
	checkConnectAnswer(t, err, connect.CodeUnavailable, "", "")
}

func TestConnectInterceptorAnswersOverPlainHTTP(t *testing.T) {
	f := newUserFixture(t)
	srv := connectServer(t, f.verifier)
	r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+procWho, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != `Bearer realm="fleetingest"` {
		t.Fatalf("status %d, WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

func checkConnectAnswer(t *testing.T, err error, wantCode connect.Code, wantChallenge, wantMessage string) {
	t.Helper()
	if wantCode == 0 {
		if err != nil {
			t.Fatalf("call failed: %v", err)
		}
		return
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a Connect error %s", err, wantCode)
	}
	if ce.Code() != wantCode {
		t.Fatalf("code %s (%v), want %s", ce.Code(), ce, wantCode)
	}
	if got := ce.Meta().Get("WWW-Authenticate"); !strings.Contains(got, wantChallenge) || (wantChallenge == "") != (got == "") {
		t.Fatalf("WWW-Authenticate %q, want it to hold %q", got, wantChallenge)
	}
	if !strings.Contains(ce.Message(), wantMessage) {
		t.Fatalf("message %q, want it to hold %q", ce.Message(), wantMessage)
	}
}
