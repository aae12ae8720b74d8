package auth

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// userFixture is a local user verifier over one key folder with a settable clock.
type userFixture struct {
	keys     keyDir
	keySet   *KeySet
	revoked  *Revocations
	clock    *clock
	verifier *LocalUserVerifier
}

func newUserFixture(t testing.TB, mods ...func(*LocalUserConfig)) userFixture {
	t.Helper()
	f := userFixture{keys: newKeyDir(t), revoked: newTestRevocations(t), clock: newClock(t0)}
	f.keySet = newKeySet(t, f.keys.dir)
	cfg := LocalUserConfig{Keys: f.keySet, Revocations: f.revoked, Now: f.clock.Now}
	for _, m := range mods {
		m(&cfg)
	}
	v, err := NewLocalUserVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier = v
	return f
}

func (f userFixture) mint(t testing.TB, name string, role Role, ttl time.Duration) (string, UserClaims) {
	t.Helper()
	token, claims, err := f.keys.signer.UserToken(name, role, ttl, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return token, claims
}

func TestLocalUserVerifierAnswers(t *testing.T) {
	f := newUserFixture(t)
	devices := newKeyDir(t)
	viewer, _ := f.mint(t, "ada", RoleViewer, time.Hour)
	admin, _ := f.mint(t, "grace", RoleAdmin, time.Hour)
	shortLived, _ := f.mint(t, "ada", RoleViewer, time.Second)
	revoked, _ := f.mint(t, "ada", RoleViewer, time.Hour)
	revokedID, _, err := ParseUnverified(revoked)
	if err != nil {
		t.Fatal(err)
	}
	revokeInMemory(f.revoked, revokedID, t0.Add(time.Hour))
	deviceToken, _, err := devices.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	// A device token signed by a user key: the key is right, the kind is not.
	deviceOnUserKey, _, err := f.keys.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, _, err := f.keys.signer.WithIssuer(IssuerConfig{Issuer: "someone-else"}).UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	otherAudience, _, err := f.keys.signer.WithIssuer(IssuerConfig{Audience: "another-app"}).UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := newKeyDir(t).signer.UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour).Unix()
	base := map[string]any{"iss": DefaultIssuer, "aud": DefaultAudience, "sub": "ada", "exp": exp, "roles": []string{"admin"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range base {
			m[key] = val
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name      string
		token     string
		at        time.Time
		want      Reason
		wantName  string
		wantRoles []Role
	}{
		{name: "a viewer token is accepted", token: viewer, wantName: "ada", wantRoles: []Role{RoleViewer}},
		{name: "an admin token is accepted", token: admin, wantName: "grace", wantRoles: []Role{RoleAdmin}},
		{name: "an audience list including ours is accepted", token: signRaw(t, f.keys, "JWT", with("aud", []string{"x", DefaultAudience})), wantName: "ada", wantRoles: []Role{RoleAdmin}},
		{name: "unknown roles are dropped", token: signRaw(t, f.keys, "JWT", with("roles", []string{"root", "viewer", "viewer"})), wantName: "ada", wantRoles: []Role{RoleViewer}},
		{name: "no roles claim is accepted with no roles", token: signRaw(t, f.keys, "JWT", with("roles", nil)), wantName: "ada"},
		{name: "no token is missing", token: "", want: ReasonMissing},
		{name: "garbage is malformed", token: "x.y.z", want: ReasonMalformed},
		{name: "a tampered payload does not verify", token: withPayload(t, viewer, base), want: ReasonBadSignature},
		{name: "an unknown kid is refused", token: unknown, want: ReasonUnknownKey},
		{name: "a token at its expiry is expired (no leeway)", token: shortLived, at: t0.Add(time.Second), want: ReasonExpired},
		{name: "a token a moment before its expiry is accepted", token: shortLived, at: t0.Add(999 * time.Millisecond), wantName: "ada", wantRoles: []Role{RoleViewer}},
		{name: "a revoked token is refused", token: revoked, want: ReasonRevoked},
		{name: "a device token is the wrong kind", token: deviceToken, want: ReasonWrongKind},
		{name: "a device token signed by a user key is the wrong kind", token: deviceOnUserKey, want: ReasonWrongKind},
		{name: "a JWT-typed token with a scope is the wrong kind", token: signRaw(t, f.keys, "JWT", with("scope", map[string]string{"prefix": ""})), want: ReasonWrongKind},
		{name: "a token without typ is the wrong kind", token: signRaw(t, f.keys, "", base), want: ReasonWrongKind},
		{name: "another issuer is refused", token: otherIssuer, want: ReasonInvalidClaims},
		{name: "another audience is refused", token: otherAudience, want: ReasonInvalidClaims},
		{name: "a token without subject is refused", token: signRaw(t, f.keys, "JWT", with("sub", nil)), want: ReasonInvalidClaims},
		{name: "a token not valid yet is refused", token: signRaw(t, f.keys, "JWT", with("nbf", t0.Add(time.Minute).Unix())), want: ReasonInvalidClaims},
		{name: "a token without expiry is malformed", token: signRaw(t, f.keys, "JWT", with("exp", nil)), want: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = t0
			}
			f.clock.set(at)
			claims, err := f.verifier.VerifyUser(t.Context(), tc.token)
			assertReason(t, err, tc.want, tc.token)
			if tc.want != "" {
				return
			}
			if claims.Name != tc.wantName || !slices.Equal(claims.Roles, tc.wantRoles) || claims.Expiry.IsZero() {
				t.Fatalf("claims %+v, want name %q roles %v", claims, tc.wantName, tc.wantRoles)
			}
		})
	}
}

func TestLocalUserVerifierCachesVerifiedTokens(t *testing.T) {
	f := newUserFixture(t)
	token, claims := f.mint(t, "ada", RoleAdmin, time.Minute)
	for range 50 {
		c, err := f.verifier.VerifyUser(t.Context(), token)
		if err != nil {
			t.Fatal(err)
		}
		c.Roles[0] = RoleViewer // a caller scribbling on its copy changes nothing cached
	}
	if got := f.verifier.signatureChecks.Load(); got != 1 {
		t.Fatalf("%d signature checks, want 1", got)
	}
	c, err := f.verifier.VerifyUser(t.Context(), token)
	if err != nil || !c.Has(RoleAdmin) {
		t.Fatalf("claims %+v, %v: the cached roles changed", c, err)
	}
	f.clock.set(claims.Expiry)
	_, err = f.verifier.VerifyUser(t.Context(), token)
	assertReason(t, err, ReasonExpired, token)
}

func TestLocalUserVerifierReadsACustomRolesClaim(t *testing.T) {
	tests := []struct {
		name   string
		claim  string
		issuer IssuerConfig
	}{
		{name: "a top-level claim of another name", claim: "groups"},
		{name: "a dotted path into nested objects", claim: "realm_access.roles"},
		{name: "another issuer and audience", claim: "roles", issuer: IssuerConfig{Issuer: "https://id.example", Audience: "analytics"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newUserFixture(t, func(c *LocalUserConfig) {
				c.RolesClaim = tc.claim
				c.Issuer, c.Audience = tc.issuer.Issuer, tc.issuer.Audience
			})
			ic := tc.issuer
			ic.RolesClaim = tc.claim
			token, _, err := f.keys.signer.WithIssuer(ic).UserToken("ada", RoleAdmin, time.Hour, t0)
			if err != nil {
				t.Fatal(err)
			}
			c, err := f.verifier.VerifyUser(t.Context(), token)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Has(RoleAdmin) {
				t.Fatalf("roles %v, want admin", c.Roles)
			}
		})
	}
}

func TestRolesAt(t *testing.T) {
	tests := []struct {
		name   string
		claims string
		path   string
		want   []Role
	}{
		{name: "an array of strings", claims: `{"roles":["viewer","admin"]}`, path: "roles", want: []Role{RoleViewer, RoleAdmin}},
		{name: "one string", claims: `{"roles":"admin"}`, path: "roles", want: []Role{RoleAdmin}},
		{name: "a space-separated string", claims: `{"roles":"openid viewer"}`, path: "roles", want: []Role{RoleViewer}},
		{name: "a dotted path", claims: `{"realm_access":{"roles":["offline_access","admin"]}}`, path: "realm_access.roles", want: []Role{RoleAdmin}},
		{name: "a claim whose name holds a dot", claims: `{"realm_access.roles":["viewer"]}`, path: "realm_access.roles", want: []Role{RoleViewer}},
		{name: "a path through a non-object", claims: `{"realm_access":"admin"}`, path: "realm_access.roles"},
		{name: "a missing claim", claims: `{}`, path: "roles"},
		{name: "non-string members are skipped", claims: `{"roles":[1,{"a":"admin"},"viewer"]}`, path: "roles", want: []Role{RoleViewer}},
		{name: "names are case-sensitive", claims: `{"roles":["Admin"]}`, path: "roles"},
		{name: "a number", claims: `{"roles":3}`, path: "roles"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.claims), &m); err != nil {
				t.Fatal(err)
			}
			if got := rolesAt(m, tc.path); !slices.Equal(got, tc.want) {
				t.Fatalf("roles %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUserClaimsHas(t *testing.T) {
	tests := []struct {
		name  string
		roles []Role
		want  Role
		has   bool
	}{
		{name: "a viewer may view", roles: []Role{RoleViewer}, want: RoleViewer, has: true},
		{name: "a viewer may not administer", roles: []Role{RoleViewer}, want: RoleAdmin},
		{name: "an admin may administer", roles: []Role{RoleAdmin}, want: RoleAdmin, has: true},
		{name: "an admin may view", roles: []Role{RoleAdmin}, want: RoleViewer, has: true},
		{name: "no roles may do nothing", want: RoleViewer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (UserClaims{Roles: tc.roles}).Has(tc.want); got != tc.has {
				t.Fatalf("%v has %s = %v, want %v", tc.roles, tc.want, got, tc.has)
			}
		})
	}
}

func TestUserTokenRefusesBadRequests(t *testing.T) {
	k := newKeyDir(t)
	tests := []struct {
		name     string
		userName string
		role     Role
		ttl      time.Duration
	}{
		{name: "an empty name", userName: "", role: RoleViewer, ttl: time.Hour},
		{name: "an unknown role", userName: "ada", role: "root", ttl: time.Hour},
		{name: "a zero ttl", userName: "ada", role: RoleViewer, ttl: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := k.signer.UserToken(tc.userName, tc.role, tc.ttl, t0); err == nil {
				t.Fatal("minted, want an error")
			}
		})
	}
}
