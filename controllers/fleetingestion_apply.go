package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// apply sends a desired object with server-side apply under the operator's field owner,
// taking over fields another manager set (the operator is the source of truth for what it
// declares, and only for that). The API server's answer is written back into ac. An apply
// that changes nothing writes nothing: the object's resourceVersion stays.
func (r *FleetIngestionReconciler) apply(ctx context.Context, ac runtime.ApplyConfiguration) error {
	return r.Client.Apply(ctx, ac, client.FieldOwner(FieldOwner), client.ForceOwnership)
}

// applyOrDeletePDB applies a PodDisruptionBudget, or deletes the one observed when none is
// wanted any more (replicas went down to one).
func (r *FleetIngestionReconciler) applyOrDeletePDB(ctx context.Context, name string, want *policyv1ac.PodDisruptionBudgetApplyConfiguration, obs *observed) error {
	if want != nil {
		if err := r.apply(ctx, want); err != nil {
			return fmt.Errorf("applying pod disruption budget %s: %w", name, err)
		}
		return nil
	}
	if have := obs.pdbs[name]; have != nil {
		if err := client.IgnoreNotFound(r.Client.Delete(ctx, have)); err != nil {
			return fmt.Errorf("deleting pod disruption budget %s: %w", name, err)
		}
	}
	return nil
}
