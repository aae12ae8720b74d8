package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// Event reasons.
const (
	EventStreamsProvisioned   = "StreamsProvisioned"
	EventStreamsUnavailable   = "StreamsUnavailable"
	EventReady                = "Ready"
	EventNotReady             = "NotReady"
	EventStreamsDeleted       = "StreamsDeleted"
	EventStreamsRetained      = "StreamsRetained"
	EventStreamDeletionFailed = "StreamDeletionFailed"
	EventStreamsAbandoned     = "StreamsAbandoned"
	EventInsecureNoAuth       = "InsecureNoAuth"
)

// recordEvents emits Events for what changed in this pass: streams created or repaired,
// StreamsReady and Ready changing status, authentication turned off. A steady state emits
// nothing.
func (r *FleetIngestionReconciler) recordEvents(fi *v1alpha1.FleetIngestion, old, cur v1alpha1.FleetIngestionStatus, streams streamsResult) {
	if r.Recorder == nil {
		return
	}
	for _, note := range streamsEvents(streams.provisioned) {
		r.Recorder.Eventf(fi, nil, corev1.EventTypeNormal, EventStreamsProvisioned, "Provision", "%s", note)
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionStreamsReady); changed && c.Status == metav1.ConditionFalse {
		r.Recorder.Eventf(fi, nil, corev1.EventTypeWarning, EventStreamsUnavailable, "Provision", "%s: %s", c.Reason, c.Message)
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionAuthEnabled); changed && c.Status == metav1.ConditionFalse {
		r.Recorder.Eventf(fi, nil, corev1.EventTypeWarning, EventInsecureNoAuth, "Reconcile", "%s", c.Message)
	}
	if c, changed := transitioned(old, cur, v1alpha1.ConditionReady); changed {
		if c.Status == metav1.ConditionTrue {
			r.Recorder.Eventf(fi, nil, corev1.EventTypeNormal, EventReady, "Reconcile", "%s", c.Message)
		} else if meta.FindStatusCondition(old.Conditions, v1alpha1.ConditionReady) != nil {
			r.Recorder.Eventf(fi, nil, corev1.EventTypeWarning, EventNotReady, "Reconcile", "%s", c.Message)
		}
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
