package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// The API server itself (OpenAPI schema and CEL rules from the CRD) refuses what the
// operator could not act on, with a message a person can act on.
func TestTheAPIServerRejectsInvalidFleets(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name    string
		fleet   string
		mod     func(*v1alpha1.FleetIngestion)
		wantMsg string
	}{
		{"zero gateway replicas", "zero", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Gateway.Replicas = ptr.To[int32](0) },
			"spec.gateway.replicas: Invalid value: 0: spec.gateway.replicas in body should be greater than or equal to 1"},
		{"zero ingester replicas", "zero-ing", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Ingester.Replicas = ptr.To[int32](0) },
			"spec.ingester.replicas in body should be greater than or equal to 1"},
		{"a name with a dot, which NATS subjects cannot carry", "fleet.a", nil,
			"metadata.name must be a lowercase DNS label of at most 40 characters starting with a letter (no dots)"},
		{"a name too long for derived object names", strings.Repeat("a", 41), nil,
			"metadata.name must be a lowercase DNS label of at most 40 characters"},
		{"a NATS URL without a scheme", "noscheme", func(fi *v1alpha1.FleetIngestion) { fi.Spec.NATS.URL = "nats.example.com:4222" },
			`spec.nats.url: Invalid value: "nats.example.com:4222": must be one or more nats://`},
		{"no shards", "noshards", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Shards = nil },
			"spec.shards"},
		{"no device keys without insecureNoAuth", "nodevkeys", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Auth.DeviceKeysSecretRef = nil },
			"spec.auth: Invalid value: deviceKeysSecretRef is required unless insecureNoAuth is true"},
		{"no users without insecureNoAuth", "nousers", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Auth.Users = nil },
			"users is required unless insecureNoAuth is true"},
		{"both oidc and keysSecretRef for users", "bothusers", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Auth.Users.OIDC = &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com/realms/x"}
		}, "spec.auth.users: Invalid value: exactly one of oidc and keysSecretRef is required"},
		{"neither oidc nor keysSecretRef for users", "nousersource", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Auth.Users = &v1alpha1.UsersAuthSpec{} },
			"exactly one of oidc and keysSecretRef is required"},
		{"insecureNoAuth with keys", "insecurekeys", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Auth.InsecureNoAuth = true },
			"insecureNoAuth cannot be combined with deviceKeysSecretRef or users"},
		{"an OIDC issuer over plain http", "httpissuer", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Auth.Users = &v1alpha1.UsersAuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "http://localhost:8080/realms/x"}}
		}, "spec.auth.users.oidc.issuerURL: Invalid value: \"http://localhost:8080/realms/x\": must be an https:// URL without query or fragment"},
		{"a pod label the operator selects its pods by", "ownlabel", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Ingester.PodLabels = map[string]string{"team": "energy", "fleetingest.io/shard": "0"}
		}, "spec.ingester.podLabels: Invalid value: podLabels cannot set the operator's own labels"},
		{"a pod annotation under the operator's prefix", "ownannotation", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.PodAnnotations = map[string]string{"fleetingest.io/secrets-checksum": "x"}
		}, "spec.gateway.podAnnotations: Invalid value: podAnnotations cannot set keys under fleetingest.io/"},
		{"an OIDC issuer with a query", "queryissuer", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Auth.Users = &v1alpha1.UsersAuthSpec{OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com/?realm=x"}}
		}, "must be an https:// URL without query or fragment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fi := h.fleetIngestion(tc.fleet, 2)
			if tc.mod != nil {
				tc.mod(fi)
			}
			err := h.c.Create(h.ctx, fi)
			if err == nil {
				t.Fatalf("created; want refused with %q", tc.wantMsg)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

// A fleet without spec.auth is refused: authentication is never off by omission.
func TestTheAPIServerRequiresAuth(t *testing.T) {
	h := newHarness(t)
	body := `{"apiVersion":"fleetingest.io/v1alpha1","kind":"FleetIngestion","metadata":{"name":"noauth","namespace":"` + h.ns + `"},
		"spec":{"nats":{"url":"nats://n:4222"},"shards":[{"dsnSecretRef":{"name":"s","key":"dsn"}}]}}`
	err := createRaw(h, body)
	if err == nil || !strings.Contains(err.Error(), "spec.auth: Required value") {
		t.Errorf("error = %v, want spec.auth required", err)
	}
}

// What authentication may look like: insecureNoAuth alone, local user keys, or an OIDC
// issuer whose audience and roles claim default.
func TestTheAPIServerAcceptsEachWayOfAuthenticating(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name string
		auth v1alpha1.AuthSpec
	}{
		{"insecure", v1alpha1.AuthSpec{InsecureNoAuth: true}},
		{"local", v1alpha1.AuthSpec{DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: "d"}, Users: &v1alpha1.UsersAuthSpec{KeysSecretRef: &v1alpha1.SecretRef{Name: "u"}}}},
		{"oidc", v1alpha1.AuthSpec{DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: "d"}, Users: &v1alpha1.UsersAuthSpec{
			OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com/realms/fleet"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.c.Create(h.ctx, h.fleetIngestion(tc.name, 1, func(fi *v1alpha1.FleetIngestion) { fi.Spec.Auth = tc.auth })); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
	o := h.get("oidc").Spec.Auth.Users.OIDC
	if o.Audience != "fleetingest" || o.RolesClaim != "roles" {
		t.Errorf("defaulted OIDC = %+v, want audience fleetingest and roles claim roles", o)
	}
}

// Durations travel as strings; Go's metav1.Duration always encodes a valid one, so the
// unparseable ones are sent as raw JSON.
func TestTheAPIServerRejectsUnparseableDurations(t *testing.T) {
	h := newHarness(t)
	for _, field := range []string{`"retention":{"history":"90 days"}`, `"gateway":{"maxLateness":"7d"}`, `"nats":{"url":"nats://n:4222","maxAge":"-1h"}`} {
		t.Run(field, func(t *testing.T) {
			body := `{"apiVersion":"fleetingest.io/v1alpha1","kind":"FleetIngestion","metadata":{"name":"dur","namespace":"` + h.ns + `"},
				"spec":{"nats":{"url":"nats://n:4222"},"shards":[{"dsnSecretRef":{"name":"s","key":"dsn"}}],"auth":{"insecureNoAuth":true},` + field + `}}`
			if strings.Contains(field, `"nats"`) {
				body = `{"apiVersion":"fleetingest.io/v1alpha1","kind":"FleetIngestion","metadata":{"name":"dur","namespace":"` + h.ns + `"},
				"spec":{"shards":[{"dsnSecretRef":{"name":"s","key":"dsn"}}],"auth":{"insecureNoAuth":true},` + field + `}}`
			}
			err := createRaw(h, body)
			if err == nil || !strings.Contains(err.Error(), "must be a duration such as") {
				t.Errorf("error = %v, want a duration message", err)
			}
		})
	}
}

// spec.shards may only be appended to: a shard's index places its readings, so the API
// server refuses a removal, a reordering or an insertion before other shards, each with a
// message that says what may be done instead.
func TestShardsMayOnlyBeAppendedTo(t *testing.T) {
	h := newHarness(t)
	h.create(h.fleetIngestion("grows", 2))
	shard := func(name string) v1alpha1.ShardSpec {
		return v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: name, Key: "dsn"}}
	}
	const removed = "shards cannot be removed: shrinking a fleet needs a copy-based drain"
	const reordered = "shards cannot be reordered or inserted before others: a shard's index places its readings; append new shards at the end of the list"
	for _, tc := range []struct {
		name   string
		shards []string
		want   string
	}{
		{"removing the last shard", []string{"shard-0"}, removed},
		{"removing the first shard", []string{"shard-1"}, removed},
		{"swapping two shards", []string{"shard-1", "shard-0"}, reordered},
		{"inserting a shard before the others", []string{"shard-2", "shard-0", "shard-1"}, reordered},
		{"moving a shard to the end behind a new one", []string{"shard-2", "shard-1", "shard-0"}, reordered},
		{"appending a shard that is already listed", []string{"shard-0", "shard-1", "shard-0"}, reordered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi := h.get("grows")
			fi.Spec.Shards = nil
			for _, n := range tc.shards {
				fi.Spec.Shards = append(fi.Spec.Shards, shard(n))
			}
			err := h.c.Update(h.ctx, fi)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("update to %v: err = %v, want refused with %q", tc.shards, err, tc.want)
			}
		})
	}

	fi := h.get("grows")
	fi.Spec.Shards = append(fi.Spec.Shards, shard("shard-2"), shard("shard-3"))
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatalf("appending two shards: %v", err)
	}
	// A shard may be pointed at another Secret in place (the same database moved).
	fi = h.get("grows")
	fi.Spec.Shards[1].DSNSecretRef.Name = "shard-1-new"
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Errorf("changing a shard's secret: %v", err)
	}
	if got := len(h.get("grows").Spec.Shards); got != 4 {
		t.Errorf("shards after the updates = %d, want 4", got)
	}
}

func TestDefaultsAreFilledByTheAPIServer(t *testing.T) {
	h := newHarness(t)
	fi := h.fleetIngestion("defaults", 1)
	fi.Spec.NATS = v1alpha1.NATSSpec{URL: "nats://nats:4222"}
	h.create(fi)
	fi = h.get("defaults")
	s := fi.Spec
	if s.DeletionPolicy != v1alpha1.DeletionPolicyRetain || s.NATS.StreamReplicas != 1 || s.NATS.MaxBytesPerShard.String() != "1Gi" ||
		ptr.Deref(s.Gateway.Replicas, 0) != 1 || ptr.Deref(s.Ingester.Replicas, 0) != 1 || ptr.Deref(s.Analytics.Replicas, 0) != 1 ||
		s.Retention.History.Duration != 2160*time.Hour || s.ImagePullPolicy != "IfNotPresent" {
		t.Errorf("defaulted spec = %+v", s)
	}
}
