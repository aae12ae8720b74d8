package controllers

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// The API server keeps the NetworkPolicies as rendered, defaults filled in by the CRD; they
// go when the spec turns them off and come back when it turns them on.
func TestNetworkPoliciesAreAppliedAndRemovedWhenDisabled(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("netpol", 2))
	h.mustReconcile(fi.Name)

	fi = h.get(fi.Name)
	if np := fi.Spec.NetworkPolicy; !ptr.Deref(np.Enabled, false) || len(np.IngressFrom) != 1 || len(np.MetricsFrom) != 1 ||
		np.IngressFrom[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "ingress-nginx" {
		t.Errorf("defaulted spec.networkPolicy = %+v", np)
	}

	tcp := ptr.To(corev1.ProtocolTCP)
	ingressNginx := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}}}
	monitoring := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}
	fleetPods := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "fleetingest", "app.kubernetes.io/instance": "netpol"}}}
	port := func(p int) []networkingv1.NetworkPolicyPort {
		return []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromInt(p))}}
	}
	want := map[string][]networkingv1.NetworkPolicyIngressRule{
		"netpol-gateway": {
			{Ports: port(8080), From: []networkingv1.NetworkPolicyPeer{ingressNginx}},
			{Ports: port(9090), From: []networkingv1.NetworkPolicyPeer{monitoring}},
		},
		"netpol-analytics": {
			{Ports: port(8080), From: []networkingv1.NetworkPolicyPeer{fleetPods}},
			{Ports: port(9090), From: []networkingv1.NetworkPolicyPeer{monitoring}},
		},
		"netpol-ingester": {
			{Ports: port(9090), From: []networkingv1.NetworkPolicyPeer{monitoring}},
		},
	}
	for name, rules := range want {
		np := h.networkPolicy(name)
		if np == nil {
			t.Fatalf("network policy %s missing", name)
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
			t.Errorf("%s policy types %v egress %v", name, np.Spec.PolicyTypes, np.Spec.Egress)
		}
		if !equalJSON(t, np.Spec.Ingress, rules) {
			t.Errorf("%s ingress rules = %s\nwant %s", name, toJSON(t, np.Spec.Ingress), toJSON(t, rules))
		}
		if ref := metav1.GetControllerOf(np); ref == nil || ref.UID != fi.UID {
			t.Errorf("%s controller = %+v", name, ref)
		}
	}

	fi.Spec.NetworkPolicy.Enabled = ptr.To(false)
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	for name := range want {
		if np := h.networkPolicy(name); np != nil {
			t.Errorf("network policy %s still exists with enabled: false", name)
		}
	}

	fi = h.get(fi.Name)
	fi.Spec.NetworkPolicy.Enabled = ptr.To(true)
	fi.Spec.Ingress = &v1alpha1.IngressSpec{ExposeAnalytics: true}
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	np := h.networkPolicy("netpol-analytics")
	if np == nil || len(np.Spec.Ingress) != 2 || !equalJSON(t, np.Spec.Ingress[0].From, []networkingv1.NetworkPolicyPeer{fleetPods, ingressNginx}) {
		t.Errorf("analytics policy once exposed = %+v, want HTTP from the fleet and the ingress controller", np)
	}
}

// networkPolicy gets a NetworkPolicy of the test's namespace, nil when there is none.
func (h *harness) networkPolicy(name string) *networkingv1.NetworkPolicy {
	h.t.Helper()
	var np networkingv1.NetworkPolicy
	err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &np)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatalf("getting network policy %s: %v", name, err)
	}
	return &np
}
