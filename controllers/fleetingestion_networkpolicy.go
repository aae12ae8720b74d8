package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// networkPolicies are the fleet's NetworkPolicies, one per component, or none when
// spec.networkPolicy.enabled is false. Each selects one component's pods and restricts
// ingress only: egress is left alone, since NATS and Postgres usually live outside the
// namespace. A pod selected by a policy admits only what one of its rules admits.
func networkPolicies(f fleet) []*networkingv1ac.NetworkPolicyApplyConfiguration {
	if !f.networkPolicies {
		return nil
	}
	return []*networkingv1ac.NetworkPolicyApplyConfiguration{
		gatewayNetworkPolicy(f),
		analyticsNetworkPolicy(f),
		ingesterNetworkPolicy(f),
	}
}

// gatewayNetworkPolicy admits devices through the ingress controller to the HTTP port, and
// Prometheus to the metrics port.
func gatewayNetworkPolicy(f fleet) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkPolicy(f, componentGateway,
		ingressRule(httpPort, f.ingressFrom),
		ingressRule(metricsPort, f.metricsFrom))
}

// analyticsNetworkPolicy admits the fleet's own pods to the HTTP port, and the ingress
// controller too when the Ingress routes to analytics; Prometheus to the metrics port.
func analyticsNetworkPolicy(f fleet) *networkingv1ac.NetworkPolicyApplyConfiguration {
	from := []networkingv1.NetworkPolicyPeer{fleetPeer(f)}
	if f.Spec.Ingress != nil && f.Spec.Ingress.ExposeAnalytics {
		from = append(from, f.ingressFrom...)
	}
	return networkPolicy(f, componentAnalytics,
		ingressRule(httpPort, from),
		ingressRule(metricsPort, f.metricsFrom))
}

// ingesterNetworkPolicy admits Prometheus to the metrics port and nothing else: nobody
// calls an ingester. Kubelet's probes of its HTTP port come from the node, which
// NetworkPolicy implementations let through, so they need no rule.
func ingesterNetworkPolicy(f fleet) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkPolicy(f, componentIngester, ingressRule(metricsPort, f.metricsFrom))
}

// networkPolicy selects every pod of a component (every shard's, for ingesters) and admits
// what the rules admit; nil rules are skipped.
func networkPolicy(f fleet, component string, rules ...*networkingv1ac.NetworkPolicyIngressRuleApplyConfiguration) *networkingv1ac.NetworkPolicyApplyConfiguration {
	spec := networkingv1ac.NetworkPolicySpec().
		WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(f, component, -1))).
		WithPolicyTypes(networkingv1.PolicyTypeIngress)
	for _, r := range rules {
		if r != nil {
			spec.WithIngress(r)
		}
	}
	return networkingv1ac.NetworkPolicy(networkPolicyName(f, component), f.Namespace).
		WithLabels(componentLabels(f, component, -1)).
		WithOwnerReferences(ownerReference(f)).
		WithSpec(spec)
}

// ingressRule admits TCP connections to port from peers. It is nil for no peers: a rule
// without peers would admit every source.
func ingressRule(port int32, from []networkingv1.NetworkPolicyPeer) *networkingv1ac.NetworkPolicyIngressRuleApplyConfiguration {
	if len(from) == 0 {
		return nil
	}
	r := networkingv1ac.NetworkPolicyIngressRule().WithPorts(networkingv1ac.NetworkPolicyPort().
		WithProtocol(corev1.ProtocolTCP).
		WithPort(intstr.FromInt32(port)))
	for _, p := range from {
		r.WithFrom(applyConfiguration[networkingv1ac.NetworkPolicyPeerApplyConfiguration](p))
	}
	return r
}

// fleetPeer is every pod of the fleet, in its namespace.
func fleetPeer(f fleet) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{labelName: "fleetingest", labelInstance: f.Name},
	}}
}

func networkPolicyName(f fleet, component string) string { return f.Name + "-" + component }

// reconcileNetworkPolicies applies the fleet's NetworkPolicies, and deletes those the spec
// no longer asks for (all of them with spec.networkPolicy.enabled false). It runs before
// the Deployments, so that a new pod is never open to the cluster.
func (r *FleetIngestionReconciler) reconcileNetworkPolicies(ctx context.Context, f fleet, obs *observed) error {
	want := map[string]bool{}
	for _, np := range networkPolicies(f) {
		name := ptr.Deref(np.Name, "")
		want[name] = true
		if err := r.apply(ctx, np); err != nil {
			return fmt.Errorf("applying network policy %s: %w", name, err)
		}
	}
	for name, have := range obs.networkPolicies {
		if want[name] {
			continue
		}
		if err := client.IgnoreNotFound(r.Client.Delete(ctx, have)); err != nil {
			return fmt.Errorf("deleting network policy %s: %w", name, err)
		}
	}
	return nil
}
