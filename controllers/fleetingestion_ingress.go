package controllers

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Paths the Ingress routes. Prefix matching is per path element, so "/v1/telemetry" covers
// "/v1/telemetry" and "/v1/telemetry/batch" but not "/v1/telemetryx".
var (
	gatewayPaths   = []string{"/v1/telemetry"}
	analyticsPaths = []string{"/v1/analytics", "/v1/status", "/fleetingest.analytics.v1.AnalyticsService"}
)

// ingress routes the gateway's paths, and analytics' only when spec.ingress.exposeAnalytics
// opts in (its callers then bring user tokens). Every path goes to a Service's http port:
// /metrics, on its own port, is never published. Nil when spec.ingress is unset.
func ingress(f fleet) *networkingv1ac.IngressApplyConfiguration {
	spec := f.Spec.Ingress
	if spec == nil {
		return nil
	}
	rule := networkingv1ac.HTTPIngressRuleValue()
	for _, p := range gatewayPaths {
		rule.WithPaths(ingressPath(p, gatewayName(f)))
	}
	if spec.ExposeAnalytics {
		for _, p := range analyticsPaths {
			rule.WithPaths(ingressPath(p, analyticsName(f)))
		}
	}
	r := networkingv1ac.IngressRule().WithHTTP(rule)
	if spec.Host != "" {
		r.WithHost(spec.Host)
	}
	is := networkingv1ac.IngressSpec().WithRules(r)
	if spec.ClassName != nil {
		is.WithIngressClassName(*spec.ClassName)
	}
	if spec.TLSSecretName != "" {
		tls := networkingv1ac.IngressTLS().WithSecretName(spec.TLSSecretName)
		if spec.Host != "" {
			tls.WithHosts(spec.Host)
		}
		is.WithTLS(tls)
	}
	ing := networkingv1ac.Ingress(ingressName(f), f.Namespace).
		WithLabels(commonLabels(f)).
		WithOwnerReferences(ownerReference(f)).
		WithSpec(is)
	if len(spec.Annotations) > 0 {
		ing.WithAnnotations(spec.Annotations)
	}
	return ing
}

func ingressPath(path, svc string) *networkingv1ac.HTTPIngressPathApplyConfiguration {
	return networkingv1ac.HTTPIngressPath().
		WithPath(path).
		WithPathType(networkingv1.PathTypePrefix).
		WithBackend(networkingv1ac.IngressBackend().WithService(
			networkingv1ac.IngressServiceBackend().WithName(svc).WithPort(
				networkingv1ac.ServiceBackendPort().WithName(httpPortName))))
}

// reconcileIngress applies the Ingress, or deletes it once spec.ingress is unset.
func (r *FleetIngestionReconciler) reconcileIngress(ctx context.Context, f fleet, obs *observed) error {
	want := ingress(f)
	if want == nil {
		if obs.ingress == nil {
			return nil
		}
		if err := client.IgnoreNotFound(r.Client.Delete(ctx, obs.ingress)); err != nil {
			return fmt.Errorf("deleting ingress %s: %w", obs.ingress.Name, err)
		}
		return nil
	}
	if err := r.apply(ctx, want); err != nil {
		return fmt.Errorf("applying ingress %s: %w", ingressName(f), err)
	}
	return nil
}
