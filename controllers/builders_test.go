package controllers

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// newFleet builds a resolved fleet for the pure builders; mods adjust the resource first.
func newFleet(t *testing.T, shards int, mods ...func(*v1alpha1.FleetIngestion)) fleet {
	t.Helper()
	fi := &v1alpha1.FleetIngestion{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet-a", Namespace: "prod", UID: types.UID("uid-1"), Generation: 3},
		Spec: v1alpha1.FleetIngestionSpec{
			NATS: v1alpha1.NATSSpec{URL: "nats://nats:4222"},
			Auth: v1alpha1.AuthSpec{
				DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: "device-keys"},
				Users:               &v1alpha1.UsersAuthSpec{KeysSecretRef: &v1alpha1.SecretRef{Name: "user-keys"}},
			},
		},
	}
	for i := 0; i < shards; i++ {
		fi.Spec.Shards = append(fi.Spec.Shards, v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: "pg", Key: "dsn"}})
	}
	for _, m := range mods {
		m(fi)
	}
	f, err := resolveFleet(fi, "img:default")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func withCreds(fi *v1alpha1.FleetIngestion) {
	fi.Spec.NATS.CredentialsSecretRef = &v1alpha1.SecretKeyRef{Name: "nats", Key: "creds"}
}

// withOIDC has analytics verify users' tokens from an OIDC issuer instead of local keys.
func withOIDC(audience, rolesClaim string) func(*v1alpha1.FleetIngestion) {
	return func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Auth.Users = &v1alpha1.UsersAuthSpec{OIDC: &v1alpha1.OIDCSpec{
			IssuerURL: "https://idp.example.com/realms/fleet", Audience: audience, RolesClaim: rolesClaim,
		}}
	}
}

// withoutAuth turns authentication off.
func withoutAuth(fi *v1alpha1.FleetIngestion) {
	fi.Spec.Auth = v1alpha1.AuthSpec{InsecureNoAuth: true}
}

func TestArgs(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"the gateway names the fleet's NATS objects", gatewayArgs(newFleet(t, 2)),
			[]string{"gateway", "--nats-url=nats://nats:4222", "--namespace=prod", "--fleet=fleet-a", "--http-addr=:8080"},
			[]string{"--nats-creds=/etc/fleetingest/nats/creds", "--max-lateness"}},
		{"credentials arrive as a mounted file", gatewayArgs(newFleet(t, 2, withCreds)),
			[]string{"--nats-creds=/etc/fleetingest/nats/creds"}, nil},
		{"the gateway's lateness window comes from the spec", gatewayArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.MaxLateness = &metav1.Duration{Duration: 48 * time.Hour}
		})), []string{"--max-lateness=48h0m0s"}, nil},
		{"ingesters refuse messages outside the gateway's lateness window", ingesterArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.MaxLateness = &metav1.Duration{Duration: 48 * time.Hour}
		}), 0), []string{"--max-lateness=48h0m0s"}, nil},
		{"analytics starts mappings within the gateway's lateness window", analyticsArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.MaxLateness = &metav1.Duration{Duration: 48 * time.Hour}
		})), []string{"--max-lateness=48h0m0s"}, nil},
		{"an ingester names its shard (not the fleet's count) and its DSN file", ingesterArgs(newFleet(t, 4), 2),
			[]string{"ingester", "--shard=2", "--dsn-file=/etc/fleetingest/dsn/dsn", "--history-retention=2160h0m0s"}, nil},
		{"history retention comes from the spec", ingesterArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Retention.History = &metav1.Duration{Duration: 720 * time.Hour}
		}), 0), []string{"--history-retention=720h0m0s"}, nil},
		{"analytics gets every shard's DSN file", analyticsArgs(newFleet(t, 3)),
			[]string{"analytics", "--shard-dsn-file=/etc/fleetingest/shards/0/dsn", "--shard-dsn-file=/etc/fleetingest/shards/1/dsn", "--shard-dsn-file=/etc/fleetingest/shards/2/dsn"}, nil},
		{"migrate reads the same DSN file as the ingester", migrateArgs(), []string{"migrate", "--dsn-file=/etc/fleetingest/dsn/dsn"}, nil},
		{"the gateway serves metrics on their own port", gatewayArgs(newFleet(t, 1)), []string{"--http-addr=:8080", "--metrics-addr=:9090"}, nil},
		{"an ingester serves metrics on their own port", ingesterArgs(newFleet(t, 1), 0), []string{"--http-addr=:8080", "--metrics-addr=:9090"}, nil},
		{"analytics serves metrics on their own port", analyticsArgs(newFleet(t, 1)), []string{"--http-addr=:8080", "--metrics-addr=:9090"}, nil},
		{"the gateway verifies device tokens with the mounted device keys", gatewayArgs(newFleet(t, 1)),
			[]string{"--device-keys=/etc/fleetingest/auth/device"}, []string{"--insecure-no-auth"}},
		{"analytics verifies user tokens with a local issuer's mounted keys", analyticsArgs(newFleet(t, 1)),
			[]string{"--user-keys=/etc/fleetingest/auth/user"}, []string{"--oidc-", "--insecure-no-auth"}},
		{"analytics verifies user tokens from the OIDC issuer of the spec", analyticsArgs(newFleet(t, 1, withOIDC("fleet-api", "realm_access.roles"))),
			[]string{"--oidc-issuer-url=https://idp.example.com/realms/fleet", "--oidc-audience=fleet-api", "--oidc-roles-claim=realm_access.roles"},
			[]string{"--user-keys", "--insecure-no-auth"}},
		{"an OIDC issuer without audience or roles claim gets their defaults", analyticsArgs(newFleet(t, 1, withOIDC("", ""))),
			[]string{"--oidc-audience=fleetingest", "--oidc-roles-claim=roles"}, nil},
		{"insecureNoAuth asks devices for no token", gatewayArgs(newFleet(t, 1, withoutAuth)),
			[]string{"--insecure-no-auth"}, []string{"--device-keys"}},
		{"insecureNoAuth asks users for no token", analyticsArgs(newFleet(t, 1, withoutAuth)),
			[]string{"--insecure-no-auth"}, []string{"--user-keys", "--oidc-"}},
		{"ingesters ask for no token (nobody calls them)", ingesterArgs(newFleet(t, 1), 0),
			nil, []string{"--insecure-no-auth", "--device-keys", "--user-keys", "--oidc-"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !slices.Contains(tc.args, w) {
					t.Errorf("args %v lack %s", tc.args, w)
				}
			}
			for _, n := range tc.not {
				for _, a := range tc.args {
					if strings.HasPrefix(a, n) {
						t.Errorf("args %v hold %s", tc.args, a)
					}
				}
			}
		})
	}
}

func TestPodDisruptionBudgetsOnlyAboveOneReplica(t *testing.T) {
	for _, tc := range []struct {
		replicas *int32
		want     bool
	}{{nil, false}, {ptr.To[int32](1), false}, {ptr.To[int32](2), true}, {ptr.To[int32](5), true}} {
		f := newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) { fi.Spec.Gateway.Replicas = tc.replicas })
		pdb := podDisruptionBudget(f, gatewayName(f), gatewayPod(f))
		if got := pdb != nil; got != tc.want {
			t.Errorf("replicas %v: PDB = %v, want %v", ptr.Deref(tc.replicas, 0), got, tc.want)
		}
		if pdb != nil && pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PDB maxUnavailable = %v, want 1", pdb.Spec.MaxUnavailable)
		}
	}
}

func TestIngressRoutesAnalyticsOnlyWhenOptedIn(t *testing.T) {
	cases := []struct {
		name  string
		spec  *v1alpha1.IngressSpec
		paths []string
		tls   bool
	}{
		{"no ingress spec, no Ingress", nil, nil, false},
		{"the gateway only by default", &v1alpha1.IngressSpec{Host: "t.example.com"}, []string{"/v1/telemetry→fleet-a-gateway"}, false},
		{"analytics when opted in, with TLS", &v1alpha1.IngressSpec{Host: "t.example.com", TLSSecretName: "tls", ExposeAnalytics: true},
			[]string{"/v1/telemetry→fleet-a-gateway", "/v1/analytics→fleet-a-analytics", "/v1/status→fleet-a-analytics",
				"/fleetingest.analytics.v1.AnalyticsService→fleet-a-analytics"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ing := ingress(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) { fi.Spec.Ingress = tc.spec }))
			if tc.spec == nil {
				if ing != nil {
					t.Fatalf("ingress = %+v, want none", ing)
				}
				return
			}
			var paths []string
			for _, p := range ing.Spec.Rules[0].HTTP.Paths {
				paths = append(paths, *p.Path+"→"+*p.Backend.Service.Name)
			}
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("paths = %v, want %v", paths, tc.paths)
			}
			if got := len(ing.Spec.TLS) == 1; got != tc.tls {
				t.Errorf("TLS = %v, want %v", ing.Spec.TLS, tc.tls)
			}
		})
	}
}

func TestPodsAreHardened(t *testing.T) {
	f := newFleet(t, 2, withCreds)
	for name, p := range map[string]podSpec{"gateway": gatewayPod(f), "ingester": ingesterPod(f, 1), "analytics": analyticsPod(f)} {
		tpl := podTemplate(f, p)
		ps := tpl.Spec
		if !*ps.SecurityContext.RunAsNonRoot || *ps.AutomountServiceAccountToken {
			t.Errorf("%s pod security = %+v", name, ps.SecurityContext)
		}
		for _, c := range append(ps.InitContainers, ps.Containers...) {
			sc := c.SecurityContext
			if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
				t.Errorf("%s container %s security = %+v", name, *c.Name, sc)
			}
		}
		main := ps.Containers[0]
		if *main.LivenessProbe.HTTPGet.Path != "/healthz" || *main.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s probes = %+v %+v", name, main.LivenessProbe, main.ReadinessProbe)
		}
		if tpl.Annotations["prometheus.io/scrape"] != "true" || tpl.Annotations["prometheus.io/port"] != "9090" {
			t.Errorf("%s annotations = %v", name, tpl.Annotations)
		}
		mounted := map[string]bool{}
		for _, m := range main.VolumeMounts {
			mounted[*m.MountPath] = true
		}
		if !mounted[natsCredsDir] || !mounted[tmpDir] {
			t.Errorf("%s mounts = %v, want the NATS credentials and /tmp", name, mounted)
		}
	}
}

func TestResolveFleet(t *testing.T) {
	fi := &v1alpha1.FleetIngestion{ObjectMeta: metav1.ObjectMeta{Name: "f", Namespace: "n"},
		Spec: v1alpha1.FleetIngestionSpec{Shards: make([]v1alpha1.ShardSpec, 2), Auth: v1alpha1.AuthSpec{InsecureNoAuth: true}}}
	if _, err := resolveFleet(fi, ""); err == nil || !strings.Contains(err.Error(), "--default-image") {
		t.Errorf("no image anywhere: err = %v", err)
	}
	f, err := resolveFleet(fi, "img:1")
	if err != nil || f.image != "img:1" || f.topology().Shards != 2 {
		t.Errorf("resolveFleet = %+v, %v", f, err)
	}
	o := f.streamOptions()
	if o.Replicas != 1 || o.MaxBytes != ingester.DefaultMaxBytes || o.MaxAge != 0 {
		t.Errorf("stream options of an undefaulted spec = %+v", o)
	}
	if !f.networkPolicies || len(f.ingressFrom) != 1 || len(f.metricsFrom) != 1 ||
		f.ingressFrom[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "ingress-nginx" ||
		f.metricsFrom[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
		t.Errorf("network policy defaults of an undefaulted spec = %v %+v %+v", f.networkPolicies, f.ingressFrom, f.metricsFrom)
	}
}

// The operator refuses what the CRD's rules refuse, for objects that never met them.
func TestResolveFleetRefusesAnIncompleteAuthSpec(t *testing.T) {
	keys := &v1alpha1.SecretRef{Name: "k"}
	for _, tc := range []struct {
		name string
		auth v1alpha1.AuthSpec
		want string
	}{
		{"no auth at all", v1alpha1.AuthSpec{}, "spec.auth needs deviceKeysSecretRef and users"},
		{"no way to verify users", v1alpha1.AuthSpec{DeviceKeysSecretRef: keys}, "spec.auth needs deviceKeysSecretRef and users"},
		{"two ways to verify users", v1alpha1.AuthSpec{DeviceKeysSecretRef: keys, Users: &v1alpha1.UsersAuthSpec{
			KeysSecretRef: keys, OIDC: &v1alpha1.OIDCSpec{IssuerURL: "https://idp"}}}, "exactly one of oidc and keysSecretRef"},
		{"keys and insecureNoAuth", v1alpha1.AuthSpec{DeviceKeysSecretRef: keys, InsecureNoAuth: true}, "cannot be combined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi := &v1alpha1.FleetIngestion{ObjectMeta: metav1.ObjectMeta{Name: "f", Namespace: "n"},
				Spec: v1alpha1.FleetIngestionSpec{Shards: make([]v1alpha1.ShardSpec, 1), Auth: tc.auth}}
			if _, err := resolveFleet(fi, "img:1"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFleetStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	f := newFleet(t, 2)
	ready := func(name string) deploymentState {
		return deploymentState{name: name, desired: 1, ready: 1, generation: 2, observedGeneration: 2}
	}
	allReady := &observed{deployments: map[string]deploymentState{}}
	for _, n := range []string{gatewayName(f), analyticsName(f), ingesterName(f, 0), ingesterName(f, 1)} {
		allReady.deployments[n] = ready(n)
	}
	provisioned := streamsResult{provisioned: ingester.Provisioned{Streams: []ingester.StreamState{{Shard: 0, Pending: 7}, {Shard: 1}}}}
	grown := mustGrow(t, placement.MustShardMap(1), 2, now.Add(-time.Hour))
	settled := shardMapResult{m: grown, step: settledStep(grown, now.Time)}
	old := v1alpha1.FleetIngestionStatus{ObservedGeneration: 2, Shards: []v1alpha1.ShardStatus{{Index: 0, ConsumerLag: 42}},
		ShardMap: shardMapStatus(grown), ShardMapVersions: 2}

	cases := []struct {
		name    string
		obs     *observed
		streams streamsResult
		apply   error
		want    map[string]string // condition type → status/reason
		gen     int64
		lag0    int64
	}{
		{"everything available", allReady, provisioned, nil,
			map[string]string{v1alpha1.ConditionReady: "True/Reconciled", v1alpha1.ConditionShardsReady: "True/Available",
				v1alpha1.ConditionResharding: "False/Complete"}, 3, 7},
		{"NATS unreachable holds observedGeneration, the last lag and the last shard map", allReady,
			streamsResult{err: errors.New("NATS unreachable: connecting to nats://nats:4222"), reason: v1alpha1.ReasonNATSUnreachable}, nil,
			map[string]string{v1alpha1.ConditionStreamsReady: "False/NATSUnreachable", v1alpha1.ConditionReady: "False/ComponentsNotReady",
				v1alpha1.ConditionResharding: "Unknown/NATSUnreachable"}, 2, 42},
		{"an ingester not ready yet", &observed{deployments: map[string]deploymentState{}}, provisioned, nil,
			map[string]string{v1alpha1.ConditionShardsReady: "False/Progressing", v1alpha1.ConditionStreamsReady: "True/Provisioned"}, 3, 7},
		{"an apply refused", allReady, provisioned, errors.New("applying deployment: forbidden"),
			map[string]string{v1alpha1.ConditionGatewayReady: "False/ApplyFailed"}, 2, 7},
		{"a missing device keys Secret holds the gateway and Ready, and observedGeneration", withSecretProblem(allReady, componentGateway, v1alpha1.ReasonSecretNotFound),
			provisioned, nil,
			map[string]string{v1alpha1.ConditionGatewayReady: "False/SecretNotFound", v1alpha1.ConditionReady: "False/SecretNotFound",
				v1alpha1.ConditionAnalyticsReady: "True/Available", v1alpha1.ConditionAuthEnabled: "True/TokensRequired"}, 2, 7},
		{"user keys without a .pub key hold analytics", withSecretProblem(allReady, componentAnalytics, v1alpha1.ReasonSecretInvalid),
			provisioned, nil,
			map[string]string{v1alpha1.ConditionAnalyticsReady: "False/SecretInvalid", v1alpha1.ConditionReady: "False/SecretInvalid"}, 2, 7},
		{"a missing DSN Secret holds the shards and Ready, and observedGeneration", withSecretProblem(allReady, componentIngester, v1alpha1.ReasonSecretNotFound),
			provisioned, nil,
			map[string]string{v1alpha1.ConditionShardsReady: "False/SecretNotFound", v1alpha1.ConditionReady: "False/SecretNotFound",
				v1alpha1.ConditionGatewayReady: "True/Available"}, 2, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sm := settled
			if tc.streams.err != nil {
				sm = shardMapResult{step: unreadStep(tc.streams.reason, tc.streams.err)}
			}
			st := fleetStatus(f, old, tc.obs, tc.streams, sm, tc.apply, now)
			for typ, want := range tc.want {
				var got string
				for _, c := range st.Conditions {
					if c.Type == typ {
						got = string(c.Status) + "/" + c.Reason
						if c.ObservedGeneration != 3 || !c.LastTransitionTime.Equal(&now) {
							t.Errorf("%s stamped generation %d at %v", typ, c.ObservedGeneration, c.LastTransitionTime)
						}
					}
				}
				if got != want {
					t.Errorf("%s = %s, want %s", typ, got, want)
				}
			}
			if st.ObservedGeneration != tc.gen || st.Shards[0].ConsumerLag != tc.lag0 || st.ShardCount != 2 ||
				st.ShardMapVersions != 2 || len(st.ShardMap.Versions) != 2 || st.ShardMap.Versions[1].Shards != 2 {
				t.Errorf("status = observedGeneration %d lag %d shards %d shard map %d version(s) %+v",
					st.ObservedGeneration, st.Shards[0].ConsumerLag, st.ShardCount, st.ShardMapVersions, st.ShardMap)
			}
		})
	}

	// Ready names the Secret a person has to create.
	st := fleetStatus(f, old, withSecretProblem(allReady, componentGateway, v1alpha1.ReasonSecretNotFound), provisioned, settled, nil, now)
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); !strings.Contains(c.Message, "secret prod/device-keys (spec.auth.deviceKeysSecretRef) not found") {
		t.Errorf("Ready message = %q, want the missing Secret named", c.Message)
	}

	// A second pass with the same observations keeps every condition's transition time.
	first := fleetStatus(f, old, allReady, provisioned, settled, nil, now)
	later := metav1.NewTime(now.Add(time.Hour))
	second := fleetStatus(f, first, allReady, provisioned, settled, nil, later)
	for i := range second.Conditions {
		if !second.Conditions[i].LastTransitionTime.Equal(&now) {
			t.Errorf("%s moved its transition time on an unchanged pass", second.Conditions[i].Type)
		}
	}
}

// withSecretProblem is obs with a component's auth Secret (the ingesters': shard 0's DSN)
// reported as reason.
func withSecretProblem(obs *observed, component, reason string) *observed {
	o := *obs
	s := mountedSecret{component: componentGateway, shard: -1, field: "spec.auth.deviceKeysSecretRef", name: "device-keys", verificationKeys: true}
	switch component {
	case componentAnalytics:
		s = mountedSecret{component: componentAnalytics, shard: -1, field: "spec.auth.users.keysSecretRef", name: "user-keys", verificationKeys: true}
	case componentIngester:
		s = mountedSecret{component: componentIngester, shard: 0, field: "spec.shards[0].dsnSecretRef", name: "pg", key: "dsn"}
	}
	var secret *corev1.Secret
	if reason == v1alpha1.ReasonSecretInvalid {
		secret = &corev1.Secret{Data: map[string][]byte{"README": nil}}
	}
	o.secretProblems = map[string][]secretProblem{component: {*checkSecret("prod", s, secret)}}
	return &o
}

func TestAuthEnabledSaysWhetherTokensAreAsked(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name    string
		mod     func(*v1alpha1.FleetIngestion)
		want    string
		message string
		ready   string
	}{
		{"local keys", func(*v1alpha1.FleetIngestion) {}, "True/TokensRequired",
			"device tokens verified with the keys of secret device-keys; user tokens verified with the keys of secret user-keys", "every component is ready"},
		{"OIDC", withOIDC("", ""), "True/TokensRequired", "user tokens from the OIDC issuer https://idp.example.com/realms/fleet", "every component is ready"},
		{"insecureNoAuth", withoutAuth, "False/InsecureNoAuth", "spec.auth.insecureNoAuth", "authentication is off (spec.auth.insecureNoAuth)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 1, tc.mod)
			obs := &observed{deployments: map[string]deploymentState{}}
			for _, n := range []string{gatewayName(f), analyticsName(f), ingesterName(f, 0)} {
				obs.deployments[n] = deploymentState{name: n, desired: 1, ready: 1, generation: 1, observedGeneration: 1}
			}
			st := fleetStatus(f, v1alpha1.FleetIngestionStatus{}, obs, streamsResult{}, shardMapResult{}, nil, now)
			c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionAuthEnabled)
			if c == nil || string(c.Status)+"/"+c.Reason != tc.want || !strings.Contains(c.Message, tc.message) {
				t.Errorf("AuthEnabled = %+v, want %s saying %q", c, tc.want, tc.message)
			}
			r := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			if r.Status != metav1.ConditionTrue || !strings.Contains(r.Message, tc.ready) {
				t.Errorf("Ready = %+v, want True saying %q (AuthEnabled does not count towards it)", r, tc.ready)
			}
		})
	}
}

func TestCacheOptionsWatchOnlyTheListedNamespacesAndTheOperatorsObjects(t *testing.T) {
	all := CacheOptions(nil)
	if all.DefaultNamespaces != nil {
		t.Errorf("no namespaces: DefaultNamespaces = %v, want every namespace", all.DefaultNamespaces)
	}
	some := CacheOptions([]string{"fleet-a", " ", "fleet-b "})
	if got := slices.Sorted(maps.Keys(some.DefaultNamespaces)); !slices.Equal(got, []string{"fleet-a", "fleet-b"}) {
		t.Errorf("DefaultNamespaces = %v, want fleet-a and fleet-b", got)
	}
	kinds := map[string]bool{}
	for o, by := range some.ByObject {
		kinds[typeName(o)] = true
		if by.Label.String() != "app.kubernetes.io/managed-by=fleetingest-operator" {
			t.Errorf("%s cached by %q, want the operator's label", typeName(o), by.Label)
		}
	}
	for _, want := range []string{"*v1.Deployment", "*v1.Service", "*v1.ConfigMap", "*v1.Ingress", "*v1.PodDisruptionBudget", "*v1.NetworkPolicy"} {
		if !kinds[want] {
			t.Errorf("the cache does not filter %s by label (has %v)", want, kinds)
		}
	}
}
