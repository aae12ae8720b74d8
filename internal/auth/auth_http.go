package auth

import (
	"context"
	"net/http"
	"strings"
)

// BearerToken returns the token of an "Authorization: Bearer <token>" header (the scheme in
// any case). No header is ReasonMissing; another scheme or an empty token is ReasonMalformed.
func BearerToken(r *http.Request) (string, *Error) {
	return bearerFromHeader(r.Header)
}

func bearerFromHeader(h http.Header) (string, *Error) {
	v := h.Get("Authorization")
	if v == "" {
		return "", errMissing
	}
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errNotBearer
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", errEmptyBearer
	}
	return token, nil
}

// Refusals that carry nothing of the request, shared so the common ones cost no allocation.
var (
	errMissing     = &Error{Reason: ReasonMissing, Message: "no bearer token: send Authorization: Bearer <token>"}
	errNotBearer   = &Error{Reason: ReasonMalformed, Message: "Authorization header is not a bearer token"}
	errEmptyBearer = &Error{Reason: ReasonMalformed, Message: "bearer token is empty"}
)

// Challenge returns the WWW-Authenticate value for a refusal (RFC 6750 §3): plain "Bearer"
// when no token was sent, error="invalid_token" for a bad one, error="insufficient_scope"
// for a valid one that does not cover the request. err may be nil (no token).
func Challenge(err *Error) string {
	if err == nil || err.Reason == ReasonMissing {
		return `Bearer realm="fleetingest"`
	}
	code := "invalid_token"
	if err.Reason == ReasonOutOfScope || err.Reason == ReasonMissingRole {
		code = "insufficient_scope"
	}
	return `Bearer realm="fleetingest", error="` + code + `", error_description="` + quotable(err.Message) + `"`
}

// quotable keeps the characters RFC 6750 allows in error_description (%x20-21 / %x23-5B /
// %x5D-7E): a double quote becomes a single one, a backslash a slash, anything else outside
// the range is dropped.
func quotable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			b.WriteByte('\'')
		case c == '\\':
			b.WriteByte('/')
		case c >= 0x20 && c <= 0x7e:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// WriteChallenge sets the WWW-Authenticate header for a refusal (see Challenge), leaving
// the status and body to the caller. err may be nil (no token).
func WriteChallenge(w http.ResponseWriter, err *Error) {
	w.Header().Set("WWW-Authenticate", Challenge(err))
}

// deviceKey is the context key of a request's DeviceClaims.
type deviceKey struct{}

// DeviceMiddleware verifies the device token of every request and passes the request, its
// claims in the context (DeviceFromContext), to next. A refused request goes to onError;
// nil onError answers the error's status with the challenge and the message as plain text.
func DeviceMiddleware(v *DeviceVerifier, onError func(http.ResponseWriter, *http.Request, *Error), next http.Handler) http.Handler {
	if onError == nil {
		onError = writeError
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := BearerToken(r)
		if err != nil {
			onError(w, r, err)
			return
		}
		e, err := v.verify(token)
		if err != nil {
			onError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, &e.claims)))
	})
}

// writeError is DeviceMiddleware's default answer to a refusal.
func writeError(w http.ResponseWriter, _ *http.Request, err *Error) {
	WriteChallenge(w, err)
	http.Error(w, err.Message, err.HTTPStatus())
}

// DeviceFromContext returns the claims DeviceMiddleware verified.
func DeviceFromContext(ctx context.Context) (DeviceClaims, bool) {
	c, ok := ctx.Value(deviceKey{}).(*DeviceClaims)
	if !ok {
		return DeviceClaims{}, false
	}
	return *c, true
}
