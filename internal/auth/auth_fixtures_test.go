package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// t0 is the whole second the tests' clocks start at.
var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

var quiet = slog.New(slog.DiscardHandler)

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// keyDir is a folder with one generated key and its signer.
type keyDir struct {
	dir    string
	kid    string
	signer *Signer
}

func newKeyDir(t testing.TB) keyDir {
	t.Helper()
	dir := t.TempDir()
	kid, err := GenerateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(filepath.Join(dir, kid+privateKeySuffix))
	if err != nil {
		t.Fatal(err)
	}
	return keyDir{dir: dir, kid: kid, signer: s}
}

func newKeySet(t testing.TB, dir string) *KeySet {
	t.Helper()
	ks, err := NewKeySet(KeySetConfig{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func newTestRevocations(t testing.TB) *Revocations {
	t.Helper()
	r, err := NewRevocations(RevocationsConfig{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// revokeInMemory marks jti revoked without a bucket.
func revokeInMemory(r *Revocations, jti string, exp time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expiresAt[jti] = exp
}

// deviceFixture is a device verifier over one key folder with a settable clock.
type deviceFixture struct {
	keys     keyDir
	keySet   *KeySet
	revoked  *Revocations
	clock    *clock
	verifier *DeviceVerifier
}

func newDeviceFixture(t testing.TB, mods ...func(*DeviceVerifierConfig)) deviceFixture {
	t.Helper()
	f := deviceFixture{keys: newKeyDir(t), revoked: newTestRevocations(t), clock: newClock(t0)}
	f.keySet = newKeySet(t, f.keys.dir)
	cfg := DeviceVerifierConfig{Keys: f.keySet, Revocations: f.revoked, Now: f.clock.Now}
	for _, m := range mods {
		m(&cfg)
	}
	v, err := NewDeviceVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier = v
	return f
}

// mint returns a device token of scope valid for ttl from the fixture's clock.
func (f deviceFixture) mint(t testing.TB, scope Scope, ttl time.Duration) (string, DeviceClaims) {
	t.Helper()
	token, claims, err := f.keys.signer.DeviceToken(scope, ttl, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return token, claims
}

// signRaw signs arbitrary claims with the key file of dir/kid, with the given typ header.
func signRaw(t testing.TB, k keyDir, typ string, claims any) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k.dir, k.kid+privateKeySuffix))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := parsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// withPayload replaces a token's payload, keeping its header and signature.
func withPayload(t testing.TB, token string, claims any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// b64 encodes a token part.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// assertReason checks that err is an *Error with the reason want and that its message does
// not echo more than 100 bytes of token.
func assertReason(t testing.TB, err error, want Reason, token string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("got error %v, want none", err)
		}
		return
	}
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v (%T), want *Error with reason %s", err, err, want)
	}
	if ae.Reason != want {
		t.Fatalf("got reason %s (%q), want %s", ae.Reason, ae.Message, want)
	}
	if ae.Message == "" {
		t.Fatal("refusal has no message")
	}
	for i := 0; i+101 <= len(token); i++ {
		if strings.Contains(ae.Message, token[i:i+101]) {
			t.Fatalf("message echoes more than 100 bytes of the token: %q", ae.Message)
		}
	}
}

// eventually polls cond every 5ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
