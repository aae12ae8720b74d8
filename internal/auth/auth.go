// Package auth authenticates the two kinds of caller fleetingest has: devices posting
// readings to the gateway, and users of the analytics API.
//
// # Tokens
//
// Both kinds carry a bearer JWT in the JWS compact serialization, signed with Ed25519
// (alg "EdDSA"). The protected header names the signing key in "kid" and the kind in "typ":
//
//	device token  {"alg":"EdDSA","kid":"<kid>","typ":"fleetingest-device+jwt"}
//	user token    {"alg":"EdDSA","kid":"<kid>","typ":"JWT"}
//
// Device claims:
//
//	{"jti":"<128-bit random, base64url>","iat":<unix s>,"exp":<unix s>,
//	 "scope":{"device":"EV-101"}}      one device id (a meter or a vehicle with that id)
//	 "scope":{"prefix":"site-7."}      every id starting with the prefix; "" is every device
//
// User claims, from the local issuer:
//
//	{"iss":"fleetingest-dev","aud":"fleetingest","sub":"<user name>","jti":"…",
//	 "iat":…,"exp":…,"roles":["viewer"|"admin"]}
//
// The roles claim name is configurable and may be a dotted path ("realm_access.roles"); in
// a cluster, user tokens come from the platform's OIDC issuer instead (see OIDCVerifier).
//
// A token of one kind never verifies as the other: device and user verification keys live
// in separate folders, and each verifier checks "typ" and the presence (device) or absence
// (user) of the "scope" object.
//
// Expiry is checked without leeway: a token is expired from the second named by "exp" on.
//
// # Keys
//
// A key folder holds "<kid>.key" (PKCS#8 PEM, signing) and "<kid>.pub" (PKIX PEM,
// verification). A KeySet reads every "*.pub" of a folder, re-reading it while it runs, so
// a mounted Kubernetes Secret can add and remove keys without a restart; several keys may be
// active at once, which is how keys rotate.
//
// # Revocation
//
// A revoked token's "jti" is a key in a JetStream KV bucket whose value is
// {"expiresAt":"<RFC 3339>"}, the token's own expiry, after which the entry no longer
// matters. Revocations watches the bucket; verifiers consult it on every use of a token,
// cached or not.
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Token types, the "typ" header of each kind.
const (
	DeviceTokenType = "fleetingest-device+jwt"
	UserTokenType   = "JWT"
)

// Reason classifies why a token was refused.
type Reason string

// Reasons a token is refused.
const (
	// ReasonMissing: the request carries no token.
	ReasonMissing Reason = "missing"
	// ReasonMalformed: the token or the Authorization header cannot be parsed.
	ReasonMalformed Reason = "malformed"
	// ReasonBadSignature: the signature does not verify with the key the token names.
	ReasonBadSignature Reason = "bad_signature"
	// ReasonUnknownKey: the token names a key that is not among the verification keys.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonExpired: the token's expiry has passed.
	ReasonExpired Reason = "expired"
	// ReasonRevoked: the token's id is in the revocation bucket.
	ReasonRevoked Reason = "revoked"
	// ReasonWrongKind: a user token given where a device token is expected, or the reverse.
	ReasonWrongKind Reason = "wrong_kind"
	// ReasonInvalidClaims: the claims are well-formed but not acceptable (issuer, audience,
	// not valid yet, no subject).
	ReasonInvalidClaims Reason = "invalid_claims"
	// ReasonOutOfScope: a valid device token whose scope does not cover the device id.
	ReasonOutOfScope Reason = "out_of_scope"
	// ReasonMissingRole: a valid user token without the role the operation needs.
	ReasonMissingRole Reason = "missing_role"
	// ReasonUnavailable: the token could not be checked because the issuer is unreachable.
	ReasonUnavailable Reason = "unavailable"
)

// Error is why a token was refused. Message is meant for the caller: it names the reason
// and never echoes more than a short piece of the token.
type Error struct {
	Reason  Reason
	Message string
}

func (e *Error) Error() string { return e.Message }

// HTTPStatus is the status a refusal answers with: 403 for a valid token that does not cover
// the request, 503 when the token could not be checked, 401 otherwise.
func (e *Error) HTTPStatus() int {
	switch e.Reason {
	case ReasonOutOfScope, ReasonMissingRole:
		return http.StatusForbidden
	case ReasonUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnauthorized
	}
}

func newError(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// maxEcho bounds any piece of caller input (a key id, a device id) quoted in a message.
const maxEcho = 40

// echo returns s cut to maxEcho bytes (on a rune boundary), with "…" when cut, for quoting
// caller input in messages.
func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Role is what a user may do.
type Role string

// Roles. An admin may do everything a viewer may.
const (
	// RoleViewer reads analytics and mappings.
	RoleViewer Role = "viewer"
	// RoleAdmin also writes mappings.
	RoleAdmin Role = "admin"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.TrimSpace(s)); r {
	case RoleViewer, RoleAdmin:
		return r, nil
	default:
		return "", fmt.Errorf("unknown role %q (want %q or %q)", echo(s), RoleViewer, RoleAdmin)
	}
}

// implies reports whether holding r grants want.
func (r Role) implies(want Role) bool {
	return r == want || (r == RoleAdmin && want == RoleViewer)
}
