package controllers

import (
	"context"
	"fmt"
)

// analyticsPod is the analytics pod: every shard's DSN (each shard's in its own folder)
// and, with a local user issuer, the whole user keys Secret. It follows the shard map in
// NATS; a shard appended to spec.shards rolls it, so that it reads every shard before the
// shard map places readings on the new one.
func analyticsPod(f fleet) podSpec {
	p := podSpec{
		component: componentAnalytics,
		shard:     -1,
		spec:      f.Spec.Analytics,
		args:      analyticsArgs(f),
		secrets:   podSecrets(f, componentAnalytics, -1),
	}
	for i, s := range f.Spec.Shards {
		vol := fmt.Sprintf("dsn-%d", i)
		p.volumes = append(p.volumes, secretKeyVolume(vol, s.DSNSecretRef.Name, s.DSNSecretRef.Key, "dsn"))
		p.mounts = append(p.mounts, readOnlyMount(vol, fmt.Sprintf("%s/%d", shardDSNsDir, i)))
	}
	if u := f.Spec.Auth.Users; u != nil && u.KeysSecretRef != nil && !f.insecureNoAuth() {
		p.volumes = append(p.volumes, secretVolume("user-keys", u.KeysSecretRef.Name))
		p.mounts = append(p.mounts, readOnlyMount("user-keys", userKeysDir))
	}
	return p
}

// reconcileAnalytics applies the analytics Deployment, Service and (above one replica)
// PodDisruptionBudget.
func (r *FleetIngestionReconciler) reconcileAnalytics(ctx context.Context, f fleet, obs *observed) error {
	name, pod := analyticsName(f), analyticsPod(f).withSecrets(obs.secrets)
	if err := r.applyDeployment(ctx, deployment(f, name, pod), obs); err != nil {
		return err
	}
	if err := r.apply(ctx, service(f, name, componentAnalytics)); err != nil {
		return fmt.Errorf("applying service %s: %w", name, err)
	}
	return r.applyOrDeletePDB(ctx, name, podDisruptionBudget(f, name, pod), obs)
}
