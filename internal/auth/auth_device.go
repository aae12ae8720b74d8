package auth

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// tokenAlgs are the algorithms fleetingest's own tokens are signed with.
var tokenAlgs = []jose.SignatureAlgorithm{jose.EdDSA}

// DeviceVerifierConfig configures a DeviceVerifier.
type DeviceVerifierConfig struct {
	// Keys verifies device tokens; it holds device keys only. Required.
	Keys *KeySet
	// Revocations is consulted on every use of a token. Required. The verifier does not wait
	// for it to catch up: gate readiness on Revocations.Ready.
	Revocations *Revocations
	// Now is the clock expiry is checked against. Default time.Now.
	Now func() time.Time
	// MaxCacheEntries bounds the tokens kept verified. Default DefaultMaxCacheEntries.
	MaxCacheEntries int
}

func (c DeviceVerifierConfig) withDefaults() DeviceVerifierConfig {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxCacheEntries == 0 {
		c.MaxCacheEntries = DefaultMaxCacheEntries
	}
	return c
}

func (c DeviceVerifierConfig) validate() error {
	if c.Keys == nil {
		return errors.New("device verifier needs a key set")
	}
	if c.Revocations == nil {
		return errors.New("device verifier needs the revocations")
	}
	if c.MaxCacheEntries < 0 {
		return errors.New("device verifier cache bound must be positive")
	}
	return nil
}

// DeviceVerifier verifies device tokens. A verified token is cached until it expires, so a
// device posting with the same token costs one signature check, not one per request; every
// use still checks expiry and revocation, and a change of keys empties the cache.
//
// It is safe for concurrent use.
type DeviceVerifier struct {
	cfg   DeviceVerifierConfig
	cache *tokenCache[DeviceClaims]
	// signatureChecks counts the signatures verified, i.e. the cache misses that got that far.
	signatureChecks atomic.Uint64
}

// NewDeviceVerifier returns a verifier over cfg.Keys.
func NewDeviceVerifier(cfg DeviceVerifierConfig) (*DeviceVerifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &DeviceVerifier{cfg: cfg, cache: newTokenCache[DeviceClaims](cfg.MaxCacheEntries)}, nil
}

// Verify returns the claims of a valid device token. A refusal is an *Error.
func (v *DeviceVerifier) Verify(token string) (DeviceClaims, error) {
	e, err := v.verify(token)
	if err != nil {
		return DeviceClaims{}, err
	}
	return e.claims, nil
}

// verify returns the cache entry of a valid token; its claims are shared and immutable.
func (v *DeviceVerifier) verify(token string) (*cacheEntry[DeviceClaims], *Error) {
	now := v.cfg.Now()
	snap := v.cfg.Keys.current()
	e := v.cache.get(token, snap.generation)
	cached := e != nil
	if !cached {
		var err *Error
		if e, err = v.verifySignature(token, snap); err != nil {
			return nil, err
		}
	}
	if err := checkUse(e.expiry, e.jti, now, v.cfg.Revocations); err != nil {
		return nil, err
	}
	if !cached {
		v.cache.put(token, e, now)
	}
	return e, nil
}

// verifySignature checks everything about a token that does not change with time: its
// structure, kind, key and signature.
func (v *DeviceVerifier) verifySignature(token string, snap *keySnapshot) (*cacheEntry[DeviceClaims], *Error) {
	p, err := parseToken(token, tokenAlgs)
	if err != nil {
		return nil, err
	}
	if p.typ != DeviceTokenType {
		return nil, newError(ReasonWrongKind, "token is not a device token (typ %q)", echo(p.typ))
	}
	var c deviceClaimsJSON
	if err := json.Unmarshal(p.payload, &c); err != nil {
		return nil, newError(ReasonMalformed, "token claims are not device claims: %s", echo(err.Error()))
	}
	switch {
	case c.Scope == nil:
		return nil, newError(ReasonWrongKind, "token is not a device token (no scope)")
	case c.ID == "":
		return nil, newError(ReasonMalformed, "token has no id (jti)")
	case c.Expiry == nil:
		return nil, newError(ReasonMalformed, "token has no expiry (exp)")
	}
	pub, ok := snap.keys[p.kid]
	if !ok {
		return nil, newError(ReasonUnknownKey, "token signed by unknown key %q", echo(p.kid))
	}
	v.signatureChecks.Add(1)
	if _, err := p.jws.Verify(pub); err != nil {
		return nil, newError(ReasonBadSignature, "token signature does not verify")
	}
	claims := DeviceClaims{ID: c.ID, KeyID: p.kid, Scope: *c.Scope, Expiry: c.Expiry.Time().UTC()}
	if c.IssuedAt != nil {
		claims.IssuedAt = c.IssuedAt.Time().UTC()
	}
	return &cacheEntry[DeviceClaims]{claims: claims, jti: c.ID, expiry: claims.Expiry, generation: snap.generation}, nil
}

// checkUse refuses a token that has expired (no leeway: from its expiry on) or is revoked.
// It runs on every use, cached or not.
func checkUse(expiry time.Time, jti string, now time.Time, revoked *Revocations) *Error {
	if !now.Before(expiry) {
		return newError(ReasonExpired, "token expired at %s", expiry.UTC().Format(time.RFC3339))
	}
	if revoked != nil && revoked.Revoked(jti) {
		return newError(ReasonRevoked, "token revoked")
	}
	return nil
}

// typIs reports whether a "typ" header names want, ignoring case and an "application/"
// prefix (RFC 7515 §4.1.9).
func typIs(typ, want string) bool {
	return strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), want)
}

// Ready reports whether the revocation list has caught up with its bucket, so that no
// revoked token is accepted at start-up.
func (v *DeviceVerifier) Ready() bool { return v.cfg.Revocations.Ready() }
