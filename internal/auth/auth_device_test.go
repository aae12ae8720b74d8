package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDeviceVerifierAnswers(t *testing.T) {
	f := newDeviceFixture(t)
	other := newKeyDir(t) // a key the verifier does not know
	users := newKeyDir(t) // a user key folder
	valid, validClaims := f.mint(t, DeviceScope("EV-101"), time.Hour)

	// A second key under the same kid as the verifier's: its signatures do not verify.
	impostor := newKeyDir(t)
	if err := os.Rename(filepath.Join(impostor.dir, impostor.kid+privateKeySuffix), filepath.Join(impostor.dir, f.keys.kid+privateKeySuffix)); err != nil {
		t.Fatal(err)
	}
	impostorSigner, err := LoadSigner(filepath.Join(impostor.dir, f.keys.kid+privateKeySuffix))
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := impostorSigner.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := other.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	userToken, _, err := users.signer.UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	// A user token signed by a device key: the key is right, the kind is not.
	userOnDeviceKey, _, err := f.keys.signer.UserToken("ada", RoleAdmin, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour).Unix()
	noScope := signRaw(t, f.keys, DeviceTokenType, map[string]any{"jti": "j1", "exp": exp})
	noExpiry := signRaw(t, f.keys, DeviceTokenType, map[string]any{"jti": "j1", "scope": map[string]string{"device": "EV-101"}})
	noID := signRaw(t, f.keys, DeviceTokenType, map[string]any{"exp": exp, "scope": map[string]string{"device": "EV-101"}})
	twoScopes := signRaw(t, f.keys, DeviceTokenType, map[string]any{"jti": "j1", "exp": exp, "scope": map[string]string{"device": "EV-101", "prefix": ""}})
	shortLived, _ := f.mint(t, PrefixScope("site-7."), time.Second)
	revoked, revokedClaims := f.mint(t, DeviceScope("EV-102"), time.Hour)
	revokeInMemory(f.revoked, revokedClaims.ID, revokedClaims.Expiry)
	header := strings.Split(valid, ".")[0]

	tests := []struct {
		name  string
		token string
		at    time.Time
		want  Reason
	}{
		{name: "a valid token is accepted", token: valid, at: t0},
		{name: "no token is missing", token: "", want: ReasonMissing},
		{name: "a token of two parts is malformed", token: "abc.def", want: ReasonMalformed},
		{name: "a token of four parts is malformed", token: valid + ".x", want: ReasonMalformed},
		{name: "a token that is not base64url is malformed", token: "!!!.###.$$$", want: ReasonMalformed},
		{name: "a header that is not JSON is malformed", token: b64("{not json") + "." + b64(`{"jti":"x"}`) + ".c2ln", want: ReasonMalformed},
		{name: "payload that is not JSON is malformed", token: header + "." + b64("not json") + "." + strings.Split(valid, ".")[2], want: ReasonMalformed},
		{name: "an unsigned token (alg none) is malformed", token: b64(`{"alg":"none","typ":"fleetingest-device+jwt"}`) + "." + strings.Split(valid, ".")[1] + ".", want: ReasonMalformed},
		{name: "an HMAC token is malformed", token: b64(`{"alg":"HS256","kid":"`+f.keys.kid+`","typ":"fleetingest-device+jwt"}`) + "." + strings.Split(valid, ".")[1] + ".c2ln", want: ReasonMalformed},
		{name: "a token longer than the bound is malformed", token: valid + strings.Repeat("A", maxTokenLen), want: ReasonMalformed},
		{name: "a tampered payload does not verify", token: withPayload(t, valid, map[string]any{"jti": validClaims.ID, "exp": exp, "scope": map[string]string{"prefix": ""}}), want: ReasonBadSignature},
		{name: "a tampered signature does not verify", token: valid[:len(valid)-4] + "AAAA", want: ReasonBadSignature},
		{name: "another key under the same kid does not verify", token: forged, want: ReasonBadSignature},
		{name: "an unknown kid is refused", token: unknown, want: ReasonUnknownKey},
		{name: "a token at its expiry is expired (no leeway)", token: shortLived, at: t0.Add(time.Second), want: ReasonExpired},
		{name: "a token a moment before its expiry is accepted", token: shortLived, at: t0.Add(999 * time.Millisecond)},
		{name: "a token long after its expiry is expired", token: valid, at: t0.Add(2 * time.Hour), want: ReasonExpired},
		{name: "a revoked token is refused", token: revoked, want: ReasonRevoked},
		{name: "a user token is the wrong kind", token: userToken, want: ReasonWrongKind},
		{name: "a user token signed by a device key is the wrong kind", token: userOnDeviceKey, want: ReasonWrongKind},
		{name: "a device-typed token without scope is the wrong kind", token: noScope, want: ReasonWrongKind},
		{name: "a token without expiry is malformed", token: noExpiry, want: ReasonMalformed},
		{name: "a token without id is malformed", token: noID, want: ReasonMalformed},
		{name: "a scope naming both a device and a prefix is malformed", token: twoScopes, want: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at.IsZero() {
				at = t0
			}
			f.clock.set(at)
			claims, err := f.verifier.Verify(tc.token)
			assertReason(t, err, tc.want, tc.token)
			if tc.want == "" && (claims.ID == "" || claims.KeyID != f.keys.kid || claims.Expiry.IsZero()) {
				t.Fatalf("accepted with incomplete claims %+v", claims)
			}
		})
	}
}

func TestDeviceVerifierMessagesNameTheReason(t *testing.T) {
	f := newDeviceFixture(t)
	token, claims := f.mint(t, DeviceScope("EV-101"), time.Hour)
	other := newKeyDir(t)
	unknown, _, err := other.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  string
	}{
		{name: "expiry names the instant", token: token, at: claims.Expiry, want: "token expired at 2026-12-03T11:00:00Z"},
		{name: "an unknown key is named", token: unknown, at: t0, want: fmt.Sprintf("token signed by unknown key %q", other.kid)},
		{name: "a bad signature says so", token: token[:len(token)-4] + "AAAA", at: t0, want: "token signature does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.set(tc.at)
			_, err := f.verifier.Verify(tc.token)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	revokeInMemory(f.revoked, claims.ID, claims.Expiry)
	f.clock.set(t0)
	if _, err := f.verifier.Verify(token); err == nil || err.Error() != "token revoked" {
		t.Fatalf("got %v, want token revoked", err)
	}
}

func TestScopeAllows(t *testing.T) {
	tests := []struct {
		name   string
		scope  Scope
		device string
		want   bool
	}{
		{name: "a device scope allows its own id", scope: DeviceScope("EV-101"), device: "EV-101", want: true},
		{name: "a device scope refuses another id", scope: DeviceScope("EV-101"), device: "EV-1010"},
		{name: "a device scope refuses a prefix of its id", scope: DeviceScope("EV-101"), device: "EV-10"},
		{name: "a prefix scope allows an id starting with it", scope: PrefixScope("site-7."), device: "site-7.meter-3", want: true},
		{name: "a prefix scope refuses an id not starting with it", scope: PrefixScope("site-7."), device: "site-8.meter-3"},
		{name: "a prefix scope allows the prefix itself", scope: PrefixScope("site-7."), device: "site-7.", want: true},
		{name: "the empty prefix allows every id", scope: PrefixScope(""), device: "anything-at-all", want: true},
		{name: "the zero scope allows nothing", scope: Scope{}, device: "EV-101"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.scope.Allows(tc.device); got != tc.want {
				t.Fatalf("%s allows %q = %v, want %v", tc.scope, tc.device, got, tc.want)
			}
		})
	}
}

func TestDeviceTokenScopeSurvivesTheRoundTrip(t *testing.T) {
	f := newDeviceFixture(t)
	tests := []struct {
		name    string
		scope   Scope
		device  string
		allowed bool
		str     string
	}{
		{name: "a device scope covers the device", scope: DeviceScope("EV-101"), device: "EV-101", allowed: true, str: `device "EV-101"`},
		{name: "a device scope does not cover another device", scope: DeviceScope("EV-101"), device: "EV-102", str: `device "EV-101"`},
		{name: "a prefix scope covers a device under it", scope: PrefixScope("site-7."), device: "site-7.m1", allowed: true, str: `prefix "site-7."`},
		{name: "a prefix scope does not cover a device elsewhere", scope: PrefixScope("site-7."), device: "site-70.m1", str: `prefix "site-7."`},
		{name: "the empty prefix covers every device", scope: PrefixScope(""), device: "EV-999", allowed: true, str: "every device"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token, _ := f.mint(t, tc.scope, time.Hour)
			claims, err := f.verifier.Verify(token)
			if err != nil {
				t.Fatal(err)
			}
			if claims.Scope != tc.scope || claims.Scope.String() != tc.str {
				t.Fatalf("scope %v (%s), want %v (%s)", claims.Scope, claims.Scope, tc.scope, tc.str)
			}
			err = claims.Authorize(tc.device)
			if tc.allowed {
				assertReason(t, err, "", token)
			} else {
				assertReason(t, err, ReasonOutOfScope, token)
			}
		})
	}
}

func TestDeviceTokenRefusesBadRequests(t *testing.T) {
	k := newKeyDir(t)
	tests := []struct {
		name  string
		scope Scope
		ttl   time.Duration
	}{
		{name: "a zero ttl", scope: DeviceScope("EV-101"), ttl: 0},
		{name: "a negative ttl", scope: DeviceScope("EV-101"), ttl: -time.Second},
		{name: "the zero scope", scope: Scope{}, ttl: time.Hour},
		{name: "an empty device id", scope: DeviceScope(""), ttl: time.Hour},
		{name: "a device id with a space", scope: DeviceScope("EV 101"), ttl: time.Hour},
		{name: "a prefix starting with a dot", scope: PrefixScope(".x"), ttl: time.Hour},
		{name: "a device id longer than the grammar allows", scope: DeviceScope(strings.Repeat("a", 65)), ttl: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := k.signer.DeviceToken(tc.scope, tc.ttl, t0); err == nil {
				t.Fatal("minted, want an error")
			}
		})
	}
}

func TestDeviceTokenLifetimeIsRoundedUpToWholeSeconds(t *testing.T) {
	k := newKeyDir(t)
	tests := []struct {
		name    string
		now     time.Time
		ttl     time.Duration
		wantIat time.Time
		wantExp time.Time
	}{
		{name: "one second from a whole second", now: t0, ttl: time.Second, wantIat: t0, wantExp: t0.Add(time.Second)},
		{name: "one second from mid-second", now: t0.Add(300 * time.Millisecond), ttl: time.Second, wantIat: t0, wantExp: t0.Add(2 * time.Second)},
		{name: "half a second lasts at least that", now: t0, ttl: 500 * time.Millisecond, wantIat: t0, wantExp: t0.Add(time.Second)},
		{name: "a day", now: t0, ttl: 24 * time.Hour, wantIat: t0, wantExp: t0.Add(24 * time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c, err := k.signer.DeviceToken(DeviceScope("EV-101"), tc.ttl, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if !c.IssuedAt.Equal(tc.wantIat) || !c.Expiry.Equal(tc.wantExp) {
				t.Fatalf("iat %s exp %s, want %s %s", c.IssuedAt, c.Expiry, tc.wantIat, tc.wantExp)
			}
		})
	}
}

func TestDeviceTokenIDsAreUnique(t *testing.T) {
	k := newKeyDir(t)
	seen := map[string]bool{}
	for range 1000 {
		_, c, err := k.signer.DeviceToken(DeviceScope("EV-101"), time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] || len(c.ID) != 22 {
			t.Fatalf("id %q repeated or not 128 bits", c.ID)
		}
		seen[c.ID] = true
	}
}
