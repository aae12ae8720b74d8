package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxTokenLen bounds the tokens parsed at all; a longer one is malformed.
const maxTokenLen = 8 << 10

// Defaults of user tokens from the local issuer.
const (
	DefaultIssuer     = "fleetingest-dev"
	DefaultAudience   = "fleetingest"
	DefaultRolesClaim = "roles"
)

// IssuerConfig names what a Signer writes into user tokens.
type IssuerConfig struct {
	// Issuer is the "iss" claim. Default DefaultIssuer.
	Issuer string
	// Audience is the "aud" claim. Default DefaultAudience.
	Audience string
	// RolesClaim is the claim holding the roles, a name or a dotted path such as
	// "realm_access.roles". Default DefaultRolesClaim.
	RolesClaim string
}

func (c IssuerConfig) withDefaults() IssuerConfig {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	return c
}

// Signer mints tokens with one signing key. It is safe for concurrent use.
type Signer struct {
	kid    string
	device jose.Signer
	user   jose.Signer
	issuer IssuerConfig
}

func newSigner(kid string, priv ed25519.PrivateKey) (*Signer, error) {
	key := jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}
	device, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType(DeviceTokenType))
	if err != nil {
		return nil, fmt.Errorf("preparing device token signer: %w", err)
	}
	user, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType(UserTokenType))
	if err != nil {
		return nil, fmt.Errorf("preparing user token signer: %w", err)
	}
	return &Signer{kid: kid, device: device, user: user, issuer: IssuerConfig{}.withDefaults()}, nil
}

// KeyID is the id of the signing key, the "kid" of every token it mints.
func (s *Signer) KeyID() string { return s.kid }

// WithIssuer returns a Signer with the same key whose user tokens carry cfg's issuer,
// audience and roles claim (each defaulted when empty).
func (s *Signer) WithIssuer(cfg IssuerConfig) *Signer {
	c := *s
	c.issuer = cfg.withDefaults()
	return &c
}

// DeviceClaims are the verified claims of a device token.
type DeviceClaims struct {
	// ID is the token's unique id, its "jti": what revocation names.
	ID string
	// KeyID names the key that signed the token.
	KeyID string
	// Scope is the set of device ids the token may post for.
	Scope Scope
	// Expiry is the first instant the token is no longer valid.
	Expiry time.Time
	// IssuedAt is when the token was minted (zero if the token does not say).
	IssuedAt time.Time
}

// Authorize refuses, with ReasonOutOfScope, a device id the token's scope does not cover.
func (c DeviceClaims) Authorize(deviceID string) error {
	if c.Scope.Allows(deviceID) {
		return nil
	}
	return newError(ReasonOutOfScope, "token scope (%s) does not cover device %q", c.Scope, echo(deviceID))
}

// deviceClaimsJSON is the wire form of a device token's payload.
type deviceClaimsJSON struct {
	ID       string           `json:"jti"`
	IssuedAt *jwt.NumericDate `json:"iat,omitempty"`
	Expiry   *jwt.NumericDate `json:"exp"`
	Scope    *Scope           `json:"scope"`
}

// DeviceToken mints a device token for scope valid from now for ttl (rounded up to a whole
// second: token times are whole seconds).
func (s *Signer) DeviceToken(scope Scope, ttl time.Duration, now time.Time) (string, DeviceClaims, error) {
	if err := scope.Validate(); err != nil {
		return "", DeviceClaims{}, fmt.Errorf("minting device token: %w", err)
	}
	iat, exp, err := lifetime(ttl, now)
	if err != nil {
		return "", DeviceClaims{}, fmt.Errorf("minting device token: %w", err)
	}
	jti, err := newTokenID()
	if err != nil {
		return "", DeviceClaims{}, fmt.Errorf("minting device token: %w", err)
	}
	payload, err := json.Marshal(deviceClaimsJSON{ID: jti, IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(exp), Scope: &scope})
	if err != nil {
		return "", DeviceClaims{}, fmt.Errorf("encoding device token claims: %w", err)
	}
	token, err := sign(s.device, payload)
	if err != nil {
		return "", DeviceClaims{}, fmt.Errorf("signing device token: %w", err)
	}
	return token, DeviceClaims{ID: jti, KeyID: s.kid, Scope: scope, Expiry: exp, IssuedAt: iat}, nil
}

// UserToken mints a user token for name with role, valid from now for ttl (rounded up to a
// whole second), carrying the Signer's issuer, audience and roles claim.
func (s *Signer) UserToken(name string, role Role, ttl time.Duration, now time.Time) (string, UserClaims, error) {
	if name == "" || len(name) > maxUserNameLen {
		return "", UserClaims{}, fmt.Errorf("minting user token: name must be 1 to %d bytes", maxUserNameLen)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", UserClaims{}, fmt.Errorf("minting user token: %w", err)
	}
	iat, exp, err := lifetime(ttl, now)
	if err != nil {
		return "", UserClaims{}, fmt.Errorf("minting user token: %w", err)
	}
	jti, err := newTokenID()
	if err != nil {
		return "", UserClaims{}, fmt.Errorf("minting user token: %w", err)
	}
	claims := map[string]any{
		"iss": s.issuer.Issuer,
		"aud": s.issuer.Audience,
		"sub": name,
		"jti": jti,
		"iat": iat.Unix(),
		"exp": exp.Unix(),
	}
	setPath(claims, s.issuer.RolesClaim, []string{string(role)})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", UserClaims{}, fmt.Errorf("encoding user token claims: %w", err)
	}
	token, err := sign(s.user, payload)
	if err != nil {
		return "", UserClaims{}, fmt.Errorf("signing user token: %w", err)
	}
	return token, UserClaims{Name: name, Roles: []Role{role}, Expiry: exp}, nil
}

// lifetime returns the issue time (now, down to the second) and the expiry (now+ttl, up to
// the second) of a token.
func lifetime(ttl time.Duration, now time.Time) (time.Time, time.Time, error) {
	if ttl <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("ttl must be positive, got %s", ttl)
	}
	if now.IsZero() {
		return time.Time{}, time.Time{}, errors.New("issue time is zero")
	}
	iat := now.Truncate(time.Second).UTC()
	exp := now.Add(ttl)
	if t := exp.Truncate(time.Second); t.Before(exp) {
		exp = t.Add(time.Second)
	}
	return iat, exp.UTC(), nil
}

// newTokenID returns 128 random bits, base64url without padding.
func newTokenID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func sign(signer jose.Signer, payload []byte) (string, error) {
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// setPath sets a dotted path in a claims object, creating the objects on the way.
func setPath(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// parsedToken is a compact JWS whose structure has been checked but not its signature.
type parsedToken struct {
	jws     *jose.JSONWebSignature
	kid     string
	typ     string
	payload []byte
}

// parseToken checks a token's structure: three base64url parts, a JSON header with one of
// algs, and a payload. It verifies nothing.
func parseToken(token string, algs []jose.SignatureAlgorithm) (parsedToken, *Error) {
	if token == "" {
		return parsedToken{}, newError(ReasonMissing, "no token")
	}
	if len(token) > maxTokenLen {
		return parsedToken{}, newError(ReasonMalformed, "token is longer than %d bytes", maxTokenLen)
	}
	if strings.Count(token, ".") != 2 {
		return parsedToken{}, newError(ReasonMalformed, "token is not a JWT: it must have three dot-separated parts")
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		if alg := (*jose.ErrUnexpectedSignatureAlgorithm)(nil); errors.As(err, &alg) {
			return parsedToken{}, newError(ReasonMalformed, "token algorithm %q is not accepted", echo(string(alg.Got)))
		}
		return parsedToken{}, newError(ReasonMalformed, "token is not a JWT: its header or payload does not decode")
	}
	if len(jws.Signatures) != 1 {
		return parsedToken{}, newError(ReasonMalformed, "token must carry exactly one signature")
	}
	h := jws.Signatures[0].Header
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return parsedToken{jws: jws, kid: h.KeyID, typ: typ, payload: jws.UnsafePayloadWithoutVerification()}, nil
}

// unverifiedAlgs are the algorithms ParseUnverified reads: whatever a token may have been
// signed with, since it checks no signature.
var unverifiedAlgs = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.HS256, jose.HS384, jose.HS512,
}

// ParseUnverified returns a token's id and expiry WITHOUT verifying anything, for revoking
// a token whose signing key the caller may not hold. Never use it to accept a token.
func ParseUnverified(token string) (jti string, expiresAt time.Time, err error) {
	p, perr := parseToken(token, unverifiedAlgs)
	if perr != nil {
		return "", time.Time{}, perr
	}
	var c struct {
		ID     string           `json:"jti"`
		Expiry *jwt.NumericDate `json:"exp"`
	}
	if err := json.Unmarshal(p.payload, &c); err != nil {
		return "", time.Time{}, newError(ReasonMalformed, "token claims are not a JSON object with jti and exp")
	}
	if c.ID == "" {
		return "", time.Time{}, newError(ReasonMalformed, "token has no id (jti)")
	}
	if c.Expiry == nil {
		return "", time.Time{}, newError(ReasonMalformed, "token has no expiry (exp)")
	}
	return c.ID, c.Expiry.Time().UTC(), nil
}
