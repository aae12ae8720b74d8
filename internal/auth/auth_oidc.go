package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// OIDCConfig configures an OIDCVerifier.
type OIDCConfig struct {
	// IssuerURL is the issuer, exactly as its tokens' "iss" and its discovery document name
	// it. Required.
	IssuerURL string
	// Audience must be among the tokens' "aud" (the client id). Default DefaultAudience.
	Audience string
	// RolesClaim is the claim holding the roles, a name or a dotted path such as
	// "realm_access.roles". Default DefaultRolesClaim.
	RolesClaim string
	// HTTPClient fetches the discovery document and the issuer's keys. Default a client with
	// a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock expiry is checked against. Default time.Now.
	Now func() time.Time
	// DiscoveryRetry is the least time between two discovery attempts while the issuer is
	// unreachable. Default 5s.
	DiscoveryRetry time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c OIDCConfig) withDefaults() OIDCConfig {
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DiscoveryRetry == 0 {
		c.DiscoveryRetry = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c OIDCConfig) validate() error {
	if c.IssuerURL == "" {
		return errors.New("OIDC verifier needs an issuer URL")
	}
	if c.DiscoveryRetry < 0 {
		return fmt.Errorf("OIDC discovery retry must be positive, got %s", c.DiscoveryRetry)
	}
	return nil
}

// oidcAlgs are the algorithms an issuer's tokens are parsed with before go-oidc checks them
// against what the issuer announces.
var oidcAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// OIDCVerifier verifies user tokens from an OpenID Connect issuer: discovery, then the
// issuer's keys (fetched again when a token names an unknown key, which is how the issuer
// rotates them). Discovery happens at construction and, while the issuer is unreachable,
// again on use at most every DiscoveryRetry; meanwhile tokens are refused with
// ReasonUnavailable.
type OIDCVerifier struct {
	cfg OIDCConfig

	verifier atomic.Pointer[oidc.IDTokenVerifier]
	mu       sync.Mutex // guards discovery
	lastTry  time.Time
	lastErr  error
}

var _ UserVerifier = (*OIDCVerifier)(nil)

// NewOIDCVerifier returns a verifier for cfg.IssuerURL. An unreachable issuer is not an
// error: discovery is tried again on use, and Ready reports it.
func NewOIDCVerifier(ctx context.Context, cfg OIDCConfig) (*OIDCVerifier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v := &OIDCVerifier{cfg: cfg}
	if _, err := v.idTokenVerifier(ctx); err != nil {
		cfg.Logger.Warn("OIDC issuer not reachable yet; will retry on use", "issuer", cfg.IssuerURL, "err", v.lastErr)
	}
	return v, nil
}

// Ready reports why the verifier cannot verify yet (discovery has not succeeded), trying
// discovery again if DiscoveryRetry has passed; nil once it can.
func (v *OIDCVerifier) Ready(ctx context.Context) error {
	if _, err := v.idTokenVerifier(ctx); err != nil {
		return fmt.Errorf("discovering OIDC issuer %s: %w", v.cfg.IssuerURL, v.lastError())
	}
	return nil
}

func (v *OIDCVerifier) lastError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lastErr == nil {
		return errors.New("not tried yet")
	}
	return v.lastErr
}

// idTokenVerifier returns the go-oidc verifier, discovering the issuer first if needed.
func (v *OIDCVerifier) idTokenVerifier(ctx context.Context) (*oidc.IDTokenVerifier, *Error) {
	if iv := v.verifier.Load(); iv != nil {
		return iv, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if iv := v.verifier.Load(); iv != nil {
		return iv, nil
	}
	unavailable := newError(ReasonUnavailable, "user tokens cannot be checked: the OIDC issuer is unreachable")
	now := v.cfg.Now()
	if !v.lastTry.IsZero() && now.Sub(v.lastTry) < v.cfg.DiscoveryRetry {
		return nil, unavailable
	}
	v.lastTry = now
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.cfg.HTTPClient), v.cfg.IssuerURL)
	if err != nil {
		v.lastErr = err
		v.cfg.Logger.Warn("discovering OIDC issuer", "issuer", v.cfg.IssuerURL, "err", err)
		return nil, unavailable
	}
	iv := p.Verifier(&oidc.Config{ClientID: v.cfg.Audience, Now: v.cfg.Now})
	v.verifier.Store(iv)
	v.lastErr = nil
	v.cfg.Logger.Info("discovered OIDC issuer", "issuer", v.cfg.IssuerURL)
	return iv, nil
}

// VerifyUser returns the claims of a valid token from the issuer.
func (v *OIDCVerifier) VerifyUser(ctx context.Context, token string) (UserClaims, error) {
	c, err := v.verifyUser(ctx, token)
	if err != nil {
		return UserClaims{}, err
	}
	return c, nil
}

func (v *OIDCVerifier) verifyUser(ctx context.Context, token string) (UserClaims, *Error) {
	now := v.cfg.Now()
	// The checks on unverified claims only refuse, with a precise reason; go-oidc below
	// checks signature, issuer, audience and expiry again before anything is accepted.
	p, err := parseToken(token, oidcAlgs)
	if err != nil {
		return UserClaims{}, err
	}
	if p.typ == DeviceTokenType {
		return UserClaims{}, newError(ReasonWrongKind, "token is not a user token (typ %q)", p.typ)
	}
	var c userClaimsJSON
	if json.Unmarshal(p.payload, &c) != nil {
		return UserClaims{}, newError(ReasonMalformed, "token claims are not a JSON object of user claims")
	}
	if isJSONObject(c.Scope) {
		return UserClaims{}, newError(ReasonWrongKind, "token is not a user token (it has a device scope)")
	}
	if err := checkUserClaims(c.Issuer, c.Audience, c.Subject, c.NotBefore, v.cfg.IssuerURL, v.cfg.Audience, now); err != nil {
		return UserClaims{}, err
	}
	if c.Expiry == nil {
		return UserClaims{}, newError(ReasonMalformed, "token has no expiry (exp)")
	}
	if exp := c.Expiry.Time(); !now.Before(exp) {
		return UserClaims{}, newError(ReasonExpired, "token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	iv, err := v.idTokenVerifier(ctx)
	if err != nil {
		return UserClaims{}, err
	}
	idt, verr := iv.Verify(ctx, token)
	if verr != nil {
		if expired := (*oidc.TokenExpiredError)(nil); errors.As(verr, &expired) {
			return UserClaims{}, newError(ReasonExpired, "token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
		}
		v.cfg.Logger.Debug("OIDC token refused", "err", verr)
		return UserClaims{}, newError(ReasonBadSignature, "token signature does not verify with the issuer's keys")
	}
	// go-oidc accepts a token in the second of its expiry; fleetingest does not.
	if !now.Before(idt.Expiry) {
		return UserClaims{}, newError(ReasonExpired, "token expired at %s", idt.Expiry.UTC().Format(time.RFC3339))
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return UserClaims{}, newError(ReasonMalformed, "token claims are not a JSON object")
	}
	return UserClaims{Name: idt.Subject, Roles: rolesAt(all, v.cfg.RolesClaim), Expiry: idt.Expiry.UTC()}, nil
}

// isJSONObject reports whether raw JSON is an object.
func isJSONObject(raw json.RawMessage) bool {
	for _, b := range raw {
		switch b {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}
