package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// shardMapConfigMapKey is the key of the shard map's JSON in the fleet's shard-map
// ConfigMap.
const shardMapConfigMapKey = "shardmap.json"

// shardMapResult is what the shard-map phase read and did.
type shardMapResult struct {
	// m is the fleet's shard map as the pass leaves it (with the version it wrote, if
	// any); nil when it could not be read.
	m *placement.ShardMap
	// step is where the fleet's growth stands, for the Resharding condition.
	step reshardStep
	// grown is true when the pass wrote a version.
	grown bool
	// err is why the map could not be read, grown or mirrored.
	err error
}

// reconcileShardMap reads the fleet's shard map from NATS, appends the version that places
// readings on every shard of spec.shards when the growth is ready for it (planResharding),
// and mirrors the map into the shard-map ConfigMap. It runs after the streams and objects
// phases, whose outcome it waits for. When the map cannot be read, Resharding turns Unknown
// and the status and the ConfigMap keep the map last seen.
func (r *FleetIngestionReconciler) reconcileShardMap(ctx context.Context, f fleet, obs *observed, streams streamsResult, applyErr error) shardMapResult {
	if streams.js == nil {
		return shardMapResult{step: unreadStep(streams.reason, streams.err)}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.NATSRequestTimeout)
	defer cancel()
	m, _, err := ingester.ReadShardMap(ctx, streams.js, f.topology())
	if err != nil {
		err = fmt.Errorf("reading the shard map of %s/%s: %w", f.Namespace, f.Name, err)
		reason := v1alpha1.ReasonProvisioningFailed
		if isUnreachable(err) {
			reason = v1alpha1.ReasonNATSUnreachable
		}
		return shardMapResult{step: unreadStep(reason, err), err: err}
	}
	res := shardMapResult{m: m, step: planResharding(f, m, obs, streams.err, applyErr, r.Now())}
	if res.step.grow {
		res = r.growShardMap(ctx, streams.js, f, m)
	}
	cm, err := shardMapConfigMap(f, res.m)
	if err == nil {
		err = r.apply(ctx, cm)
	}
	if err != nil {
		res.err = errors.Join(res.err, fmt.Errorf("applying config map %s: %w", shardMapName(f), err))
	}
	return res
}

// growShardMap appends the version for spec.shards, to take effect the configured lead
// after it is written. The write is compare-and-set on the map's revision, and refused
// when the map already has that many shards.
func (r *FleetIngestionReconciler) growShardMap(ctx context.Context, js jetstream.JetStream, f fleet, m *placement.ShardMap) shardMapResult {
	n := len(f.Spec.Shards)
	grown, err := ingester.GrowShardMap(ctx, js, f.topology(), n, r.cfg.ShardMapLead)
	if err != nil {
		err = fmt.Errorf("writing the shard map's version for %d shards: %w", n, err)
		return shardMapResult{m: m, step: writeFailedStep(err), err: err}
	}
	step := versionWrittenStep(grown)
	r.Log.Info("wrote a shard-map version", "namespace", f.Namespace, "fleet", f.Name,
		"versions", len(grown.Versions), "shards", n, "from", step.cutover)
	return shardMapResult{m: grown, step: step, grown: true}
}

// shardMapConfigMap mirrors the shard map, as JSON, for people and tools that read the
// cluster rather than NATS; no component reads it.
func shardMapConfigMap(f fleet, m *placement.ShardMap) (*corev1ac.ConfigMapApplyConfiguration, error) {
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return corev1ac.ConfigMap(shardMapName(f), f.Namespace).
		WithLabels(commonLabels(f)).
		WithOwnerReferences(ownerReference(f)).
		WithData(map[string]string{shardMapConfigMapKey: string(b)}), nil
}

// untilCutover is how long until the version written takes effect, at least a second; zero
// when no written version waits.
func (res shardMapResult) untilCutover(now time.Time) time.Duration {
	if res.step.cutover.IsZero() {
		return 0
	}
	return max(res.step.cutover.Sub(now)+time.Second, time.Second)
}
