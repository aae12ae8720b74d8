package controllers

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// newFleet builds a resolved fleet for the pure builders; mods adjust the resource first.
func newFleet(t *testing.T, shards int, mods ...func(*v1alpha1.FleetIngestion)) fleet {
	t.Helper()
	fi := &v1alpha1.FleetIngestion{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet-a", Namespace: "prod", UID: types.UID("uid-1"), Generation: 3},
		Spec:       v1alpha1.FleetIngestionSpec{NATS: v1alpha1.NATSSpec{URL: "nats://nats:4222"}},
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

func TestArgs(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"the gateway reads the slot map from the ConfigMap", gatewayArgs(newFleet(t, 2)),
			[]string{"gateway", "--nats-url=nats://nats:4222", "--namespace=prod", "--fleet=fleet-a", "--slot-map-file=/etc/fleetingest/slotmap/slotmap.json", "--http-addr=:8080"},
			[]string{"--nats-creds=/etc/fleetingest/nats/creds", "--max-lateness"}},
		{"credentials arrive as a mounted file", gatewayArgs(newFleet(t, 2, withCreds)),
			[]string{"--nats-creds=/etc/fleetingest/nats/creds"}, nil},
		{"the gateway's lateness window comes from the spec", gatewayArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.MaxLateness = &metav1.Duration{Duration: 48 * time.Hour}
		})), []string{"--max-lateness=48h0m0s"}, nil},
		{"an ingester names its shard, the shard count and its DSN file", ingesterArgs(newFleet(t, 4), 2),
			[]string{"ingester", "--shards=4", "--shard=2", "--dsn-file=/etc/fleetingest/dsn/dsn", "--history-retention=2160h0m0s"}, nil},
		{"history retention comes from the spec", ingesterArgs(newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Retention.History = &metav1.Duration{Duration: 720 * time.Hour}
		}), 0), []string{"--history-retention=720h0m0s"}, nil},
		{"analytics gets every shard's DSN file", analyticsArgs(newFleet(t, 3)),
			[]string{"analytics", "--shard-dsn-file=/etc/fleetingest/shards/0/dsn", "--shard-dsn-file=/etc/fleetingest/shards/1/dsn", "--shard-dsn-file=/etc/fleetingest/shards/2/dsn"}, nil},
		{"migrate reads the same DSN file as the ingester", migrateArgs(), []string{"migrate", "--dsn-file=/etc/fleetingest/dsn/dsn"}, nil},
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
		if tpl.Annotations["prometheus.io/scrape"] != "true" || tpl.Annotations["prometheus.io/port"] != "8080" {
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
		Spec: v1alpha1.FleetIngestionSpec{Shards: make([]v1alpha1.ShardSpec, 2)}}
	if _, err := resolveFleet(fi, ""); err == nil || !strings.Contains(err.Error(), "--default-image") {
		t.Errorf("no image anywhere: err = %v", err)
	}
	f, err := resolveFleet(fi, "img:1")
	if err != nil || f.image != "img:1" || f.slotMap.Shards != 2 {
		t.Errorf("resolveFleet = %+v, %v", f, err)
	}
	o := f.streamOptions()
	if o.Replicas != 1 || o.MaxBytes != ingester.DefaultMaxBytes || o.MaxAge != 0 {
		t.Errorf("stream options of an undefaulted spec = %+v", o)
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
	old := v1alpha1.FleetIngestionStatus{ObservedGeneration: 2, Shards: []v1alpha1.ShardStatus{{Index: 0, ConsumerLag: 42}}}

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
			map[string]string{v1alpha1.ConditionReady: "True/Reconciled", v1alpha1.ConditionShardsReady: "True/Available"}, 3, 7},
		{"NATS unreachable holds observedGeneration and the last lag", allReady,
			streamsResult{err: errors.New("NATS unreachable: connecting to nats://nats:4222"), reason: v1alpha1.ReasonNATSUnreachable}, nil,
			map[string]string{v1alpha1.ConditionStreamsReady: "False/NATSUnreachable", v1alpha1.ConditionReady: "False/ComponentsNotReady"}, 2, 42},
		{"an ingester not ready yet", &observed{deployments: map[string]deploymentState{}}, provisioned, nil,
			map[string]string{v1alpha1.ConditionShardsReady: "False/Progressing", v1alpha1.ConditionStreamsReady: "True/Provisioned"}, 3, 7},
		{"an apply refused", allReady, provisioned, errors.New("applying deployment: forbidden"),
			map[string]string{v1alpha1.ConditionGatewayReady: "False/ApplyFailed"}, 2, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := fleetStatus(f, old, tc.obs, tc.streams, tc.apply, now)
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
			if st.ObservedGeneration != tc.gen || st.Shards[0].ConsumerLag != tc.lag0 || st.ShardCount != 2 || st.SlotMap.Shards != 2 {
				t.Errorf("status = observedGeneration %d lag %d shards %d", st.ObservedGeneration, st.Shards[0].ConsumerLag, st.ShardCount)
			}
		})
	}

	// A second pass with the same observations keeps every condition's transition time.
	first := fleetStatus(f, old, allReady, provisioned, nil, now)
	later := metav1.NewTime(now.Add(time.Hour))
	second := fleetStatus(f, first, allReady, provisioned, nil, later)
	for i := range second.Conditions {
		if !second.Conditions[i].LastTransitionTime.Equal(&now) {
			t.Errorf("%s moved its transition time on an unchanged pass", second.Conditions[i].Type)
		}
	}
}
