package controllers

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// deploymentState is what was observed of one Deployment: read from the cache before the
// pass, then replaced by the API server's answer to the apply.
type deploymentState struct {
	name               string
	desired            int32
	ready              int32
	generation         int64
	observedGeneration int64
	// updated counts the pods of the latest template, total every pod (of any template),
	// availableReplicas the pods available (ready long enough).
	updated, total, availableReplicas int32
	// secretsChecksum is the pod template's AnnotationSecretsChecksum.
	secretsChecksum string
}

// available is true once the Deployment's controller has seen its latest spec and every
// desired replica is ready.
func (d deploymentState) available() bool {
	return d.observedGeneration >= d.generation && d.ready >= d.desired
}

// rolledOut is true once every desired replica runs the latest template and is available,
// and no pod of an older template is left: what `kubectl rollout status` waits for. During
// a rolling update the old pods keep the Deployment available before it has rolled out.
func (d deploymentState) rolledOut() bool {
	return d.available() && d.updated >= d.desired && d.total <= d.updated && d.availableReplicas >= d.desired
}

// rolloutWait says what a Deployment that has not rolled out is waiting for.
func (d deploymentState) rolloutWait() string {
	switch {
	case d.observedGeneration < d.generation:
		return fmt.Sprintf("%s rolling out generation %d", d.name, d.generation)
	case d.updated < d.desired || d.total > d.updated:
		return fmt.Sprintf("%s %d/%d replicas updated, %d pod(s) in all", d.name, d.updated, d.desired, d.total)
	default:
		return fmt.Sprintf("%s %d/%d ready, %d available", d.name, d.ready, d.desired, d.availableReplicas)
	}
}

// notAvailable says, for each Deployment that is not available, what it waits for.
func notAvailable(ds []deploymentState) []string {
	var waiting []string
	for _, d := range ds {
		if !d.available() {
			w := fmt.Sprintf("%s %d/%d ready", d.name, d.ready, d.desired)
			if d.observedGeneration < d.generation {
				w = fmt.Sprintf("%s rolling out generation %d", d.name, d.generation)
			}
			waiting = append(waiting, w)
		}
	}
	return waiting
}

// fleetStatus is the status one pass writes: every field from what the pass observed. It
// is pure; `now` stamps conditions whose status changed.
func fleetStatus(f fleet, old v1alpha1.FleetIngestionStatus, obs *observed, streams streamsResult, sm shardMapResult, applyErr error, now metav1.Time) v1alpha1.FleetIngestionStatus {
	st := *old.DeepCopy()
	n := len(f.Spec.Shards)
	st.ShardCount = int32(n)
	if sm.m != nil { // not read this pass: keep what was last seen
		st.ShardMap, st.ShardMapVersions = shardMapStatus(sm.m), int32(len(sm.m.Versions))
	}

	prev := map[int32]v1alpha1.ShardStatus{}
	for _, s := range old.Shards {
		prev[s.Index] = s
	}
	lag := map[int]int64{}
	bytes := map[int]int64{}
	for _, s := range streams.provisioned.Streams {
		lag[s.Shard], bytes[s.Shard] = int64(s.Pending), int64(s.Bytes)
	}
	st.Shards = make([]v1alpha1.ShardStatus, n)
	st.ReadyShards = 0
	ingesters := make([]deploymentState, n)
	for i := 0; i < n; i++ {
		ss := v1alpha1.ShardStatus{Index: int32(i), Stream: f.topology().Stream(i)}
		if streams.err == nil {
			ss.ConsumerLag, ss.StreamBytes = lag[i], bytes[i]
		} else { // not observed this pass: keep what was last seen
			ss.ConsumerLag, ss.StreamBytes = prev[int32(i)].ConsumerLag, prev[int32(i)].StreamBytes
		}
		d := obs.deployment(ingesterName(f, i))
		ingesters[i] = d
		ss.ReadyReplicas = d.ready
		if streams.err == nil && d.available() {
			st.ReadyShards++
		}
		st.Shards[i] = ss
	}

	gen := f.Generation
	setStreamsCondition(&st.Conditions, f, streams, gen, now)
	setDeploymentsCondition(&st.Conditions, v1alpha1.ConditionShardsReady, componentIngester, ingesters, obs.secretProblems[componentIngester], applyErr, gen, now)
	setDeploymentsCondition(&st.Conditions, v1alpha1.ConditionGatewayReady, componentGateway, []deploymentState{obs.deployment(gatewayName(f))},
		obs.secretProblems[componentGateway], applyErr, gen, now)
	setDeploymentsCondition(&st.Conditions, v1alpha1.ConditionAnalyticsReady, componentAnalytics, []deploymentState{obs.deployment(analyticsName(f))},
		obs.secretProblems[componentAnalytics], applyErr, gen, now)
	setAuthCondition(&st.Conditions, f, gen, now)
	if sm.step.reason != "" {
		setCondition(&st.Conditions, v1alpha1.ConditionResharding, sm.step.status, sm.step.reason, sm.step.message, gen, now)
	}
	setReadyCondition(&st.Conditions, f.insecureNoAuth(), gen, now)
	if streams.err == nil && applyErr == nil && obs.secretsErr() == nil && sm.err == nil {
		st.ObservedGeneration = gen
	}
	return st
}

// invalidSpecStatus reports a spec the operator cannot act on.
func invalidSpecStatus(old v1alpha1.FleetIngestionStatus, gen int64, err error, now metav1.Time) v1alpha1.FleetIngestionStatus {
	st := *old.DeepCopy()
	setCondition(&st.Conditions, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, err.Error(), gen, now)
	return st
}

func setStreamsCondition(conds *[]metav1.Condition, f fleet, streams streamsResult, gen int64, now metav1.Time) {
	if streams.err != nil {
		setCondition(conds, v1alpha1.ConditionStreamsReady, metav1.ConditionFalse, streams.reason, streams.err.Error(), gen, now)
		return
	}
	t := f.topology()
	setCondition(conds, v1alpha1.ConditionStreamsReady, metav1.ConditionTrue, v1alpha1.ReasonProvisioned,
		fmt.Sprintf("%d stream(s) %s..%s and bucket %s match the spec", t.Shards, t.Stream(0), t.Stream(t.Shards-1), t.MappingBucket()), gen, now)
}

// setDeploymentsCondition reports whether every Deployment of a component is available;
// blocked lists the Secrets that keep its pods from starting (the first one's reason is
// the condition's).
func setDeploymentsCondition(conds *[]metav1.Condition, typ, component string, ds []deploymentState, blocked []secretProblem, applyErr error, gen int64, now metav1.Time) {
	if len(blocked) > 0 {
		msgs := make([]string, len(blocked))
		for i, p := range blocked {
			msgs[i] = p.message
		}
		setCondition(conds, typ, metav1.ConditionFalse, blocked[0].reason, strings.Join(msgs, "; "), gen, now)
		return
	}
	if applyErr != nil {
		setCondition(conds, typ, metav1.ConditionFalse, v1alpha1.ReasonApplyFailed, applyErr.Error(), gen, now)
		return
	}
	if waiting := notAvailable(ds); len(waiting) > 0 {
		setCondition(conds, typ, metav1.ConditionFalse, v1alpha1.ReasonDeploymentsProgressing,
			fmt.Sprintf("waiting for %s: %s", component, strings.Join(waiting, ", ")), gen, now)
		return
	}
	setCondition(conds, typ, metav1.ConditionTrue, v1alpha1.ReasonDeploymentsAvailable,
		fmt.Sprintf("%d %s Deployment(s) available", len(ds), component), gen, now)
}

// setReadyCondition summarises the other conditions (AuthEnabled only informs, Resharding
// too unless the shard map is ahead of the spec). When a condition is false for a reason a
// person must act on (a missing Secret), Ready takes that reason and its message, so
// `kubectl get` shows what to fix.
func setReadyCondition(conds *[]metav1.Condition, insecureNoAuth bool, gen int64, now metav1.Time) {
	var notReady []string
	readyReason := v1alpha1.ReasonComponentsNotReady
	for _, typ := range []string{v1alpha1.ConditionStreamsReady, v1alpha1.ConditionShardsReady, v1alpha1.ConditionGatewayReady, v1alpha1.ConditionAnalyticsReady, v1alpha1.ConditionResharding} {
		c := meta.FindStatusCondition(*conds, typ)
		switch {
		case typ == v1alpha1.ConditionResharding && (c == nil || c.Reason != v1alpha1.ReasonShardMapAhead):
			// a growth in progress only informs: the components' own conditions say what waits
		case c == nil:
			notReady = append(notReady, typ+" (Unknown)")
		case c.Status == metav1.ConditionTrue:
		case needsAction(c.Reason):
			if readyReason == v1alpha1.ReasonComponentsNotReady {
				readyReason = c.Reason
			}
			notReady = append(notReady, fmt.Sprintf("%s (%s: %s)", typ, c.Reason, c.Message))
		default:
			notReady = append(notReady, fmt.Sprintf("%s (%s)", typ, c.Reason))
		}
	}
	if len(notReady) > 0 {
		setCondition(conds, v1alpha1.ConditionReady, metav1.ConditionFalse, readyReason, "not ready: "+strings.Join(notReady, ", "), gen, now)
		return
	}
	msg := "every component is ready"
	if insecureNoAuth {
		msg += "; authentication is off (spec.auth.insecureNoAuth)"
	}
	setCondition(conds, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled, msg, gen, now)
}

// needsAction is true for the condition reasons that only a person can resolve: a Secret
// the spec names is missing or unusable, or the shard map has more shards than the spec.
func needsAction(reason string) bool {
	switch reason {
	case v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonSecretInvalid, v1alpha1.ReasonCredentialsUnavailable, v1alpha1.ReasonShardMapAhead:
		return true
	}
	return false
}

// setCondition sets one condition; its LastTransitionTime moves only when its status does.
func setCondition(conds *[]metav1.Condition, typ string, status metav1.ConditionStatus, reason, msg string, gen int64, now metav1.Time) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg, 1024),
		ObservedGeneration: gen, LastTransitionTime: now,
	})
	sort.SliceStable(*conds, func(i, j int) bool { return conditionOrder((*conds)[i].Type) < conditionOrder((*conds)[j].Type) })
}

func conditionOrder(typ string) int {
	for i, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionStreamsReady, v1alpha1.ConditionShardsReady, v1alpha1.ConditionGatewayReady, v1alpha1.ConditionAnalyticsReady, v1alpha1.ConditionAuthEnabled, v1alpha1.ConditionResharding} {
		if t == typ {
			return i
		}
	}
	return 99
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
