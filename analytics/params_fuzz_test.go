package analytics

import (
	"math"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
)

// FuzzQueryParameters feeds the analytics query parameters (window, end, step, threshold,
// pageSize, pageToken, silentFor) to their parsers: none panics, and whatever one accepts
// is within the bounds every handler relies on.
func FuzzQueryParameters(f *testing.F) {
	for _, seed := range []struct {
		length, end, step, token, silentFor string
		threshold                           float64
		size                                int32
	}{
		{"24h", "", "1h", "", "10m", 0.85, 0},
		{"7d", "2026-11-20T12:00:00Z", "6h", "100", "1h", 1, 50},
		{"213504d", "0001-01-01T00:00:00Z", "0s", "9223372036854775807", "-1s", math.NaN(), -1},
		{"90m", "9999-12-31T23:59:59.999999999Z", "8760h", "-5", "106752d", math.Inf(1), math.MaxInt32},
		{"1m", "1970-01-01T00:01:00Z", "1ns", "1e9", "", -0.5, 1000},
	} {
		f.Add(seed.length, seed.end, seed.step, seed.token, seed.silentFor, seed.threshold, seed.size)
	}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, length, end, step, token, silentFor string, threshold float64, size int32) {
		if w, err := window.Parse(length, end, now); err == nil {
			d := w.End.Sub(w.Start)
			if d < window.MinLength || d > window.MaxLength || w.Start.Before(window.MinTime) || w.End.After(window.MaxTime) {
				t.Errorf("window %q end %q accepted as [%s, %s)", length, end, w.Start, w.End)
			}
			_ = alertHours(w)
		}
		if s, err := window.ParseStep(step); err == nil && (s < time.Hour || s > window.MaxLength || s%time.Hour != 0) {
			t.Errorf("step %q accepted as %s", step, s)
		}
		if th, err := parseThreshold(&threshold, DefaultThreshold); err == nil && (th <= 0 || math.IsNaN(th) || math.IsInf(th, 0)) {
			t.Errorf("threshold %v accepted", th)
		}
		n, errSize := pageSize(size)
		off, errTok := offsetToken(token)
		if errSize == nil && (n < 1 || n > maxPageSize) {
			t.Errorf("pageSize %d accepted as %d", size, n)
		}
		if errTok == nil && (off < 0 || off > maxOffset) {
			t.Errorf("pageToken %q accepted as offset %d", token, off)
		}
		if errSize == nil && errTok == nil && off+n < off {
			t.Errorf("offset %d + page %d overflows", off, n)
		}
		for _, err := range []error{errSize, errTok} {
			if err != nil && len(err.Error()) > maxErrorBytes {
				t.Errorf("an error echoes %d bytes", len(err.Error()))
			}
		}
		h := &handler{s: &Service{cfg: Config{Now: func() time.Time { return now }}}}
		if cutoff, _, _, err := h.silentParams(silentRequest(silentFor, token, size)); err == nil && (cutoff.After(now) || now.Sub(cutoff) > window.MaxLength) {
			t.Errorf("silentFor %q accepted as cutoff %s", silentFor, cutoff)
		}
	})
}

func silentRequest(silentFor, token string, size int32) *analyticsv1.ListSilentRequest {
	return &analyticsv1.ListSilentRequest{SilentFor: silentFor, PageToken: token, PageSize: size}
}
