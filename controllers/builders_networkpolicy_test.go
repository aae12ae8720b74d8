package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// Peers as they read in the tables below.
const (
	fromIngressNginx = "namespace kubernetes.io/metadata.name=ingress-nginx"
	fromMonitoring   = "namespace kubernetes.io/metadata.name=monitoring"
	fromFleetPods    = "pods app.kubernetes.io/instance=fleet-a,app.kubernetes.io/name=fleetingest"
)

// One case per rule: who each component admits on each port.
func TestNetworkPolicyRules(t *testing.T) {
	exposed := func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Ingress = &v1alpha1.IngressSpec{Host: "t.example.com", ExposeAnalytics: true}
	}
	customPeers := func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.NetworkPolicy.IngressFrom = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "edge"}}}}
		fi.Spec.NetworkPolicy.MetricsFrom = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}
	}
	nobody := func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.NetworkPolicy.IngressFrom = []networkingv1.NetworkPolicyPeer{}
		fi.Spec.NetworkPolicy.MetricsFrom = []networkingv1.NetworkPolicyPeer{}
	}
	cases := []struct {
		name      string
		mod       func(*v1alpha1.FleetIngestion)
		component string
		port      int32
		want      []string // nil: the port admits nobody
	}{
		{"the gateway admits HTTP from the ingress controller's namespace", nil, componentGateway, 8080, []string{fromIngressNginx}},
		{"the gateway admits metrics from the monitoring namespace", nil, componentGateway, 9090, []string{fromMonitoring}},
		{"analytics admits HTTP from the fleet's own pods only when the Ingress does not route to it", nil, componentAnalytics, 8080, []string{fromFleetPods}},
		{"analytics admits HTTP from the ingress controller too when the Ingress routes to it", exposed, componentAnalytics, 8080, []string{fromFleetPods, fromIngressNginx}},
		{"analytics admits metrics from the monitoring namespace", nil, componentAnalytics, 9090, []string{fromMonitoring}},
		{"ingesters admit nobody on the HTTP port", nil, componentIngester, 8080, nil},
		{"ingesters admit metrics from the monitoring namespace", nil, componentIngester, 9090, []string{fromMonitoring}},
		{"ingressFrom of the spec replaces the default", customPeers, componentGateway, 8080, []string{"pods app=edge"}},
		{"metricsFrom of the spec replaces the default", customPeers, componentIngester, 9090, []string{"ipBlock 10.0.0.0/8"}},
		{"an empty ingressFrom admits nobody to the gateway", nobody, componentGateway, 8080, nil},
		{"an empty metricsFrom admits nobody to the metrics port", nobody, componentAnalytics, 9090, nil},
		{"an empty ingressFrom leaves analytics to the fleet's pods", func(fi *v1alpha1.FleetIngestion) { nobody(fi); exposed(fi) }, componentAnalytics, 8080, []string{fromFleetPods}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*v1alpha1.FleetIngestion)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			f := newFleet(t, 2, mods...)
			np := policyOf(t, f, tc.component)
			if got := admitted(np, tc.port); !slices.Equal(got, tc.want) {
				t.Errorf("port %d admits %q, want %q", tc.port, got, tc.want)
			}
			for _, r := range np.Spec.Ingress {
				if len(r.From) == 0 || len(r.Ports) == 0 {
					t.Errorf("rule %+v admits every source or every port", r)
				}
			}
		})
	}
}

// Every policy selects exactly one component's pods (every shard's, for ingesters) and
// restricts ingress only: NATS and Postgres are reached through untouched egress.
func TestNetworkPoliciesSelectOneComponentAndRestrictIngressOnly(t *testing.T) {
	f := newFleet(t, 3)
	nps := networkPolicies(f)
	if len(nps) != 3 {
		t.Fatalf("%d policies, want one per component", len(nps))
	}
	for _, component := range []string{componentGateway, componentAnalytics, componentIngester} {
		np := policyOf(t, f, component)
		if *np.Name != "fleet-a-"+component || *np.Namespace != "prod" || np.OwnerReferences[0].UID == nil || *np.OwnerReferences[0].UID != "uid-1" {
			t.Errorf("%s policy %s/%s owned by %+v", component, *np.Namespace, *np.Name, np.OwnerReferences)
		}
		if want := selectorLabels(f, component, -1); !maps.Equal(np.Spec.PodSelector.MatchLabels, want) {
			t.Errorf("%s policy selects %v, want %v", component, np.Spec.PodSelector.MatchLabels, want)
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
			t.Errorf("%s policy types %v, egress %v; want Ingress only", component, np.Spec.PolicyTypes, np.Spec.Egress)
		}
	}
	if _, ok := selectorLabels(f, componentIngester, -1)[labelShard]; ok {
		t.Errorf("the ingester policy selects one shard only")
	}
}

func TestDisabledNetworkPoliciesAreNotRendered(t *testing.T) {
	f := newFleet(t, 1, func(fi *v1alpha1.FleetIngestion) { fi.Spec.NetworkPolicy.Enabled = ptr.To(false) })
	if nps := networkPolicies(f); len(nps) != 0 {
		t.Errorf("policies = %d, want none", len(nps))
	}
}

func policyOf(t *testing.T, f fleet, component string) *networkingv1ac.NetworkPolicyApplyConfiguration {
	t.Helper()
	for _, np := range networkPolicies(f) {
		if np.Spec.PodSelector.MatchLabels[labelComponent] == component {
			return np
		}
	}
	t.Fatalf("no network policy for %s", component)
	return nil
}

// admitted describes the peers the policy admits on a TCP port, nil when none.
func admitted(np *networkingv1ac.NetworkPolicyApplyConfiguration, port int32) []string {
	var out []string
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if ptr.Deref(p.Protocol, "") != "TCP" || p.Port == nil || p.Port.IntVal != port {
				continue
			}
			for _, from := range r.From {
				out = append(out, describePeer(from))
			}
		}
	}
	return out
}

func describePeer(p networkingv1ac.NetworkPolicyPeerApplyConfiguration) string {
	var parts []string
	if p.NamespaceSelector != nil {
		parts = append(parts, "namespace "+describeSelector(p.NamespaceSelector))
	}
	if p.PodSelector != nil {
		parts = append(parts, "pods "+describeSelector(p.PodSelector))
	}
	if p.IPBlock != nil {
		parts = append(parts, "ipBlock "+ptr.Deref(p.IPBlock.CIDR, ""))
	}
	return strings.Join(parts, " ")
}

func describeSelector(s *metav1ac.LabelSelectorApplyConfiguration) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		kv = append(kv, fmt.Sprintf("%s=%s", k, s.MatchLabels[k]))
	}
	return strings.Join(kv, ",")
}
