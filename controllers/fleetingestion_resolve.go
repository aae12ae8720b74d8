// Package controllers reconciles FleetIngestion resources: it provisions the fleet's NATS
// streams and mapping bucket through the data plane's own function (ingester.EnsureStreams)
// and applies its Kubernetes objects (Deployments, Services, Ingress, PodDisruptionBudgets,
// NetworkPolicies, the ConfigMap that mirrors the shard map) with server-side apply; when
// spec.shards grows it appends a version to the fleet's shard map once the new shards'
// ingesters and analytics are up. Desired objects come from pure functions of the
// FleetIngestion; the reconciler only observes, applies and reports.
package controllers

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// Component names, used in object names and the app.kubernetes.io/component label.
const (
	componentGateway   = "gateway"
	componentIngester  = "ingester"
	componentAnalytics = "analytics"
)

// Defaults the API server normally fills in; repeated here so the builders are total over
// objects that were not defaulted (unit tests, old objects).
const (
	defaultReplicas         int32 = 1
	defaultStreamReplicas   int32 = 1
	defaultHistoryRetention       = 90 * 24 * time.Hour
	defaultOIDCAudience           = "fleetingest"
	defaultOIDCRolesClaim         = "roles"
	// The namespaces whose pods the NetworkPolicies admit by default: the ingress
	// controller's (to the HTTP ports) and Prometheus' (to the metrics ports).
	defaultIngressNamespace = "ingress-nginx"
	defaultMetricsNamespace = "monitoring"
)

// fleet is a FleetIngestion with the operator's defaults resolved: the one input of every
// desired-object builder. It is computed once per pass by resolveFleet.
type fleet struct {
	*v1alpha1.FleetIngestion
	// image is spec.image, or the operator's default image.
	image string
	// natsCreds is true when the fleet uses a NATS credentials Secret.
	natsCreds bool
	// networkPolicies is spec.networkPolicy.enabled, default true.
	networkPolicies bool
	// ingressFrom and metricsFrom are spec.networkPolicy's peers, or their defaults when
	// unset (an empty list stays empty: it admits nobody).
	ingressFrom, metricsFrom []networkingv1.NetworkPolicyPeer
}

// resolveFleet resolves fi's defaults. It fails only on a spec the API server's validation
// should have refused.
func resolveFleet(fi *v1alpha1.FleetIngestion, defaultImage string) (fleet, error) {
	f := fleet{FleetIngestion: fi, image: fi.Spec.Image, natsCreds: fi.Spec.NATS.CredentialsSecretRef != nil}
	if f.image == "" {
		f.image = defaultImage
	}
	if f.image == "" {
		return f, fmt.Errorf("spec.image is empty and the operator has no --default-image")
	}
	if err := f.topology().Validate(); err != nil {
		return f, fmt.Errorf("naming NATS objects: %w", err)
	}
	if err := validateAuth(fi.Spec.Auth); err != nil {
		return f, err
	}
	for _, c := range []struct {
		field string
		o     *v1alpha1.PodOptions
	}{{"spec.gateway", &fi.Spec.Gateway.PodOptions}, {"spec.ingester", &fi.Spec.Ingester.PodOptions}, {"spec.analytics", &fi.Spec.Analytics.PodOptions}} {
		if err := validatePodOptions(c.field, c.o); err != nil {
			return f, err
		}
	}
	np := fi.Spec.NetworkPolicy
	f.networkPolicies = np.Enabled == nil || *np.Enabled
	f.ingressFrom, f.metricsFrom = np.IngressFrom, np.MetricsFrom
	if f.ingressFrom == nil {
		f.ingressFrom = []networkingv1.NetworkPolicyPeer{namespacePeer(defaultIngressNamespace)}
	}
	if f.metricsFrom == nil {
		f.metricsFrom = []networkingv1.NetworkPolicyPeer{namespacePeer(defaultMetricsNamespace)}
	}
	return f, nil
}

// validateAuth refuses what the CRD's rules refuse: no keys without insecureNoAuth, keys
// with it, or not exactly one way of verifying users.
func validateAuth(a v1alpha1.AuthSpec) error {
	if a.InsecureNoAuth {
		if a.DeviceKeysSecretRef != nil || a.Users != nil {
			return errors.New("spec.auth.insecureNoAuth cannot be combined with deviceKeysSecretRef or users")
		}
		return nil
	}
	if a.DeviceKeysSecretRef == nil || a.Users == nil {
		return errors.New("spec.auth needs deviceKeysSecretRef and users (or insecureNoAuth: true)")
	}
	if (a.Users.OIDC == nil) == (a.Users.KeysSecretRef == nil) {
		return errors.New("spec.auth.users needs exactly one of oidc and keysSecretRef")
	}
	return nil
}

// validatePodOptions refuses what the CRD's rules refuse: extra pod labels that would set
// the operator's own, and annotations under its reserved prefix.
func validatePodOptions(field string, o *v1alpha1.PodOptions) error {
	own := map[string]bool{labelName: true, labelInstance: true, labelComponent: true, labelManagedBy: true, labelPartOf: true, labelShard: true}
	for _, k := range slices.Sorted(maps.Keys(o.PodLabels)) {
		if own[k] {
			return fmt.Errorf("%s.podLabels cannot set the operator's own label %s", field, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.PodAnnotations)) {
		if strings.HasPrefix(k, reservedAnnotationPrefix) {
			return fmt.Errorf("%s.podAnnotations cannot set %s: keys under %s are the operator's own", field, k, reservedAnnotationPrefix)
		}
	}
	return nil
}

// insecureNoAuth is true when the fleet asks nobody for tokens.
func (f fleet) insecureNoAuth() bool { return f.Spec.Auth.InsecureNoAuth }

// namespacePeer admits every pod of one namespace, by its immutable name label.
func namespacePeer(ns string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{corev1.LabelMetadataName: ns},
	}}
}

// topology names the fleet's NATS objects.
func (f fleet) topology() ingester.Topology { return topology(f.FleetIngestion) }

// topology names a FleetIngestion's NATS objects.
func topology(fi *v1alpha1.FleetIngestion) ingester.Topology {
	return ingester.Topology{Namespace: fi.Namespace, Fleet: fi.Name, Shards: len(fi.Spec.Shards)}
}

// streamOptions are the stream settings from the spec.
func (f fleet) streamOptions() ingester.StreamOptions {
	n := f.Spec.NATS
	o := ingester.StreamOptions{Replicas: int(valueOr(&n.StreamReplicas, defaultStreamReplicas))}
	if n.MaxBytesPerShard != nil {
		o.MaxBytes = n.MaxBytesPerShard.Value()
	}
	if n.MaxAge != nil {
		o.MaxAge = n.MaxAge.Duration
	}
	return o.WithDefaults()
}

// historyRetention is spec.retention.history or its default.
func (f fleet) historyRetention() time.Duration {
	if h := f.Spec.Retention.History; h != nil && h.Duration > 0 {
		return h.Duration
	}
	return defaultHistoryRetention
}

// replicas returns a component's replica count or its default.
func replicas(c v1alpha1.ComponentSpec) int32 {
	if c.Replicas == nil || *c.Replicas < 1 {
		return defaultReplicas
	}
	return *c.Replicas
}

func valueOr[T comparable](p *T, def T) T {
	var zero T
	if p == nil || *p == zero {
		return def
	}
	return *p
}

// Object names. FleetIngestion names are DNS labels of at most 40 characters (enforced by
// the CRD), so every derived name stays a valid DNS label of at most 63.
func gatewayName(f fleet) string             { return f.Name + "-gateway" }
func analyticsName(f fleet) string           { return f.Name + "-analytics" }
func ingesterName(f fleet, shard int) string { return fmt.Sprintf("%s-ingester-%d", f.Name, shard) }
func shardMapName(f fleet) string            { return f.Name + "-shardmap" }
func ingressName(f fleet) string             { return f.Name }

// Labels.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelPartOf    = "app.kubernetes.io/part-of"
	labelShard     = "fleetingest.io/shard"

	// ManagedBy is the app.kubernetes.io/managed-by value of every object the operator
	// applies; the operator's cache selects on it.
	ManagedBy = "fleetingest-operator"
	// FieldOwner is the server-side apply field manager of the operator.
	FieldOwner = "fleetingest-operator"
)

// commonLabels are on every object of the fleet.
func commonLabels(f fleet) map[string]string {
	return map[string]string{
		labelName:      "fleetingest",
		labelInstance:  f.Name,
		labelManagedBy: ManagedBy,
		labelPartOf:    "fleetingest",
	}
}

// selectorLabels select one component's pods (and one shard's, for ingesters: shard ≥ 0).
func selectorLabels(f fleet, component string, shard int) map[string]string {
	l := map[string]string{labelName: "fleetingest", labelInstance: f.Name, labelComponent: component}
	if shard >= 0 {
		l[labelShard] = fmt.Sprint(shard)
	}
	return l
}

// componentLabels are the labels of one component's objects and pods.
func componentLabels(f fleet, component string, shard int) map[string]string {
	l := commonLabels(f)
	for k, v := range selectorLabels(f, component, shard) {
		l[k] = v
	}
	return l
}
