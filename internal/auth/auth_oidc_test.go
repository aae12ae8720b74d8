package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is an OpenID Connect issuer: discovery, a JWKS that can rotate, and tokens.
type testIssuer struct {
	t   *testing.T
	srv *httptest.Server
	up  atomic.Bool

	mu        sync.Mutex
	published []jose.JSONWebKey // public keys in the JWKS
	signers   map[string]jose.Signer
	jwksGets  int
}

func newTestIssuer(t *testing.T) *testIssuer {
	iss := &testIssuer{t: t, signers: map[string]jose.Signer{}}
	iss.up.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		if !iss.up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss.srv.URL,
			"authorization_endpoint":                iss.srv.URL + "/auth",
			"token_endpoint":                        iss.srv.URL + "/token",
			"jwks_uri":                              iss.srv.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		if !iss.up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		iss.mu.Lock()
		defer iss.mu.Unlock()
		iss.jwksGets++
		writeJSON(w, jose.JSONWebKeySet{Keys: slices.Clone(iss.published)})
	})
	iss.srv = httptest.NewServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// addKey makes a signing key; published puts it in the JWKS.
func (iss *testIssuer) addKey(kid string, published bool) {
	iss.t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		iss.t.Fatal(err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		iss.t.Fatal(err)
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.signers[kid] = s
	if published {
		iss.published = append(iss.published, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"})
	}
}

// unpublish removes kid from the JWKS; its signer stays to mint refused tokens.
func (iss *testIssuer) unpublish(kid string) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.published = slices.DeleteFunc(iss.published, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
}

// token signs claims (defaults: this issuer, audience "fleetingest", subject "ada", an
// hour from t0, role admin), overridden by over (a nil value removes a claim).
func (iss *testIssuer) token(kid string, over map[string]any) string {
	iss.t.Helper()
	claims := map[string]any{
		"iss":   iss.srv.URL,
		"aud":   "fleetingest",
		"sub":   "ada",
		"iat":   t0.Unix(),
		"exp":   t0.Add(time.Hour).Unix(),
		"roles": []string{"admin"},
	}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		iss.t.Fatal(err)
	}
	iss.mu.Lock()
	s := iss.signers[kid]
	iss.mu.Unlock()
	jws, err := s.Sign(payload)
	if err != nil {
		iss.t.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		iss.t.Fatal(err)
	}
	return token
}

func newOIDCVerifier(t *testing.T, iss *testIssuer, c *clock, mods ...func(*OIDCConfig)) *OIDCVerifier {
	t.Helper()
	cfg := OIDCConfig{IssuerURL: iss.srv.URL, Audience: "fleetingest", HTTPClient: iss.srv.Client(), Now: c.Now, Logger: quiet}
	for _, m := range mods {
		m(&cfg)
	}
	v, err := NewOIDCVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOIDCVerifierAnswers(t *testing.T) {
	iss := newTestIssuer(t)
	iss.addKey("k1", true)
	iss.addKey("unpublished", false)
	other := newTestIssuer(t)
	other.addKey("k1", true) // same kid, another key
	c := newClock(t0)
	v := newOIDCVerifier(t, iss, c)
	devices := newKeyDir(t)
	deviceToken, _, err := devices.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	localUser, _, err := newKeyDir(t).signer.UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		token     string
		at        time.Time
		want      Reason
		wantRoles []Role
	}{
		{name: "a valid token is accepted", token: iss.token("k1", nil), wantRoles: []Role{RoleAdmin}},
		{name: "roles as one string are read", token: iss.token("k1", map[string]any{"roles": "viewer"}), wantRoles: []Role{RoleViewer}},
		{name: "an OAuth scope string is not a device scope", token: iss.token("k1", map[string]any{"scope": "openid profile"}), wantRoles: []Role{RoleAdmin}},
		{name: "a token from another issuer is refused", token: other.token("k1", nil), want: ReasonInvalidClaims},
		{name: "a token claiming this issuer but signed by another is refused", token: other.token("k1", map[string]any{"iss": iss.srv.URL}), want: ReasonBadSignature},
		{name: "a token for another audience is refused", token: iss.token("k1", map[string]any{"aud": "another-app"}), want: ReasonInvalidClaims},
		{name: "an expired token is refused", token: iss.token("k1", nil), at: t0.Add(2 * time.Hour), want: ReasonExpired},
		{name: "a token at its expiry is refused (no leeway)", token: iss.token("k1", nil), at: t0.Add(time.Hour), want: ReasonExpired},
		{name: "a token a second before its expiry is accepted", token: iss.token("k1", nil), at: t0.Add(time.Hour - time.Second), wantRoles: []Role{RoleAdmin}},
		{name: "a token signed by a key the issuer does not publish is refused", token: iss.token("unpublished", nil), want: ReasonBadSignature},
		{name: "a tampered token is refused", token: withPayload(t, iss.token("k1", nil), map[string]any{"iss": iss.srv.URL, "aud": "fleetingest", "sub": "eve", "exp": t0.Add(time.Hour).Unix(), "roles": []string{"admin"}}), want: ReasonBadSignature},
		{name: "a device token is the wrong kind", token: deviceToken, want: ReasonWrongKind},
		{name: "a token with a device scope is the wrong kind", token: iss.token("k1", map[string]any{"scope": map[string]string{"prefix": ""}}), want: ReasonWrongKind},
		{name: "a local user token is refused", token: localUser, want: ReasonInvalidClaims},
		{name: "a token without subject is refused", token: iss.token("k1", map[string]any{"sub": nil}), want: ReasonInvalidClaims},
		{name: "garbage is malformed", token: "a.b.c", want: ReasonMalformed},
		{name: "no token is missing", token: "", want: ReasonMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = t0
			}
			c.set(at)
			claims, err := v.VerifyUser(t.Context(), tc.token)
			assertReason(t, err, tc.want, tc.token)
			if tc.want != "" {
				return
			}
			if claims.Name != "ada" || !slices.Equal(claims.Roles, tc.wantRoles) {
				t.Fatalf("claims %+v, want ada with %v", claims, tc.wantRoles)
			}
		})
	}
}

func TestOIDCVerifierReadsRolesAtADottedPath(t *testing.T) {
	iss := newTestIssuer(t)
	iss.addKey("k1", true)
	v := newOIDCVerifier(t, iss, newClock(t0), func(c *OIDCConfig) { c.RolesClaim = "realm_access.roles" })
	token := iss.token("k1", map[string]any{"roles": nil, "realm_access": map[string]any{"roles": []string{"offline_access", "viewer"}}})
	claims, err := v.VerifyUser(t.Context(), token)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(claims.Roles, []Role{RoleViewer}) {
		t.Fatalf("roles %v, want [viewer]", claims.Roles)
	}
}

func TestOIDCVerifierFollowsTheIssuersKeyRotation(t *testing.T) {
	iss := newTestIssuer(t)
	iss.addKey("k1", true)
	v := newOIDCVerifier(t, iss, newClock(t0))
	if _, err := v.VerifyUser(t.Context(), iss.token("k1", nil)); err != nil {
		t.Fatal(err)
	}
	// The issuer rotates: a new key is published and the old one withdrawn. A token of the
	// new key makes the verifier fetch the keys again. (go-oidc may hand a request that
	// arrives just as a fetch completes that fetch's result, hence the short wait.)
	iss.addKey("k2", true)
	iss.unpublish("k1")
	eventually(t, time.Second, "a token of the new key verifies", func() bool {
		_, err := v.VerifyUser(t.Context(), iss.token("k2", nil))
		return err == nil
	})
	fetches := func() int {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		return iss.jwksGets
	}
	before := fetches()
	for range 5 {
		if _, err := v.VerifyUser(t.Context(), iss.token("k2", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fetches(); got != before {
		t.Fatalf("%d key set fetches for tokens of a known key, want the keys cached", got-before)
	}
}

func TestOIDCVerifierWaitsForAnIssuerThatIsDownAtStart(t *testing.T) {
	iss := newTestIssuer(t)
	iss.addKey("k1", true)
	iss.up.Store(false)
	c := newClock(t0)
	v := newOIDCVerifier(t, iss, c, func(cfg *OIDCConfig) { cfg.DiscoveryRetry = 10 * time.Second })
	if err := v.Ready(t.Context()); err == nil {
		t.Fatal("ready while the issuer is down")
	}
	token := iss.token("k1", nil)
	_, err := v.VerifyUser(t.Context(), token)
	assertReason(t, err, ReasonUnavailable, token)

	iss.up.Store(true)
	// Within the retry interval discovery is not tried again.
	_, err = v.VerifyUser(t.Context(), token)
	assertReason(t, err, ReasonUnavailable, token)
	c.advance(10 * time.Second)
	if _, err := v.VerifyUser(t.Context(), token); err != nil {
		t.Fatalf("after the issuer came up: %v", err)
	}
	if err := v.Ready(t.Context()); err != nil {
		t.Fatalf("not ready once discovered: %v", err)
	}
	// Once discovered, the issuer going down leaves known keys usable.
	iss.up.Store(false)
	if _, err := v.VerifyUser(t.Context(), token); err != nil {
		t.Fatalf("with the issuer down after discovery: %v", err)
	}
}

func TestNewOIDCVerifierNeedsAnIssuer(t *testing.T) {
	if _, err := NewOIDCVerifier(t.Context(), OIDCConfig{Logger: quiet}); err == nil {
		t.Fatal("made a verifier without an issuer URL")
	}
}
