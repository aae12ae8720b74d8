package auth

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		want   string
		reason Reason
	}{
		{name: "a bearer token is returned", header: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "the scheme is case-insensitive", header: []string{"bEaReR abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "spaces around the token are dropped", header: []string{"Bearer   abc.def.ghi  "}, want: "abc.def.ghi"},
		{name: "no header is missing", reason: ReasonMissing},
		{name: "an empty header is missing", header: []string{""}, reason: ReasonMissing},
		{name: "another scheme is malformed", header: []string{"Basic YWRhOnNlY3JldA=="}, reason: ReasonMalformed},
		{name: "a scheme alone is malformed", header: []string{"Bearer"}, reason: ReasonMalformed},
		{name: "an empty token is malformed", header: []string{"Bearer  "}, reason: ReasonMalformed},
		{name: "a token without scheme is malformed", header: []string{"abc.def.ghi"}, reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", http.NoBody)
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			got, err := BearerToken(r)
			if tc.reason == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil || err.Reason != tc.reason {
				t.Fatalf("got %q, %v; want reason %s", got, err, tc.reason)
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{name: "no token gets a bare challenge", err: nil, want: `Bearer realm="fleetingest"`},
		{name: "a missing token gets a bare challenge", err: errMissing, want: `Bearer realm="fleetingest"`},
		{name: "an expired token is an invalid token", err: newError(ReasonExpired, "token expired at 2026-12-03T10:00:00Z"), want: `Bearer realm="fleetingest", error="invalid_token", error_description="token expired at 2026-12-03T10:00:00Z"`},
		{name: "an out-of-scope token is insufficient scope", err: newError(ReasonOutOfScope, "nope"), want: `Bearer realm="fleetingest", error="insufficient_scope", error_description="nope"`},
		{name: "quotes and control characters never reach the header", err: newError(ReasonUnknownKey, "token signed by unknown key \"a\\b\x00c\u00e9\""), want: `Bearer realm="fleetingest", error="invalid_token", error_description="token signed by unknown key 'a/bc'"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Challenge(tc.err); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestDeviceMiddleware(t *testing.T) {
	f := newDeviceFixture(t, func(c *DeviceVerifierConfig) { c.Now = time.Now })
	now := time.Now()
	valid, _, err := f.keys.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := f.keys.signer.DeviceToken(DeviceScope("EV-101"), time.Second, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	userToken, _, err := newKeyDir(t).signer.UserToken("ada", RoleAdmin, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	h := DeviceMiddleware(f.verifier, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := DeviceFromContext(r.Context())
		if !ok {
			http.Error(w, "no claims", http.StatusInternalServerError)
			return
		}
		if err := c.Authorize(r.URL.Query().Get("device")); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("refusal %v is not an *Error", err)
			}
			WriteChallenge(w, e)
			http.Error(w, e.Message, e.HTTPStatus())
			return
		}
		_, _ = io.WriteString(w, "ok "+c.Scope.String())
	}))
	tests := []struct {
		name          string
		auth          string
		device        string
		wantStatus    int
		wantChallenge string
		wantBody      string
	}{
		{name: "a valid token in scope passes with its claims", auth: "Bearer " + valid, device: "EV-101", wantStatus: 200, wantBody: `ok device "EV-101"`},
		{name: "a lower-case scheme passes", auth: "bearer " + valid, device: "EV-101", wantStatus: 200},
		{name: "a valid token out of scope is forbidden", auth: "Bearer " + valid, device: "EV-102", wantStatus: 403, wantChallenge: `error="insufficient_scope"`, wantBody: `does not cover device "EV-102"`},
		{name: "no token is unauthorized with a bare challenge", wantStatus: 401, wantChallenge: `Bearer realm="fleetingest"`},
		{name: "another scheme is unauthorized", auth: "Basic YWRhOnNlY3JldA==", wantStatus: 401, wantChallenge: `error="invalid_token"`},
		{name: "an expired token is unauthorized and says so", auth: "Bearer " + expired, wantStatus: 401, wantChallenge: `error_description="token expired at`, wantBody: "token expired at"},
		{name: "a user token is unauthorized", auth: "Bearer " + userToken, wantStatus: 401, wantChallenge: `error="invalid_token"`, wantBody: "not a device token"},
		{name: "garbage is unauthorized", auth: "Bearer " + strings.Repeat("x", 5000), wantStatus: 401, wantChallenge: `error="invalid_token"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/v1/meter?device="+tc.device, http.NoBody)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.wantStatus)
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, tc.wantChallenge) || (tc.wantChallenge == "") != (got == "") {
				t.Fatalf("WWW-Authenticate %q, want it to hold %q", got, tc.wantChallenge)
			}
			if !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Fatalf("body %q, want it to hold %q", w.Body, tc.wantBody)
			}
			if w.Body.Len() > 300 {
				t.Fatalf("body of %d bytes echoes the request", w.Body.Len())
			}
		})
	}
}

func TestDeviceMiddlewareHandsRefusalsToOnError(t *testing.T) {
	f := newDeviceFixture(t)
	var got *Error
	h := DeviceMiddleware(f.verifier, func(w http.ResponseWriter, _ *http.Request, err *Error) {
		got = err
		WriteChallenge(w, err)
		w.WriteHeader(err.HTTPStatus())
		_, _ = io.WriteString(w, `{"error":"`+string(err.Reason)+`"}`)
	}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("next called for a refused request") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", http.NoBody))
	if got == nil || got.Reason != ReasonMissing || w.Code != 401 || w.Body.String() != `{"error":"missing"}` {
		t.Fatalf("onError got %v; answered %d %s", got, w.Code, w.Body)
	}
}

func TestDeviceFromContextWithoutMiddleware(t *testing.T) {
	if _, ok := DeviceFromContext(t.Context()); ok {
		t.Fatal("claims in a bare context")
	}
}
