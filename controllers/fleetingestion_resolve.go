// Package controllers reconciles FleetIngestion resources: it provisions the fleet's NATS
// streams and mapping bucket through the data plane's own function (ingester.EnsureStreams)
// and applies its Kubernetes objects (shard-map ConfigMap, Deployments, Services, Ingress,
// PodDisruptionBudgets) with server-side apply. Desired objects come from pure functions of
// the FleetIngestion; the reconciler only observes, applies and reports.
package controllers

import (
	"fmt"
	"time"

	"github.com/fleetingest/fleetingest/api/placement"
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
)

// fleet is a FleetIngestion with the operator's defaults resolved: the one input of every
// desired-object builder. It is computed once per pass by resolveFleet.
type fleet struct {
	*v1alpha1.FleetIngestion
	// image is spec.image, or the operator's default image.
	image string
	// slotMap is the placement slot map of the fleet's shards.
	slotMap *placement.SlotMap
	// natsCreds is true when the fleet uses a NATS credentials Secret.
	natsCreds bool
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
	m, err := placement.NewSlotMap(len(fi.Spec.Shards))
	if err != nil {
		return f, fmt.Errorf("building the slot map: %w", err)
	}
	f.slotMap = m
	if err := f.topology().Validate(); err != nil {
		return f, fmt.Errorf("naming NATS objects: %w", err)
	}
	return f, nil
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
