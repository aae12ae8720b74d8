package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetingest/fleetingest/api/placement"
)

// Scope is the set of device ids a device token may post for: one id, or every id starting
// with a prefix (the empty prefix is every device). The zero Scope allows nothing.
type Scope struct {
	value    string
	isPrefix bool
	set      bool
}

// DeviceScope is the scope of one device id (a meter or a vehicle with that id).
func DeviceScope(id string) Scope { return Scope{value: id, set: true} }

// PrefixScope is the scope of every device id starting with prefix; "" is every device.
func PrefixScope(prefix string) Scope { return Scope{value: prefix, isPrefix: true, set: true} }

// Allows reports whether the scope covers deviceID.
func (s Scope) Allows(deviceID string) bool {
	if !s.set {
		return false
	}
	if s.isPrefix {
		return strings.HasPrefix(deviceID, s.value)
	}
	return deviceID == s.value
}

// Device returns the one device id of a device scope.
func (s Scope) Device() (string, bool) { return s.value, s.set && !s.isPrefix }

// Prefix returns the prefix of a prefix scope.
func (s Scope) Prefix() (string, bool) { return s.value, s.set && s.isPrefix }

// IsZero reports whether s is the zero Scope, which allows nothing.
func (s Scope) IsZero() bool { return !s.set }

// String describes the scope for people: `device "EV-101"`, `prefix "site-7."` or
// `every device`.
func (s Scope) String() string {
	switch {
	case !s.set:
		return "no device"
	case s.isPrefix && s.value == "":
		return "every device"
	case s.isPrefix:
		return "prefix " + strconv.Quote(s.value)
	default:
		return "device " + strconv.Quote(s.value)
	}
}

// Validate checks a scope before it is put in a token.
func (s Scope) Validate() error {
	if !s.set {
		return errors.New("scope is empty: name one device id or a prefix")
	}
	// Every non-empty prefix of a valid id is itself a valid id, so one grammar serves both.
	if s.isPrefix && s.value == "" || placement.ValidDeviceID(s.value) {
		return nil
	}
	if s.isPrefix {
		return fmt.Errorf("scope prefix %q is not the start of a device id (letters, digits, '.', '_', '-'; at most %d)", echo(s.value), placement.MaxDeviceIDLen)
	}
	return fmt.Errorf("scope device id %q is not a device id (letters, digits, '.', '_', '-'; at most %d)", echo(s.value), placement.MaxDeviceIDLen)
}

// scopeJSON is the wire form: exactly one of the two fields.
type scopeJSON struct {
	Device *string `json:"device,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
}

// MarshalJSON writes {"device":"…"} or {"prefix":"…"}.
func (s Scope) MarshalJSON() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	v := s.value
	if s.isPrefix {
		return json.Marshal(scopeJSON{Prefix: &v})
	}
	return json.Marshal(scopeJSON{Device: &v})
}

// UnmarshalJSON reads {"device":"…"} or {"prefix":"…"}, exactly one of them.
func (s *Scope) UnmarshalJSON(b []byte) error {
	var w scopeJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("scope is not an object with a device or a prefix: %w", err)
	}
	var out Scope
	switch {
	case w.Device != nil && w.Prefix != nil:
		return errors.New("scope names both a device and a prefix")
	case w.Device != nil:
		out = DeviceScope(*w.Device)
	case w.Prefix != nil:
		out = PrefixScope(*w.Prefix)
	default:
		return errors.New("scope names neither a device nor a prefix")
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*s = out
	return nil
}
