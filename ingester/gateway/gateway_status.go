package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/internal/auth"
)

// gRPC status codes used in error bodies (google.golang.org/grpc/codes).
const (
	codeInvalidArgument   = 3
	codePermissionDenied  = 7
	codeResourceExhausted = 8
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
	codeUnauthenticated   = 16
)

const badRequestType = "type.googleapis.com/google.rpc.BadRequest"

// httpStatus is an error answer: the HTTP status and the google.rpc.Status body that the
// whole HTTP surface (vanguard's REST transcoding included) answers with:
// {"code":3,"message":"…","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest",
// "fieldViolations":[{"field":"soc","description":"…"}]}]}.
type httpStatus struct {
	http       int
	code       int
	message    string
	violations []telemetry.FieldViolation
}

type statusJSON struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Details []badRequestJSON `json:"details,omitempty"`
}

type badRequestJSON struct {
	Type            string                     `json:"@type"`
	FieldViolations []telemetry.FieldViolation `json:"fieldViolations"`
}

// MarshalJSON renders the google.rpc.Status body.
func (s *httpStatus) MarshalJSON() ([]byte, error) {
	out := statusJSON{Code: s.code, Message: truncate(s.message, maxMessageBytes)}
	// Violations that name no field (not JSON at all, a broken batch envelope) are already
	// in the message; BadRequest details carry the ones about a field.
	var fields []telemetry.FieldViolation
	for _, v := range s.violations {
		if v.Field != "" {
			v.Field, v.Description = truncate(v.Field, maxDescriptionBytes), truncate(v.Description, maxDescriptionBytes)
			fields = append(fields, v)
		}
	}
	if len(fields) > 0 {
		out.Details = []badRequestJSON{{Type: badRequestType, FieldViolations: fields}}
	}
	// Messages quote what they refuse ("<token>", a device id): no HTML escapes.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Bounds of what an error answer echoes of the input: a message, and each violation's
// description.
const (
	maxMessageBytes     = 512
	maxDescriptionBytes = 256
)

// truncate cuts s to at most n bytes (on a rune boundary), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// writeStatus writes s as the answer and returns its HTTP status.
func writeStatus(w http.ResponseWriter, s *httpStatus) int {
	body, err := s.MarshalJSON()
	if err != nil {
		s = &httpStatus{http: http.StatusInternalServerError, code: codeInternal, message: "encoding the error answer failed"}
		body, _ = s.MarshalJSON()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(s.http)
	_, _ = w.Write(body)
	return s.http
}

// decodeStatus maps a refused reading or batch: Malformed → 400, Implausible → 422 (both
// INVALID_ARGUMENT: the request is wrong whatever the system's state), TooLarge → 413.
func decodeStatus(err *telemetry.Error) *httpStatus {
	s := &httpStatus{code: codeInvalidArgument, violations: err.Violations}
	switch err.Class {
	case telemetry.Implausible:
		s.http, s.message = http.StatusUnprocessableEntity, "implausible reading: "+err.Error()
	case telemetry.TooLarge:
		s.http, s.code, s.message = http.StatusRequestEntityTooLarge, codeResourceExhausted, "batch too large: "+err.Error()
	default:
		s.http, s.message = http.StatusBadRequest, "malformed reading: "+err.Error()
	}
	return s
}

// unauthenticated is the answer to a request without a valid device token: 401 with
// WWW-Authenticate (written by the caller), saying what was wrong with the token.
func unauthenticated(err *auth.Error) *httpStatus {
	return &httpStatus{http: http.StatusUnauthorized, code: codeUnauthenticated, message: "unauthenticated: " + err.Message}
}

// outOfScope is the answer for a reading of a device the token does not cover.
func outOfScope(claims *auth.DeviceClaims, deviceID string) *httpStatus {
	return &httpStatus{
		http:    http.StatusForbidden,
		code:    codePermissionDenied,
		message: "permission denied: a token for " + claims.Scope.String() + " does not cover device " + strconv.Quote(deviceID),
	}
}

func tooLarge(limit int64) *httpStatus {
	return &httpStatus{
		http:    http.StatusRequestEntityTooLarge,
		code:    codeResourceExhausted,
		message: "request body exceeds " + strconv.FormatInt(limit, 10) + " bytes",
	}
}

func unsupportedMediaType(got, want string) *httpStatus {
	return &httpStatus{
		http:    http.StatusUnsupportedMediaType,
		code:    codeInvalidArgument,
		message: "unsupported Content-Type " + strconv.Quote(got) + ": send " + want,
	}
}

// unavailableStatus is the answer for readings that could not be durably queued. The client
// should retry after Retry-After; a reading published before the failure is deduplicated.
func unavailableStatus(err error) *httpStatus {
	msg := "readings not queued, retry later: "
	var ue *unavailableError
	switch {
	case errors.Is(err, errQueueFull):
		msg += "the gateway's queue for the shard is full"
	case errors.As(err, &ue):
		msg += "the shard's stream did not acknowledge them: " + ue.err.Error()
	default:
		msg += err.Error()
	}
	return &httpStatus{http: http.StatusServiceUnavailable, code: codeUnavailable, message: msg}
}
