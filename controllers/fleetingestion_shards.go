package controllers

import (
	"context"
	"fmt"

	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/fleetingest/fleetingest/api/placement"
)

// shardMapConfigMap holds the slot map every component reads (placement.ConfigMapKey).
func shardMapConfigMap(f fleet) (*corev1ac.ConfigMapApplyConfiguration, error) {
	b, err := f.slotMap.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encoding the slot map: %w", err)
	}
	return corev1ac.ConfigMap(shardMapName(f), f.Namespace).
		WithLabels(commonLabels(f)).
		WithOwnerReferences(ownerReference(f)).
		WithData(map[string]string{placement.ConfigMapKey: string(b)}), nil
}

func slotMapVolume(f fleet) *corev1ac.VolumeApplyConfiguration {
	return corev1ac.Volume().WithName("slotmap").WithConfigMap(corev1ac.ConfigMapVolumeSource().
		WithName(shardMapName(f)).
		WithItems(corev1ac.KeyToPath().WithKey(placement.ConfigMapKey).WithPath(placement.ConfigMapKey)))
}

func slotMapMount() *corev1ac.VolumeMountApplyConfiguration {
	return corev1ac.VolumeMount().WithName("slotmap").WithMountPath(slotMapDir).WithReadOnly(true)
}

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

// reconcileShards applies the shard-map ConfigMap and, per shard, the ingester Deployment
// and (above one replica) its PodDisruptionBudget.
func (r *FleetIngestionReconciler) reconcileShards(ctx context.Context, f fleet, obs *observed) error {
	cm, err := shardMapConfigMap(f)
	if err != nil {
		return err
	}
	if err := r.apply(ctx, cm); err != nil {
		return fmt.Errorf("applying config map %s: %w", shardMapName(f), err)
	}
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
