package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/internal/auth"
	"github.com/fleetingest/fleetingest/test/mountedsecret"
)

// otherSigner returns a signer of a new key; with kid set, the new key is filed under that
// key id (a forged token naming a real key).
func otherSigner(t *testing.T, kid string) *auth.Signer {
	t.Helper()
	dir := t.TempDir()
	newKid, err := auth.GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, newKid+".key")
	if kid != "" {
		renamed := filepath.Join(t.TempDir(), kid+".key")
		if err := os.Rename(path, renamed); err != nil {
			t.Fatal(err)
		}
		path = renamed
	}
	s, err := auth.LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tampered returns token with its claims changed and its signature kept.
func tampered(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["scope"] = map[string]string{"prefix": ""}
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestGatewayRefusesEveryBadTokenWith401AndWritesNothing(t *testing.T) {
	e := newEnv(t, envOptions{auth: true})
	now := time.Now()
	scopeAll := auth.PrefixScope("")

	expired, _, err := e.signer.DeviceToken(scopeAll, time.Second, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	userToken, _, err := e.signer.UserToken("alice", auth.RoleAdmin, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	revoked, claims, err := e.signer.DeviceToken(scopeAll, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Revoke(t.Context(), e.revoked, claims.ID, claims.Expiry); err != nil {
		t.Fatal(err)
	}
	forged, _, err := otherSigner(t, e.signer.KeyID()).DeviceToken(scopeAll, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := otherSigner(t, "").DeviceToken(scopeAll, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	narrow := e.mint(auth.DeviceScope("meter-9"), time.Hour)

	tests := []struct {
		name, authorization, message string
	}{
		{"no token", "", "no bearer token"},
		{"another scheme", "Basic dXNlcjpwYXNz", "not a bearer token"},
		{"an empty bearer", "Bearer ", "token"},
		{"a token that is not a JWT", "Bearer not-a-token", "not a JWT"},
		{"a tampered token", "Bearer " + tampered(t, narrow), "signature does not verify"},
		{"a token signed by another key under a known key id", "Bearer " + forged, "signature does not verify"},
		{"a token of an unknown key", "Bearer " + unknown, "unknown key"},
		{"an expired token", "Bearer " + expired, "expired"},
		{"a revoked token", "Bearer " + revoked, "revoked"},
		{"a user token", "Bearer " + userToken, "not a device token"},
	}
	paths := []struct{ path, contentType, body string }{
		{gateway.PathTelemetry, "application/json", meterJSON("meter-9", now)},
		{gateway.PathTelemetryBatch, "application/x-ndjson", meterJSON("meter-9", now) + "\n" + vehicleJSON("ev-9", now)},
	}
	for _, tt := range tests {
		for _, p := range paths {
			t.Run(tt.name+" on "+p.path, func(t *testing.T) {
				h := http.Header{}
				if tt.authorization != "" {
					h.Set("Authorization", tt.authorization)
				}
				var a answer
				// The revocation reaches the gateway's copy through the bucket's watch.
				deadline := time.Now().Add(time.Second)
				for {
					a = e.postHeaders(t.Context(), p.path, p.contentType, p.body, h)
					if a.code != http.StatusAccepted || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if a.code != http.StatusUnauthorized {
					t.Fatalf("HTTP %d, want 401: %s", a.code, a.body)
				}
				if !strings.HasPrefix(a.challenge, "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", a.challenge)
				}
				s := parseStatus(t, a.body)
				if s.Code != 16 || !strings.Contains(s.Message, tt.message) {
					t.Errorf("answer %s, want code 16 (UNAUTHENTICATED) saying %q", a.body, tt.message)
				}
			})
		}
	}
	if msgs, readings := e.published(); msgs != 0 || readings != 0 {
		t.Errorf("refused requests published %d messages (%d readings)", msgs, readings)
	}
}

func TestGatewayRefusesReadingsOutsideTheTokensScope(t *testing.T) {
	e := newEnv(t, envOptions{auth: true})
	now := time.Now().Truncate(time.Second)
	site := e.mint(auth.PrefixScope("site-7."), time.Hour)
	device := e.mint(auth.DeviceScope("EV-1"), time.Hour)
	withToken := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

	for _, tc := range []struct {
		name, token, body string
		code              int
	}{
		{"a device token for its own vehicle", device, vehicleJSON("EV-1", now), 202},
		{"a device token for a meter of the same id", device, meterJSON("EV-1", now.Add(time.Second)), 202},
		{"a device token for another device", device, vehicleJSON("EV-2", now), 403},
		{"a device token for a longer id", device, vehicleJSON("EV-10", now), 403},
		{"a prefix token for a device under it", site, meterJSON("site-7.m1", now), 202},
		{"a prefix token for a device outside it", site, meterJSON("site-8.m1", now), 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.postHeaders(t.Context(), gateway.PathTelemetry, "application/json", tc.body, withToken(tc.token))
			if a.code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", a.code, tc.code, a.body)
			}
			if tc.code == 403 {
				if s := parseStatus(t, a.body); s.Code != 7 || !strings.Contains(s.Message, "does not cover device") {
					t.Errorf("answer %s, want code 7 (PERMISSION_DENIED) naming the device", a.body)
				}
			}
		})
	}

	t.Run("a batch accepts the readings in scope and refuses each other one", func(t *testing.T) {
		body := strings.Join([]string{
			meterJSON("site-7.m2", now), meterJSON("site-9.m2", now), vehicleJSON("site-7.ev", now), vehicleJSON("EV-3", now),
		}, "\n")
		a := e.postHeaders(t.Context(), gateway.PathTelemetryBatch, "application/x-ndjson", body, withToken(site))
		if a.code != 202 {
			t.Fatalf("HTTP %d: %s", a.code, a.body)
		}
		var res struct {
			Accepted int `json:"accepted"`
			Rejected []struct {
				Index int       `json:"index"`
				Error rpcStatus `json:"error"`
			} `json:"rejected"`
		}
		if err := json.Unmarshal(a.body, &res); err != nil {
			t.Fatal(err)
		}
		if res.Accepted != 2 || len(res.Rejected) != 2 || res.Rejected[0].Index != 1 || res.Rejected[1].Index != 3 ||
			res.Rejected[0].Error.Code != 7 || res.Rejected[1].Error.Code != 7 {
			t.Fatalf("answer %s, want 2 accepted and items 1 and 3 refused with code 7", a.body)
		}
	})

	for id, want := range map[string]int{"EV-1": 1, "site-7.m1": 1, "site-7.m2": 1, "site-7.ev": 1, "EV-2": 0, "EV-10": 0, "site-8.m1": 0, "site-9.m2": 0, "EV-3": 0} {
		_, meters, vehicles := e.find(id)
		got := len(meters) + len(vehicles)
		if id == "EV-1" {
			want = 2 // the vehicle and the meter of that id
		}
		if got != want {
			t.Errorf("%s: %d readings published, want %d", id, got, want)
		}
	}
}

func TestGatewayRefusesATokenFromTheSecondItExpires(t *testing.T) {
	e := newEnv(t, envOptions{auth: true})
	token, claims, err := e.signer.DeviceToken(auth.DeviceScope("meter-1"), time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + token}}
	if a := e.postHeaders(t.Context(), gateway.PathTelemetry, "", meterJSON("meter-1", time.Now()), h); a.code != 202 {
		t.Fatalf("a fresh 1 s token: HTTP %d: %s", a.code, a.body)
	}
	time.Sleep(time.Until(claims.Expiry))
	a := e.postHeaders(t.Context(), gateway.PathTelemetry, "", meterJSON("meter-1", time.Now()), h)
	if a.code != 401 || !strings.Contains(string(a.body), "expired") {
		t.Fatalf("at its expiry: HTTP %d %s, want 401 expired", a.code, a.body)
	}
	if _, meters, _ := e.find("meter-1"); len(meters) != 1 {
		t.Errorf("%d readings published, want the one sent before expiry", len(meters))
	}
}

func TestGatewayRefusesARevokedTokenWithinOneSecond(t *testing.T) {
	e := newEnv(t, envOptions{auth: true})
	token, claims, err := e.signer.DeviceToken(auth.DeviceScope("meter-1"), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + token}}
	if a := e.postHeaders(t.Context(), gateway.PathTelemetry, "", meterJSON("meter-1", time.Now()), h); a.code != 202 {
		t.Fatalf("before revocation: HTTP %d: %s", a.code, a.body)
	}
	revokedAt := time.Now()
	if err := auth.Revoke(t.Context(), e.revoked, claims.ID, claims.Expiry); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		a := e.postHeaders(t.Context(), gateway.PathTelemetry, "", meterJSON("meter-1", time.Now().Add(time.Duration(i)*time.Microsecond)), h)
		if a.code == 401 {
			t.Logf("refused %s after the revocation", time.Since(revokedAt).Round(time.Millisecond))
			break
		}
		if time.Since(revokedAt) > time.Second {
			t.Fatalf("still HTTP %d a second after the revocation", a.code)
		}
	}
}

func TestGatewayFollowsAKeyRotationOfItsMountedSecret(t *testing.T) {
	e := newEnv(t, envOptions{auth: true})
	oldToken := e.mint(auth.PrefixScope(""), time.Hour)
	newDir := t.TempDir()
	newKid, err := auth.GenerateKey(newDir)
	if err != nil {
		t.Fatal(err)
	}
	newSigner, err := auth.LoadSigner(filepath.Join(newDir, newKid+".key"))
	if err != nil {
		t.Fatal(err)
	}
	newToken, _, err := newSigner.DeviceToken(auth.PrefixScope(""), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldPub := filepath.Join(t.TempDir(), e.signer.KeyID()+".pub")
	data, err := os.ReadFile(filepath.Join(e.keyDir, e.signer.KeyID()+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldPub, data, 0o600); err != nil {
		t.Fatal(err)
	}

	// Requests with the old key's token flow the whole time the folder changes.
	ctx, stop := context.WithCancel(t.Context())
	var sent, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			h := http.Header{"Authorization": {"Bearer " + oldToken}}
			for i := 0; ctx.Err() == nil; i++ {
				ts := time.Now().Add(-time.Duration(w*1_000_000+i) * time.Microsecond)
				a := e.postHeaders(ctx, gateway.PathTelemetry, "", meterJSON("meter-rot", ts), h)
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				if a.code != 202 {
					refused.Add(1)
				}
			}
		})
	}
	post := func(token string) int {
		return e.postHeaders(t.Context(), gateway.PathTelemetry, "", meterJSON("meter-new", time.Now()), http.Header{"Authorization": {"Bearer " + token}}).code
	}
	if code := post(newToken); code != 401 {
		t.Fatalf("the new key's token before it was published: HTTP %d, want 401", code)
	}

	mountedsecret.Publish(t, e.keyDir, mountedsecret.Files(t, oldPub, filepath.Join(newDir, newKid+".pub")))
	published := time.Now()
	for post(newToken) != 202 {
		if time.Since(published) > 2*time.Second {
			t.Fatal("the new key's token is still refused 2 s after the Secret listed it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("new key verifies %s after the swap", time.Since(published).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // both keys listed: the old one keeps working
	stop()
	wg.Wait()
	if sent.Load() == 0 || refused.Load() != 0 {
		t.Fatalf("%d of %d requests with the old key's token refused while it was listed", refused.Load(), sent.Load())
	}

	mountedsecret.Publish(t, e.keyDir, mountedsecret.Files(t, filepath.Join(newDir, newKid+".pub")))
	removed := time.Now()
	for post(oldToken) != 401 {
		if time.Since(removed) > 2*time.Second {
			t.Fatal("the old key's token is still accepted 2 s after the Secret dropped it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := post(newToken); code != 202 {
		t.Errorf("the new key's token after the old one went: HTTP %d", code)
	}
}
