package controllers

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// checksums are the secrets checksums of the pod templates of the given Deployments.
func (h *harness) checksums(names ...string) map[string]string {
	h.t.Helper()
	out := map[string]string{}
	for _, n := range names {
		out[n] = h.deployment(n).Spec.Template.Annotations[AnnotationSecretsChecksum]
	}
	return out
}

// updateSecret changes one key of a Secret of the test's namespace.
func (h *harness) updateSecret(name, key, value string) {
	h.t.Helper()
	var s corev1.Secret
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &s); err != nil {
		h.t.Fatal(err)
	}
	s.Data[key] = []byte(value)
	if err := h.c.Update(h.ctx, &s); err != nil {
		h.t.Fatalf("updating secret %s: %v", name, err)
	}
}

// A rotated DSN Secret rolls the pods that read it at start, its shard's ingester and
// analytics (which holds every shard's DSN), and no other; a rotated verification key
// changes no Deployment at all.
func TestARotatedDSNRollsItsShardAndAnalyticsAndAKeyRollsNothing(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("rot", 2))
	h.mustReconcile(fi.Name)
	deployments := []string{"rot-gateway", "rot-ingester-0", "rot-ingester-1", "rot-analytics"}
	before := h.checksums(deployments...)
	for _, n := range deployments[1:] {
		if len(before[n]) != 64 {
			t.Fatalf("%s pod template checksum = %q, want a sha256", n, before[n])
		}
	}
	if before["rot-gateway"] != "" {
		t.Errorf("gateway checksum = %q: it reads no DSN and no NATS credentials", before["rot-gateway"])
	}
	h.drainEvents()

	h.updateSecret("shard-1", "dsn", "postgres://pg-1b:5432/fleet")
	h.mustReconcile(fi.Name)
	after := h.checksums(deployments...)
	var moved []string
	for _, n := range deployments {
		if after[n] != before[n] {
			moved = append(moved, n)
		}
	}
	if !slices.Equal(moved, []string{"rot-ingester-1", "rot-analytics"}) {
		t.Errorf("pod templates changed for %v, want shard 1's ingester and analytics", moved)
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, "Normal SecretChanged a DSN or NATS credentials Secret changed: rolling the pods of rot-ingester-1, rot-analytics") {
		t.Errorf("events = %s, want SecretChanged naming the two Deployments", ev)
	}

	// The verification keys and a key the pods do not mount change nothing.
	versions := h.resourceVersions()
	h.updateSecret(deviceKeysSecret, "k2.pub", "a second key")
	h.updateSecret(userKeysSecret, "k1.pub", "a replaced key")
	h.updateSecret("shard-0", "unused", "x")
	h.mustReconcile(fi.Name)
	for k, v := range h.resourceVersions() {
		if strings.HasPrefix(k, "Deployment/") && versions[k] != v {
			t.Errorf("%s changed when a verification key rotated", k)
		}
	}
	if ev := h.drainEvents(); len(ev) > 0 {
		t.Errorf("events = %v, want none", ev)
	}
}

// A missing DSN Secret names itself in ShardsReady, in AnalyticsReady (analytics mounts
// every shard's DSN) and in Ready; the pass is retried, and once the Secret exists the
// pods that waited for it are rolled and the fleet becomes ready.
func TestAMissingDSNSecretIsReportedByName(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("nodsn", 2, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Shards[1].DSNSecretRef.Name = "absent-dsn"
	}))
	if _, err := h.reconcile(fi.Name); err == nil || !strings.Contains(err.Error(), "absent-dsn") {
		t.Fatalf("reconcile without shard 1's DSN: err = %v, want one naming the Secret (so the pass is retried)", err)
	}
	fi = h.get(fi.Name)
	secret := "secret " + h.ns + "/absent-dsn (spec.shards[1].dsnSecretRef) not found"
	for typ, pods := range map[string]string{
		v1alpha1.ConditionShardsReady:    "the shard 1 ingester pods cannot start",
		v1alpha1.ConditionAnalyticsReady: "the analytics pods cannot start",
		v1alpha1.ConditionReady:          "",
	} {
		c := condition(t, fi, typ)
		if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(c.Message, secret) || !strings.Contains(c.Message, pods) {
			t.Errorf("%s = %+v, want False/%s saying %q and %q", typ, c, v1alpha1.ReasonSecretNotFound, secret, pods)
		}
	}
	if c := condition(t, fi, v1alpha1.ConditionGatewayReady); c.Reason == v1alpha1.ReasonSecretNotFound {
		t.Errorf("GatewayReady = %+v: the gateway mounts no DSN", c)
	}
	if fi.Status.ObservedGeneration != 0 {
		t.Errorf("observedGeneration = %d with a Secret missing", fi.Status.ObservedGeneration)
	}
	stuck := h.checksums("nodsn-ingester-1")

	h.createSecret("absent-dsn", map[string][]byte{"dsn": []byte("postgres://pg-1:5432/fleet")})
	h.mustReconcile(fi.Name)
	if now := h.checksums("nodsn-ingester-1"); now["nodsn-ingester-1"] == stuck["nodsn-ingester-1"] {
		t.Errorf("shard 1's pod template kept its checksum when its DSN Secret appeared")
	}
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)
	if c := condition(t, h.get(fi.Name), v1alpha1.ConditionReady); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready once the Secret exists = %+v", c)
	}
}

// A DSN Secret without the key the spec names cannot be mounted by kubelet: SecretInvalid.
func TestADSNSecretWithoutItsKeyIsReported(t *testing.T) {
	h := newHarness(t)
	h.createSecret("wrong-key", map[string][]byte{"url": []byte("postgres://pg:5432/fleet")})
	fi := h.create(h.fleetIngestion("nokey", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Shards[0].DSNSecretRef.Name = "wrong-key"
	}))
	if _, err := h.reconcile(fi.Name); err == nil {
		t.Fatal("reconcile succeeded with a DSN Secret lacking its key")
	}
	want := `secret ` + h.ns + `/wrong-key (spec.shards[0].dsnSecretRef) holds nothing under key "dsn"`
	c := condition(t, h.get(fi.Name), v1alpha1.ConditionReady)
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretInvalid || !strings.Contains(c.Message, want) {
		t.Errorf("Ready = %+v, want False/%s saying %q", c, v1alpha1.ReasonSecretInvalid, want)
	}
}
