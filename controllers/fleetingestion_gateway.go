package controllers

import (
	"context"
	"fmt"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// gatewayPod is the gateway's pod: it reads the slot map from the shard-map ConfigMap.
func gatewayPod(f fleet) podSpec {
	return podSpec{
		component: componentGateway,
		shard:     -1,
		spec:      f.Spec.Gateway.ComponentSpec,
		args:      gatewayArgs(f),
		volumes:   []*corev1ac.VolumeApplyConfiguration{slotMapVolume(f)},
		mounts:    []*corev1ac.VolumeMountApplyConfiguration{slotMapMount()},
	}
}

// reconcileGateway applies the gateway's Deployment, Service and (above one replica)
// PodDisruptionBudget.
func (r *FleetIngestionReconciler) reconcileGateway(ctx context.Context, f fleet, obs *observed) error {
	name, pod := gatewayName(f), gatewayPod(f)
	if err := r.applyDeployment(ctx, deployment(f, name, pod), obs); err != nil {
		return err
	}
	if err := r.apply(ctx, service(f, name, componentGateway)); err != nil {
		return fmt.Errorf("applying service %s: %w", name, err)
	}
	return r.applyOrDeletePDB(ctx, name, podDisruptionBudget(f, name, pod), obs)
}
