package analytics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/test/natstest"
)

func TestBackfillIntervalChecksTheWindow(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	const week = 7 * 24 * time.Hour
	ago := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-d)) }
	end := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	tests := []struct {
		name     string
		from, to *timestamppb.Timestamp
		want     registry.Interval
		says     string
	}{
		{"an open interval three hours ago", ago(3 * time.Hour), nil,
			registry.Interval{MeterID: "m-1", From: now.Add(-3 * time.Hour)}, ""},
		{"a closed interval in the past", ago(3 * time.Hour), ago(time.Hour),
			registry.Interval{MeterID: "m-1", From: now.Add(-3 * time.Hour), To: end(time.Hour)}, ""},
		{"from now, to now is empty", ago(0), ago(0), registry.Interval{}, "is not after from"},
		{"from exactly now", ago(0), nil, registry.Interval{MeterID: "m-1", From: now}, ""},
		{"from at the window's oldest instant", ago(week), nil, registry.Interval{MeterID: "m-1", From: now.Add(-week)}, ""},
		{"to ending now", ago(time.Hour), ago(0), registry.Interval{MeterID: "m-1", From: now.Add(-time.Hour), To: end(0)}, ""},
		{"from in the future", ago(-time.Second), nil, registry.Interval{}, "is in the future"},
		{"from older than the window", ago(week + time.Second), nil, registry.Interval{}, "older than the readings' acceptance window of 168h0m0s"},
		{"to before from", ago(time.Hour), ago(2 * time.Hour), registry.Interval{}, "is not after from"},
		{"to in the future", ago(time.Hour), ago(-time.Minute), registry.Interval{}, "to 2026-11-20T12:01:00Z is in the future"},
		{"to without from", nil, ago(time.Hour), registry.Interval{}, "to needs from"},
		{"an invalid from", &timestamppb.Timestamp{Seconds: -1 << 62}, nil, registry.Interval{}, "from is not a valid time"},
		{"an invalid to", ago(time.Hour), &timestamppb.Timestamp{Nanos: -1}, registry.Interval{}, "to is not a valid time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := backfillInterval("m-1", tc.from, tc.to, now, week)
			if tc.says != "" {
				var ce *connect.Error
				if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.Contains(ce.Message(), tc.says) {
					t.Fatalf("err = %v, want InvalidArgument saying %q", err, tc.says)
				}
				return
			}
			if err != nil || !got.Equal(tc.want) {
				t.Fatalf("backfillInterval = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestMaxLatenessDefaultsToTheGatewaysAndStaysWithinTheRegistryRetention(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	top := ingester.Topology{Namespace: "test", Fleet: "lateness", Shards: 1}
	if _, err := ingester.EnsureStreams(t.Context(), js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(t.Context(), js, top.MappingBucket(), registry.Config{Retention: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	base := Config{Shards: shards.Config{DSNs: []string{"postgres://none@127.0.0.1:1/none"}}, ShardMap: placement.Fixed{Map: placement.MustShardMap(1)}, Registry: reg}
	tests := []struct {
		name        string
		maxLateness time.Duration
		want        time.Duration
		says        string
	}{
		{"the default is the gateway's", 0, telemetry.DefaultLimits().MaxLateness, ""},
		{"up to the registry's retention", 30 * 24 * time.Hour, 30 * 24 * time.Hour, ""},
		{"beyond the registry's retention", 31 * 24 * time.Hour, 0, "max lateness 744h0m0s out of range 0..720h0m0s"},
		{"negative", -time.Hour, 0, "max lateness -1h0m0s out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.MaxLateness = tc.maxLateness
			cfg = cfg.withDefaults()
			err := cfg.validate()
			if tc.says != "" {
				if err == nil || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("validate = %v, want an error saying %q", err, tc.says)
				}
				return
			}
			if err != nil || cfg.MaxLateness != tc.want {
				t.Fatalf("MaxLateness %s, %v; want %s", cfg.MaxLateness, err, tc.want)
			}
		})
	}
}
