package controllers

import (
	"context"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// ingesterPod is shard i's ingester pod: a migrate init container brings the shard's
// schema to the binary's version, then the ingester consumes the shard's stream.
func ingesterPod(f fleet, shard int) podSpec {
	ref := f.Spec.Shards[shard].DSNSecretRef
	return podSpec{
		component: componentIngester,
		shard:     shard,
		spec:      f.Spec.Ingester,
		args:      ingesterArgs(f, shard),
		volumes:   []*corev1ac.VolumeApplyConfiguration{secretKeyVolume("dsn", ref.Name, ref.Key, "dsn")},
		mounts:    []*corev1ac.VolumeMountApplyConfiguration{corev1ac.VolumeMount().WithName("dsn").WithMountPath(dsnDir).WithReadOnly(true)},
		initArgs:  [][]string{migrateArgs()},
		secrets:   podSecrets(f, componentIngester, shard),
	}
}

// reconcileShards applies, per shard, the ingester Deployment and (above one replica) its
// PodDisruptionBudget. A shard appended to spec.shards gets its Deployment here, in the
// pass that provisions its stream; the shard map places readings on it later
// (reconcileShardMap).
func (r *FleetIngestionReconciler) reconcileShards(ctx context.Context, f fleet, obs *observed) error {
	for i := range f.Spec.Shards {
		name, pod := ingesterName(f, i), ingesterPod(f, i).withSecrets(obs.secrets)
		if err := r.applyDeployment(ctx, deployment(f, name, pod), obs); err != nil {
			return err
		}
		if err := r.applyOrDeletePDB(ctx, name, podDisruptionBudget(f, name, pod), obs); err != nil {
			return err
		}
	}
	return nil
}
