package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// Event reasons: one per kind of change, because the event recorder merges Events of the
// same reason and action on one object into a series that shows only the latest note.
const (
	EventStreamCreated        = "StreamCreated"
	EventStreamRepaired       = "StreamRepaired"
	EventBucketCreated        = "BucketCreated"
	EventSecretChanged        = "SecretChanged"
	EventStreamsUnavailable   = "StreamsUnavailable"
	EventReady                = "Ready"
	EventNotReady             = "NotReady"
	EventStreamsDeleted       = "StreamsDeleted"
	EventStreamsRetained      = "StreamsRetained"
	EventStreamDeletionFailed = "StreamDeletionFailed"
	EventStreamsAbandoned     = "StreamsAbandoned"
	EventInsecureNoAuth       = "InsecureNoAuth"
	EventShardMapGrown        = "ShardMapGrown"
	EventShardMapAhead        = "ShardMapAhead"
)

// fleetEvent is one Event to emit.
type fleetEvent struct {
	typ, reason, action, note string
}

// passEvents are the Events for what changed in one pass: streams and buckets created or
// repaired (one Event per kind, naming every object of that kind), Deployments rolled for a
// changed Secret, StreamsReady and Ready changing status, authentication turned off, a
// shard-map version written by the pass (grown), a shard map found ahead of the spec. A
// steady state emits nothing. Pure, so that the reasons are table-tested.
func passEvents(old, cur v1alpha1.FleetIngestionStatus, p ingester.Provisioned, rolled []string, grown bool) []fleetEvent {
	var created, repaired, buckets []string
	for _, s := range p.Streams {
		switch {
		case s.Created:
			created = append(created, s.Name)
		case len(s.Updated) > 0:
			repaired = append(repaired, fmt.Sprintf("%s (%s had drifted)", s.Name, strings.Join(s.Updated, ", ")))
		}
	}
	for _, b := range p.Buckets {
		if b.Created {
			buckets = append(buckets, b.Name)
		}
	}
	var out []fleetEvent
	if len(created) > 0 {
		out = append(out, fleetEvent{corev1.EventTypeNormal, EventStreamCreated, "Provision", "created stream(s) " + strings.Join(created, ", ")})
	}
	if len(repaired) > 0 {
		out = append(out, fleetEvent{corev1.EventTypeNormal, EventStreamRepaired, "Provision", "repaired stream(s) " + strings.Join(repaired, "; ")})
	}
	if len(buckets) > 0 {
		out = append(out, fleetEvent{corev1.EventTypeNormal, EventBucketCreated, "Provision", "created bucket(s) " + strings.Join(buckets, ", ")})
	}
	if len(rolled) > 0 {
		out = append(out, fleetEvent{corev1.EventTypeNormal, EventSecretChanged, "Reconcile",
			"a DSN or NATS credentials Secret changed: rolling the pods of " + strings.Join(rolled, ", ")})
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionStreamsReady); changed && c.Status == metav1.ConditionFalse {
		out = append(out, fleetEvent{corev1.EventTypeWarning, EventStreamsUnavailable, "Provision", c.Reason + ": " + c.Message})
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionAuthEnabled); changed && c.Status == metav1.ConditionFalse {
		out = append(out, fleetEvent{corev1.EventTypeWarning, EventInsecureNoAuth, "Reconcile", c.Message})
	}
	if c := meta.FindStatusCondition(cur.Conditions, v1alpha1.ConditionResharding); c != nil && grown {
		out = append(out, fleetEvent{corev1.EventTypeNormal, EventShardMapGrown, "Reshard", c.Message})
	}
	if c, moved := reasonChanged(old, cur, v1alpha1.ConditionResharding); moved && c.Reason == v1alpha1.ReasonShardMapAhead {
		out = append(out, fleetEvent{corev1.EventTypeWarning, EventShardMapAhead, "Reshard", c.Message})
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionReady); changed {
		if c.Status == metav1.ConditionTrue {
			out = append(out, fleetEvent{corev1.EventTypeNormal, EventReady, "Reconcile", c.Message})
		} else if meta.FindStatusCondition(old.Conditions, v1alpha1.ConditionReady) != nil {
			out = append(out, fleetEvent{corev1.EventTypeWarning, EventNotReady, "Reconcile", c.Message})
		}
	}
	return out
}

// recordEvents emits the pass's Events on the FleetIngestion.
func (r *FleetIngestionReconciler) recordEvents(fi *v1alpha1.FleetIngestion, events []fleetEvent) {
	if r.Recorder == nil {
		return
	}
	for _, e := range events {
		r.Recorder.Eventf(fi, nil, e.typ, e.reason, e.action, "%s", truncate(e.note, 1024))
	}
}

// transitioned returns the current condition of typ and whether its status differs from
// the old one (a condition that appears counts as a change).
func transitioned(old, cur v1alpha1.FleetIngestionStatus, typ string) (metav1.Condition, bool) {
	c := meta.FindStatusCondition(cur.Conditions, typ)
	if c == nil {
		return metav1.Condition{}, false
	}
	o := meta.FindStatusCondition(old.Conditions, typ)
	return *c, o == nil || o.Status != c.Status
}

// reasonChanged returns the current condition of typ and whether its reason differs from
// the old one's (a condition that appears counts as a change).
func reasonChanged(old, cur v1alpha1.FleetIngestionStatus, typ string) (metav1.Condition, bool) {
	c := meta.FindStatusCondition(cur.Conditions, typ)
	if c == nil {
		return metav1.Condition{}, false
	}
	o := meta.FindStatusCondition(old.Conditions, typ)
	return *c, o == nil || o.Reason != c.Reason
}
