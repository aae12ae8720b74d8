package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// reconcileDelete handles a FleetIngestion being deleted. Its Kubernetes objects go by
// garbage collection (owner references); its NATS objects (shard streams, dead-letter
// stream, mapping, revocation and shard-map buckets) are removed only with deletionPolicy
// Delete. If NATS cannot be reached then, the finalizer stays (so the streams are not
// silently orphaned), an Event says why, and the pass is retried with backoff; the
// annotation fleetingest.io/abandon-streams=true lets an administrator let go.
func (r *FleetIngestionReconciler) reconcileDelete(ctx context.Context, fi *v1alpha1.FleetIngestion) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(fi, v1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	objects := natsObjects(topology(fi))
	switch {
	case fi.Spec.DeletionPolicy != v1alpha1.DeletionPolicyDelete:
		r.event(fi, corev1.EventTypeNormal, EventStreamsRetained, "deletionPolicy %s: kept %s in NATS", policyName(fi), objects)
	case fi.Annotations[v1alpha1.AnnotationAbandonStreams] == "true":
		r.event(fi, corev1.EventTypeWarning, EventStreamsAbandoned, "%s=true: left %s in NATS without deleting them", v1alpha1.AnnotationAbandonStreams, objects)
	default:
		deleted, err := r.deleteFleetStreams(ctx, fi)
		if err != nil {
			r.event(fi, corev1.EventTypeWarning, EventStreamDeletionFailed,
				"keeping finalizer %s: %v; it is retried, or annotate %s=true to delete without removing the streams",
				v1alpha1.Finalizer, err, v1alpha1.AnnotationAbandonStreams)
			return ctrl.Result{}, err
		}
		r.event(fi, corev1.EventTypeNormal, EventStreamsDeleted, "deleted %s", natsObjects(deleted))
	}
	r.metrics.forget(fi.Namespace, fi.Name)
	base := fi.DeepCopy()
	controllerutil.RemoveFinalizer(fi, v1alpha1.Finalizer)
	if err := r.Client.Patch(ctx, fi, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", client.IgnoreNotFound(err))
	}
	return ctrl.Result{}, nil
}

// deleteFleetStreams deletes the fleet's NATS objects and returns the topology whose
// objects it deleted (its shard count the larger of the spec's and the shard map's).
func (r *FleetIngestionReconciler) deleteFleetStreams(ctx context.Context, fi *v1alpha1.FleetIngestion) (ingester.Topology, error) {
	t := topology(fi)
	secrets := map[string]*corev1.Secret{}
	if ref := fi.Spec.NATS.CredentialsSecretRef; ref != nil {
		s, err := r.readSecret(ctx, fi.Namespace, ref.Name)
		if err != nil {
			return t, fmt.Errorf("deleting streams: reading NATS credentials: %w", err)
		}
		secrets[ref.Name] = s
	}
	creds, res := natsCredentials(fi, secrets)
	if res.err != nil {
		return t, fmt.Errorf("deleting streams: %w", res.err)
	}
	js, res := r.jetStream(ctx, fi, creds)
	if res.err != nil {
		return t, fmt.Errorf("deleting streams: %w", res.err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.NATSRequestTimeout)
	defer cancel()
	return deleteStreams(ctx, js, t)
}

// natsObjects names a fleet's NATS objects for an Event.
func natsObjects(t ingester.Topology) string {
	return fmt.Sprintf("the shard streams %s..%s, the dead-letter stream %s and the buckets %s",
		t.Stream(0), t.Stream(t.Shards-1), t.DeadLetterStream(), strings.Join(t.Buckets(), ", "))
}

func (r *FleetIngestionReconciler) event(fi *v1alpha1.FleetIngestion, typ, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(fi, nil, typ, reason, "Delete", note, args...)
	}
}

func policyName(fi *v1alpha1.FleetIngestion) v1alpha1.DeletionPolicy {
	if fi.Spec.DeletionPolicy == "" {
		return v1alpha1.DeletionPolicyRetain
	}
	return fi.Spec.DeletionPolicy
}
