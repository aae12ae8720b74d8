package controllers

import (
	"context"
	"fmt"
)

// gatewayPod is the gateway's pod: it reads the device-token verification keys from the
// whole device keys Secret (and follows the shard map in NATS).
func gatewayPod(f fleet) podSpec {
	p := podSpec{
		component: componentGateway,
		shard:     -1,
		spec:      f.Spec.Gateway.ComponentSpec,
		args:      gatewayArgs(f),
		secrets:   podSecrets(f, componentGateway, -1),
	}
	if ref := f.Spec.Auth.DeviceKeysSecretRef; ref != nil && !f.insecureNoAuth() {
		p.volumes = append(p.volumes, secretVolume("device-keys", ref.Name))
		p.mounts = append(p.mounts, readOnlyMount("device-keys", deviceKeysDir))
	}
	return p
}

// reconcileGateway applies the gateway's Deployment, Service and (above one replica)
// PodDisruptionBudget.
func (r *FleetIngestionReconciler) reconcileGateway(ctx context.Context, f fleet, obs *observed) error {
	name, pod := gatewayName(f), gatewayPod(f).withSecrets(obs.secrets)
	if err := r.applyDeployment(ctx, deployment(f, name, pod), obs); err != nil {
		return err
	}
	if err := r.apply(ctx, service(f, name, componentGateway)); err != nil {
		return fmt.Errorf("applying service %s: %w", name, err)
	}
	return r.applyOrDeletePDB(ctx, name, podDisruptionBudget(f, name, pod), obs)
}
