package auth

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// maxUserNameLen bounds the user name minted into a token.
const maxUserNameLen = 256

// UserClaims are the verified claims of a user token.
type UserClaims struct {
	// Name is the token's subject ("sub").
	Name string
	// Roles are the known roles the token grants; others are dropped.
	Roles []Role
	// Expiry is the first instant the token is no longer valid.
	Expiry time.Time
}

// Has reports whether the claims grant role; admin implies viewer.
func (c UserClaims) Has(role Role) bool {
	for _, r := range c.Roles {
		if r.implies(role) {
			return true
		}
	}
	return false
}

// UserVerifier verifies the bearer tokens of analytics users. A refusal is an *Error.
type UserVerifier interface {
	VerifyUser(ctx context.Context, token string) (UserClaims, error)
}

// LocalUserConfig configures a LocalUserVerifier.
type LocalUserConfig struct {
	// Keys verifies user tokens; it holds user keys only. Required.
	Keys *KeySet
	// Issuer is the required "iss". Default DefaultIssuer.
	Issuer string
	// Audience must be among the token's "aud". Default DefaultAudience.
	Audience string
	// RolesClaim is the claim holding the roles, a name or a dotted path. Default
	// DefaultRolesClaim.
	RolesClaim string
	// Revocations, if set, is consulted on every use of a token.
	Revocations *Revocations
	// Now is the clock expiry is checked against. Default time.Now.
	Now func() time.Time
	// MaxCacheEntries bounds the tokens kept verified. Default DefaultMaxCacheEntries.
	MaxCacheEntries int
}

func (c LocalUserConfig) withDefaults() LocalUserConfig {
	ic := IssuerConfig{Issuer: c.Issuer, Audience: c.Audience, RolesClaim: c.RolesClaim}.withDefaults()
	c.Issuer, c.Audience, c.RolesClaim = ic.Issuer, ic.Audience, ic.RolesClaim
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxCacheEntries == 0 {
		c.MaxCacheEntries = DefaultMaxCacheEntries
	}
	return c
}

func (c LocalUserConfig) validate() error {
	if c.Keys == nil {
		return errors.New("user verifier needs a key set")
	}
	if c.MaxCacheEntries < 0 {
		return errors.New("user verifier cache bound must be positive")
	}
	return nil
}

// LocalUserVerifier verifies user tokens signed by local keys (the dev data folder, or a
// Secret of user verification keys). Like DeviceVerifier it caches verified tokens and
// checks expiry and revocation on every use.
type LocalUserVerifier struct {
	cfg             LocalUserConfig
	cache           *tokenCache[UserClaims]
	signatureChecks atomic.Uint64
}

var _ UserVerifier = (*LocalUserVerifier)(nil)

// NewLocalUserVerifier returns a verifier over cfg.Keys.
func NewLocalUserVerifier(cfg LocalUserConfig) (*LocalUserVerifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &LocalUserVerifier{cfg: cfg, cache: newTokenCache[UserClaims](cfg.MaxCacheEntries)}, nil
}

// VerifyUser returns the claims of a valid user token.
func (v *LocalUserVerifier) VerifyUser(_ context.Context, token string) (UserClaims, error) {
	now := v.cfg.Now()
	snap := v.cfg.Keys.current()
	e := v.cache.get(token, snap.generation)
	cached := e != nil
	if !cached {
		var err *Error
		if e, err = v.verifySignature(token, snap, now); err != nil {
			return UserClaims{}, err
		}
	}
	if err := checkUse(e.expiry, e.jti, now, v.cfg.Revocations); err != nil {
		return UserClaims{}, err
	}
	if !cached {
		v.cache.put(token, e, now)
	}
	c := e.claims
	c.Roles = slices.Clone(c.Roles)
	return c, nil
}

// userClaimsJSON is the registered part of a user token's payload.
type userClaimsJSON struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	ID        string           `json:"jti"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	Scope     json.RawMessage  `json:"scope"`
}

func (v *LocalUserVerifier) verifySignature(token string, snap *keySnapshot, now time.Time) (*cacheEntry[UserClaims], *Error) {
	p, err := parseToken(token, tokenAlgs)
	if err != nil {
		return nil, err
	}
	if !typIs(p.typ, UserTokenType) {
		return nil, newError(ReasonWrongKind, "token is not a user token (typ %q)", echo(p.typ))
	}
	var c userClaimsJSON
	var all map[string]any
	if json.Unmarshal(p.payload, &c) != nil || json.Unmarshal(p.payload, &all) != nil {
		return nil, newError(ReasonMalformed, "token claims are not a JSON object of user claims")
	}
	if len(c.Scope) > 0 {
		return nil, newError(ReasonWrongKind, "token is not a user token (it has a device scope)")
	}
	if c.Expiry == nil {
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
	if err := checkUserClaims(c.Issuer, c.Audience, c.Subject, c.NotBefore, v.cfg.Issuer, v.cfg.Audience, now); err != nil {
		return nil, err
	}
	claims := UserClaims{Name: c.Subject, Roles: rolesAt(all, v.cfg.RolesClaim), Expiry: c.Expiry.Time().UTC()}
	return &cacheEntry[UserClaims]{claims: claims, jti: c.ID, expiry: claims.Expiry, generation: snap.generation}, nil
}

// checkUserClaims checks the registered claims every user token needs.
func checkUserClaims(iss string, aud jwt.Audience, sub string, nbf *jwt.NumericDate, wantIss, wantAud string, now time.Time) *Error {
	switch {
	case iss != wantIss:
		return newError(ReasonInvalidClaims, "token issued by %q, not %q", echo(iss), wantIss)
	case !aud.Contains(wantAud):
		return newError(ReasonInvalidClaims, "token audience does not include %q", wantAud)
	case sub == "":
		return newError(ReasonInvalidClaims, "token has no subject (sub)")
	case nbf != nil && now.Before(nbf.Time()):
		return newError(ReasonInvalidClaims, "token not valid before %s", nbf.Time().UTC().Format(time.RFC3339))
	}
	return nil
}

// rolesAt returns the known roles held by the claim at path, a name or a dotted path into
// nested objects. The claim may be an array of strings or one string of space-separated
// names; unknown names are dropped.
func rolesAt(claims map[string]any, path string) []Role {
	v, ok := claims[path]
	if !ok {
		var cur any = claims
		for _, part := range strings.Split(path, ".") {
			m, isObject := cur.(map[string]any)
			if !isObject {
				return nil
			}
			cur = m[part]
		}
		v = cur
	}
	var names []string
	switch x := v.(type) {
	case string:
		names = strings.Fields(x)
	case []any:
		for _, n := range x {
			if s, ok := n.(string); ok {
				names = append(names, s)
			}
		}
	}
	var roles []Role
	for _, n := range names {
		if r := Role(n); (r == RoleViewer || r == RoleAdmin) && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles
}
