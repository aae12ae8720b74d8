package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// allPods are the pods of a fleet by component, for tables that hold for each of them.
func allPods(f fleet) map[string]podSpec {
	return map[string]podSpec{"gateway": gatewayPod(f), "ingester": ingesterPod(f, 1), "analytics": analyticsPod(f)}
}

// withAllPodOptions sets the same PodOptions on every component.
func withAllPodOptions(o v1alpha1.PodOptions) func(*v1alpha1.FleetIngestion) {
	return func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Gateway.PodOptions, fi.Spec.Ingester.PodOptions, fi.Spec.Analytics.PodOptions = o, o, o
	}
}

func withReplicas(n int32) func(*v1alpha1.FleetIngestion) {
	return func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Gateway.Replicas, fi.Spec.Ingester.Replicas, fi.Spec.Analytics.Replicas = &n, &n, &n
	}
}

func TestPodOptionsReachEveryComponentsPods(t *testing.T) {
	zoneA := corev1.NodeSelectorRequirement{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"eu-1a"}}
	opts := v1alpha1.PodOptions{
		ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry"}},
		ServiceAccountName: "fleet-workload",
		NodeSelector:       map[string]string{"pool": "telemetry"},
		Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "telemetry", Effect: corev1.TaintEffectNoSchedule}},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{zoneA}}}}}},
		PriorityClassName: "telemetry-high",
		PodLabels:         map[string]string{"team": "energy", "sidecar.istio.io/inject": "false"},
		PodAnnotations:    map[string]string{"cost-center": "42", "prometheus.io/scrape": "false"},
	}
	f := newFleet(t, 2, withAllPodOptions(opts))
	for name, p := range allPods(f) {
		t.Run(name, func(t *testing.T) {
			tpl := podTemplate(f, p)
			ps := tpl.Spec
			if len(ps.ImagePullSecrets) != 1 || ptr.Deref(ps.ImagePullSecrets[0].Name, "") != "registry" {
				t.Errorf("imagePullSecrets = %+v", ps.ImagePullSecrets)
			}
			if ptr.Deref(ps.ServiceAccountName, "") != "fleet-workload" || ptr.Deref(ps.AutomountServiceAccountToken, true) {
				t.Errorf("serviceAccountName %v, automount %v: want the account, its token unmounted", ps.ServiceAccountName, ps.AutomountServiceAccountToken)
			}
			if ps.NodeSelector["pool"] != "telemetry" || len(ps.Tolerations) != 1 || ptr.Deref(ps.Tolerations[0].Value, "") != "telemetry" {
				t.Errorf("nodeSelector %v, tolerations %+v", ps.NodeSelector, ps.Tolerations)
			}
			terms := ps.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != "eu-1a" {
				t.Errorf("affinity = %+v", ps.Affinity)
			}
			if ptr.Deref(ps.PriorityClassName, "") != "telemetry-high" {
				t.Errorf("priorityClassName = %v", ps.PriorityClassName)
			}
			if tpl.Labels["team"] != "energy" || tpl.Labels["sidecar.istio.io/inject"] != "false" || tpl.Labels[labelComponent] != p.component {
				t.Errorf("labels = %v", tpl.Labels)
			}
			if tpl.Annotations["cost-center"] != "42" || tpl.Annotations["prometheus.io/scrape"] != "false" || tpl.Annotations["prometheus.io/port"] != "9090" {
				t.Errorf("annotations = %v, want the extra ones, the scrape switch replaced", tpl.Annotations)
			}
		})
	}
}

// Unset, PodOptions leave the pod as it was: nothing scheduled, the namespace's default
// ServiceAccount, the operator's labels and annotations only.
func TestUnsetPodOptionsAddNothing(t *testing.T) {
	f := newFleet(t, 2)
	for name, p := range allPods(f) {
		tpl := podTemplate(f, p)
		ps := tpl.Spec
		if ps.ImagePullSecrets != nil || ps.ServiceAccountName != nil || ps.NodeSelector != nil || ps.Tolerations != nil ||
			ps.Affinity != nil || ps.TopologySpreadConstraints != nil || ps.PriorityClassName != nil {
			t.Errorf("%s pod spec sets options nobody asked for: %+v", name, ps)
		}
		want := componentLabels(f, p.component, p.shard)
		if len(tpl.Labels) != len(want) {
			t.Errorf("%s labels = %v, want %v", name, tpl.Labels, want)
		}
	}
}

// The extra labels and annotations can never take the operator's own: the selectors, and
// the checksum that rolls the pods.
func TestExtraPodLabelsAndAnnotationsNeverTakeTheOperatorsOwn(t *testing.T) {
	o := v1alpha1.PodOptions{
		PodLabels:      map[string]string{labelComponent: "other", labelInstance: "other", labelShard: "9"},
		PodAnnotations: map[string]string{AnnotationSecretsChecksum: "fixed", "fleetingest.io/other": "x"},
	}
	f := newFleet(t, 2)
	f.Spec.Ingester.PodOptions = o // past the API server's and resolveFleet's checks
	p := ingesterPod(f, 1).withSecrets(map[string]*corev1.Secret{"pg": {Data: map[string][]byte{"dsn": []byte("postgres://pg/1")}}})
	tpl := podTemplate(f, p)
	for k, v := range selectorLabels(f, componentIngester, 1) {
		if tpl.Labels[k] != v {
			t.Errorf("label %s = %q, want the operator's %q", k, tpl.Labels[k], v)
		}
	}
	if tpl.Annotations[AnnotationSecretsChecksum] != p.checksum || tpl.Annotations["fleetingest.io/other"] != "" {
		t.Errorf("annotations = %v, want the operator's checksum and nothing else under fleetingest.io/", tpl.Annotations)
	}

	for _, tc := range []struct {
		name string
		mod  func(*v1alpha1.FleetIngestion)
		want string
	}{
		{"a selector label", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Gateway.PodLabels = map[string]string{labelComponent: "x"}
		}, "spec.gateway.podLabels cannot set the operator's own label app.kubernetes.io/component"},
		{"the shard label", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Ingester.PodLabels = map[string]string{labelShard: "0"}
		}, "spec.ingester.podLabels cannot set the operator's own label fleetingest.io/shard"},
		{"the checksum", func(fi *v1alpha1.FleetIngestion) {
			fi.Spec.Analytics.PodAnnotations = map[string]string{AnnotationSecretsChecksum: "x"}
		}, "spec.analytics.podAnnotations cannot set fleetingest.io/secrets-checksum"},
	} {
		t.Run("resolveFleet refuses "+tc.name, func(t *testing.T) {
			fi := newFleet(t, 1).DeepCopy()
			tc.mod(fi)
			if _, err := resolveFleet(fi, "img"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestTopologySpread(t *testing.T) {
	own := []corev1.TopologySpreadConstraint{{MaxSkew: 2, TopologyKey: "rack", WhenUnsatisfiable: corev1.DoNotSchedule}}
	cases := []struct {
		name string
		mods []func(*v1alpha1.FleetIngestion)
		want []string // topologyKey/whenUnsatisfiable/maxSkew of each constraint
	}{
		{"one replica is not spread", nil, nil},
		{"two replicas spread over zones and nodes without blocking scheduling", []func(*v1alpha1.FleetIngestion){withReplicas(2)},
			[]string{"topology.kubernetes.io/zone/ScheduleAnyway/1", "kubernetes.io/hostname/ScheduleAnyway/1"}},
		{"a given list replaces the default", []func(*v1alpha1.FleetIngestion){withReplicas(3), withAllPodOptions(v1alpha1.PodOptions{TopologySpreadConstraints: own})},
			[]string{"rack/DoNotSchedule/2"}},
		{"a given list applies to one replica too", []func(*v1alpha1.FleetIngestion){withAllPodOptions(v1alpha1.PodOptions{TopologySpreadConstraints: own})},
			[]string{"rack/DoNotSchedule/2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 2, tc.mods...)
			for name, p := range allPods(f) {
				var got []string
				for _, c := range podTemplate(f, p).Spec.TopologySpreadConstraints {
					got = append(got, fmt.Sprintf("%s/%s/%d", *c.TopologyKey, *c.WhenUnsatisfiable, *c.MaxSkew))
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s constraints = %v, want %v", name, got, tc.want)
				}
			}
		})
	}

	// The default selects the component's own pods: one shard's, for ingesters.
	f := newFleet(t, 2, withReplicas(2))
	for name, p := range allPods(f) {
		for _, c := range podTemplate(f, p).Spec.TopologySpreadConstraints {
			if !equalJSON(t, c.LabelSelector.MatchLabels, selectorLabels(f, p.component, p.shard)) {
				t.Errorf("%s spread selects %v, want its own pods", name, c.LabelSelector.MatchLabels)
			}
		}
	}
}

func TestSecretsChecksum(t *testing.T) {
	f := newFleet(t, 2, withCreds, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Shards[1].DSNSecretRef = v1alpha1.SecretKeyRef{Name: "pg-1", Key: "dsn"}
	})
	secrets := func(mods ...func(map[string]*corev1.Secret)) map[string]*corev1.Secret {
		s := map[string]*corev1.Secret{
			"pg":          {Data: map[string][]byte{"dsn": []byte("postgres://pg/0"), "other": []byte("a")}},
			"pg-1":        {Data: map[string][]byte{"dsn": []byte("postgres://pg/1")}},
			"nats":        {Data: map[string][]byte{"creds": []byte("jwt")}},
			"device-keys": {Data: map[string][]byte{"k1.pub": []byte("k1")}},
			"user-keys":   {Data: map[string][]byte{"k1.pub": []byte("k1")}},
		}
		for _, m := range mods {
			m(s)
		}
		return s
	}
	set := func(name, key, value string) func(map[string]*corev1.Secret) {
		return func(s map[string]*corev1.Secret) { s[name].Data[key] = []byte(value) }
	}
	base := map[string]string{}
	for name, p := range map[string]podSpec{"gateway": gatewayPod(f), "ingester-0": ingesterPod(f, 0), "ingester-1": ingesterPod(f, 1), "analytics": analyticsPod(f)} {
		base[name] = p.withSecrets(secrets()).checksum
		if base[name] == "" {
			t.Errorf("%s has no checksum although it mounts the NATS credentials", name)
		}
	}
	cases := []struct {
		name  string
		mod   func(map[string]*corev1.Secret)
		moved []string // pods whose checksum changes
	}{
		{"shard 1's DSN rolls its ingester and analytics", set("pg-1", "dsn", "postgres://pg/1?application_name=x"), []string{"analytics", "ingester-1"}},
		{"shard 0's DSN rolls its ingester and analytics", set("pg", "dsn", "postgres://pg2/0"), []string{"analytics", "ingester-0"}},
		{"another key of a DSN Secret rolls nothing", set("pg", "other", "b"), nil},
		{"the NATS credentials roll every pod", set("nats", "creds", "jwt2"), []string{"analytics", "gateway", "ingester-0", "ingester-1"}},
		{"a device key rolls nothing", set("device-keys", "k2.pub", "k2"), nil},
		{"a user key rolls nothing", set("user-keys", "k1.pub", "k1b"), nil},
		{"a DSN Secret deleted rolls its pods (they restart when it is back)", func(s map[string]*corev1.Secret) { s["pg-1"] = nil },
			[]string{"analytics", "ingester-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var moved []string
			for name, p := range map[string]podSpec{"gateway": gatewayPod(f), "ingester-0": ingesterPod(f, 0), "ingester-1": ingesterPod(f, 1), "analytics": analyticsPod(f)} {
				if p.withSecrets(secrets(tc.mod)).checksum != base[name] {
					moved = append(moved, name)
				}
			}
			slices.Sort(moved)
			if !slices.Equal(moved, tc.moved) {
				t.Errorf("checksums moved for %v, want %v", moved, tc.moved)
			}
		})
	}

	// Without NATS credentials the gateway reads no Secret at start: no checksum at all.
	plain := newFleet(t, 1)
	if c := gatewayPod(plain).withSecrets(secrets()).checksum; c != "" {
		t.Errorf("gateway checksum without credentials = %q", c)
	}
	tpl := podTemplate(plain, ingesterPod(plain, 0).withSecrets(secrets()))
	if len(tpl.Annotations[AnnotationSecretsChecksum]) != 64 {
		t.Errorf("ingester annotations = %v, want the checksum", tpl.Annotations)
	}
}

// Every Secret volume of every pod is listed by podSecrets, which the checksum and the
// Secret checks go by; only the verification keys are mounted whole, and only they are
// left out of the checksum.
func TestPodSecretsListEverySecretVolume(t *testing.T) {
	for _, mod := range map[string]func(*v1alpha1.FleetIngestion){"credentials": withCreds, "oidc": withOIDC("", ""), "insecure": withoutAuth} {
		f := newFleet(t, 3, mod)
		for name, p := range allPods(f) {
			listed := map[string]mountedSecret{}
			times := map[string]int{} // analytics mounts a Secret shared by shards once per shard
			for _, m := range p.secrets {
				listed[m.name+"/"+m.key] = m
				times[m.name+"/"+m.key]++
			}
			for _, v := range podTemplate(f, p).Spec.Volumes {
				if v.Secret == nil {
					continue
				}
				key := ""
				if len(v.Secret.Items) == 1 {
					key = *v.Secret.Items[0].Key
				}
				m, ok := listed[*v.Secret.SecretName+"/"+key]
				if !ok {
					t.Errorf("%s mounts secret %s key %q, which podSecrets does not list (%v)", name, *v.Secret.SecretName, key, p.secrets)
				}
				if m.verificationKeys != (key == "") {
					t.Errorf("%s volume %s: verificationKeys %v, mounted whole %v", name, *v.Name, m.verificationKeys, key == "")
				}
				times[*v.Secret.SecretName+"/"+key]--
			}
			for k, n := range times {
				if n != 0 {
					t.Errorf("%s: podSecrets lists %s %d time(s) more than the pod mounts it", name, k, n)
				}
			}
		}
	}
}

func TestPassEventsHaveOneReasonPerKindOfChange(t *testing.T) {
	status := func(conds ...metav1.Condition) v1alpha1.FleetIngestionStatus {
		return v1alpha1.FleetIngestionStatus{Conditions: conds}
	}
	cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: "m"}
	}
	readyTrue := cond(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	readyFalse := cond(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonComponentsNotReady)
	created := ingester.Provisioned{
		Streams: []ingester.StreamState{{Name: "FI_a_0", Created: true}, {Name: "FI_a_1", Created: true}},
		Buckets: []ingester.BucketState{{Name: "fi_a_mappings", Created: true}, {Name: "fi_a_revocations", Created: true}},
	}
	repaired := ingester.Provisioned{
		Streams: []ingester.StreamState{{Name: "FI_a_0", Updated: []string{"maxBytes", "replicas"}}, {Name: "FI_a_1"}},
		Buckets: []ingester.BucketState{{Name: "fi_a_mappings", Created: true}, {Name: "fi_a_revocations"}},
	}
	cases := []struct {
		name     string
		old, cur v1alpha1.FleetIngestionStatus
		p        ingester.Provisioned
		rolled   []string
		want     []string // "type reason: note"
	}{
		{"a first pass creates streams and buckets, one Event per kind", status(), status(readyFalse), created, nil, []string{
			"Normal StreamCreated: created stream(s) FI_a_0, FI_a_1",
			"Normal BucketCreated: created bucket(s) fi_a_mappings, fi_a_revocations",
		}},
		{"a repair and a re-created bucket are told apart", status(readyTrue), status(readyTrue), repaired, nil, []string{
			"Normal StreamRepaired: repaired stream(s) FI_a_0 (maxBytes, replicas had drifted)",
			"Normal BucketCreated: created bucket(s) fi_a_mappings",
		}},
		{"a rotated DSN names the Deployments it rolls", status(readyTrue), status(readyTrue), ingester.Provisioned{}, []string{"a-ingester-0", "a-analytics"}, []string{
			"Normal SecretChanged: a DSN or NATS credentials Secret changed: rolling the pods of a-ingester-0, a-analytics",
		}},
		{"becoming ready", status(readyFalse), status(readyTrue), ingester.Provisioned{}, nil, []string{"Normal Ready: m"}},
		{"no longer ready, with the streams' cause", status(readyTrue, cond(v1alpha1.ConditionStreamsReady, metav1.ConditionTrue, v1alpha1.ReasonProvisioned)),
			status(readyFalse, cond(v1alpha1.ConditionStreamsReady, metav1.ConditionFalse, v1alpha1.ReasonNATSUnreachable)), ingester.Provisioned{}, nil, []string{
				"Warning StreamsUnavailable: NATSUnreachable: m", "Warning NotReady: m",
			}},
		{"a steady pass emits nothing", status(readyTrue), status(readyTrue), ingester.Provisioned{Streams: []ingester.StreamState{{Name: "FI_a_0"}}}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range passEvents(tc.old, tc.cur, tc.p, tc.rolled, false) {
				got = append(got, e.typ+" "+e.reason+": "+e.note)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events = %q\nwant %q", got, tc.want)
			}
		})
	}
}
