package controllers

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// reshardStep is where the fleet's growth stands after a pass: the Resharding condition,
// and whether the pass is to write the shard-map version for spec.shards.
type reshardStep struct {
	// grow asks the pass to write the version; the condition then comes from the write.
	grow    bool
	status  metav1.ConditionStatus
	reason  string
	message string
	// cutover is when the newest version takes effect, while that is to come (reason
	// VersionWritten).
	cutover time.Time
}

// planResharding decides where the fleet's growth stands from the shard map m and what the
// pass observed. It asks for the version only when the map places readings on fewer shards
// than spec.shards lists, so a version is never written twice (not even after a pass that
// wrote one and failed before writing its status), and only once the streams are
// provisioned, every object applied, the ingesters of the shards the map does not place on
// yet available, and analytics rolled out with every shard's DSN: no reading is then
// placed on a shard nobody consumes or answers for. A map with more shards than the spec is
// reported and left alone. Pure: `now` says whether a version written has taken effect.
func planResharding(f fleet, m *placement.ShardMap, obs *observed, streamsErr, applyErr error, now time.Time) reshardStep {
	want, have := len(f.Spec.Shards), m.Shards()
	switch {
	case have > want:
		return reshardStep{status: metav1.ConditionFalse, reason: v1alpha1.ReasonShardMapAhead, message: fmt.Sprintf(
			"the shard map in NATS places readings on %d shards but spec.shards lists %d: list shards %d..%d again (a fleet cannot shrink); no shard-map version is written",
			have, want, want, have-1)}
	case have == want:
		return settledStep(m, now)
	}
	growing := fmt.Sprintf("growing from %d to %d shards", have, want)
	if streamsErr != nil {
		return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonProvisioningShards,
			message: growing + ": waiting for the new shards' streams (see StreamsReady)"}
	}
	if applyErr != nil {
		return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonProvisioningShards,
			message: growing + ": waiting for the fleet's objects to be applied: " + applyErr.Error()}
	}
	added := make([]deploymentState, 0, want-have)
	for i := have; i < want; i++ {
		added = append(added, obs.deployment(ingesterName(f, i)))
	}
	if waiting := notAvailable(added); len(waiting) > 0 {
		return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonProvisioningShards,
			message: growing + ": waiting for the new shards' ingesters: " + strings.Join(waiting, ", ")}
	}
	if a := obs.deployment(analyticsName(f)); !a.rolledOut() {
		return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonWaitingForAnalytics,
			message: growing + ": the new shards' ingesters are available; waiting for analytics to roll out with every shard's DSN: " + a.rolloutWait()}
	}
	return reshardStep{grow: true}
}

// settledStep is the state of a map that places readings on every shard of the spec: its
// newest version written and still to take effect, or the growth complete.
func settledStep(m *placement.ShardMap, now time.Time) reshardStep {
	if latest := m.Versions[len(m.Versions)-1]; latest.From.After(now) {
		return versionWrittenStep(m)
	}
	return reshardStep{status: metav1.ConditionFalse, reason: v1alpha1.ReasonReshardingComplete, message: fmt.Sprintf(
		"the shard map places readings on all %d shards spec.shards lists (%d version(s))", m.Shards(), len(m.Versions))}
}

// versionWrittenStep reports m's newest version, whose from is to come.
func versionWrittenStep(m *placement.ShardMap) reshardStep {
	latest := m.Versions[len(m.Versions)-1]
	return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonVersionWritten, cutover: latest.From, message: fmt.Sprintf(
		"shard-map version %d written: readings stamped from %s on are placed on %d shards",
		len(m.Versions), latest.From.UTC().Format(time.RFC3339Nano), latest.Shards)}
}

// unreadStep reports a shard map that could not be read, for reason.
func unreadStep(reason string, err error) reshardStep {
	msg := "the shard map could not be read"
	if err != nil {
		msg += ": " + err.Error()
	}
	return reshardStep{status: metav1.ConditionUnknown, reason: reason, message: msg}
}

// writeFailedStep reports a version that could not be written.
func writeFailedStep(err error) reshardStep {
	return reshardStep{status: metav1.ConditionTrue, reason: v1alpha1.ReasonShardMapWriteFailed, message: err.Error()}
}

// shardMapStatus is the shard map in the API's form, whose JSON is the map's own.
func shardMapStatus(m *placement.ShardMap) *v1alpha1.ShardMap {
	out := &v1alpha1.ShardMap{Versions: make([]v1alpha1.ShardMapVersion, len(m.Versions))}
	for i, v := range m.Versions {
		sv := v1alpha1.ShardMapVersion{Shards: int32(v.Shards), Ranges: make([]v1alpha1.SlotRange, len(v.Ranges))}
		if !v.From.IsZero() {
			sv.From = v.From.UTC().Format(time.RFC3339Nano)
		}
		for j, r := range v.Ranges {
			sv.Ranges[j] = v1alpha1.SlotRange{Shard: int32(r.Shard), Start: int32(r.Start), End: int32(r.End)}
		}
		out.Versions[i] = sv
	}
	return out
}
