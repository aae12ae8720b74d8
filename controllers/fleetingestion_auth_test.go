package controllers

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// The auth Secrets are mounted whole, read-only and without subPath, and nothing in the
// pod template follows their content (the checksum covers DSNs and NATS credentials only):
// rotating a key changes no Deployment.
func TestAuthSecretsAreMountedWholeAndARotationRollsNothing(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("keys", 1))
	h.mustReconcile(fi.Name)

	for _, tc := range []struct {
		deployment, volume, secret, dir, arg string
	}{
		{"keys-gateway", "device-keys", deviceKeysSecret, "/etc/fleetingest/auth/device", "--device-keys=/etc/fleetingest/auth/device"},
		{"keys-analytics", "user-keys", userKeysSecret, "/etc/fleetingest/auth/user", "--user-keys=/etc/fleetingest/auth/user"},
	} {
		d := h.deployment(tc.deployment)
		pod := d.Spec.Template.Spec
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == tc.volume {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil || vol.Secret.SecretName != tc.secret || len(vol.Secret.Items) != 0 {
			t.Errorf("%s volume %s = %+v, want the whole secret %s", tc.deployment, tc.volume, vol, tc.secret)
		}
		c := pod.Containers[0]
		for _, m := range c.VolumeMounts {
			if m.Name == tc.volume && (m.MountPath != tc.dir || !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "") {
				t.Errorf("%s mount %+v, want read-only at %s without subPath", tc.deployment, m, tc.dir)
			}
		}
		if !slices.Contains(c.Args, tc.arg) {
			t.Errorf("%s args = %v, want %s", tc.deployment, c.Args, tc.arg)
		}
	}

	before := h.resourceVersions()
	var s corev1.Secret
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: deviceKeysSecret}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data["k2.pub"] = []byte("a second key")
	delete(s.Data, "k1.pub")
	if err := h.c.Update(h.ctx, &s); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	after := h.resourceVersions()
	for k, v := range before {
		if strings.HasPrefix(k, "Deployment/") && after[k] != v {
			t.Errorf("%s changed when a key rotated", k)
		}
	}
}

// A missing auth Secret names itself in the component's condition and in Ready; the pass
// is retried (it returns an error) and recovers once the Secret exists.
func TestAMissingAuthSecretIsReportedByName(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("nokeys", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Auth.DeviceKeysSecretRef.Name = "absent-device-keys"
	}))
	if _, err := h.reconcile(fi.Name); err == nil || !strings.Contains(err.Error(), "absent-device-keys") {
		t.Fatalf("reconcile without the device keys: err = %v, want one naming the Secret (so the pass is retried)", err)
	}
	fi = h.get(fi.Name)
	want := "secret " + h.ns + "/absent-device-keys (spec.auth.deviceKeysSecretRef) not found"
	if c := condition(t, fi, v1alpha1.ConditionGatewayReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(c.Message, want) {
		t.Errorf("GatewayReady = %+v, want False/%s saying %q", c, v1alpha1.ReasonSecretNotFound, want)
	}
	if c := condition(t, fi, v1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(c.Message, want) {
		t.Errorf("Ready = %+v, want False/%s saying %q", c, v1alpha1.ReasonSecretNotFound, want)
	}
	if fi.Status.ObservedGeneration != 0 {
		t.Errorf("observedGeneration = %d with a Secret missing", fi.Status.ObservedGeneration)
	}
	// The objects are applied all the same: the pods start once kubelet finds the Secret.
	if d := h.deployment("nokeys-gateway"); d.Spec.Template.Spec.Volumes == nil {
		t.Errorf("gateway Deployment has no volumes")
	}

	h.createKeysSecret("absent-device-keys", "k1")
	h.mustReconcile(fi.Name)
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)
	if c := condition(t, h.get(fi.Name), v1alpha1.ConditionReady); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready once the Secret exists = %+v", c)
	}
}

// insecureNoAuth is accepted, rendered as --insecure-no-auth with no key mounted, and said
// loudly: a Warning Event once, and the AuthEnabled condition.
func TestInsecureNoAuthIsReportedWithAWarning(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("open", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Auth = v1alpha1.AuthSpec{InsecureNoAuth: true}
	}))
	h.mustReconcile(fi.Name)
	for _, name := range []string{"open-gateway", "open-analytics"} {
		pod := h.deployment(name).Spec.Template.Spec
		if !slices.Contains(pod.Containers[0].Args, "--insecure-no-auth") {
			t.Errorf("%s args = %v", name, pod.Containers[0].Args)
		}
		for _, v := range pod.Volumes {
			if strings.HasSuffix(v.Name, "-keys") {
				t.Errorf("%s mounts %s", name, v.Name)
			}
		}
	}
	c := condition(t, h.get(fi.Name), v1alpha1.ConditionAuthEnabled)
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonInsecureNoAuth {
		t.Errorf("AuthEnabled = %+v", c)
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, "Warning "+EventInsecureNoAuth) {
		t.Errorf("events = %s, want a Warning %s", ev, EventInsecureNoAuth)
	}
	h.mustReconcile(fi.Name)
	if ev := strings.Join(h.drainEvents(), "\n"); strings.Contains(ev, EventInsecureNoAuth) {
		t.Errorf("a second pass warned again: %s", ev)
	}
}

// deployment gets a Deployment of the test's namespace.
func (h *harness) deployment(name string) *appsv1.Deployment {
	h.t.Helper()
	var d appsv1.Deployment
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &d); err != nil {
		h.t.Fatalf("getting deployment %s: %v", name, err)
	}
	return &d
}
