package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// reconcileDelete handles a FleetIngestion being deleted. Its Kubernetes objects go by
// garbage collection (owner references); its NATS streams and bucket are removed only with
// deletionPolicy Delete. If NATS cannot be reached then, the finalizer stays (so the
// streams are not silently orphaned), an Event says why, and the pass is retried with
// backoff; the annotation fleetingest.io/abandon-streams=true lets an administrator let go.
func (r *FleetIngestionReconciler) reconcileDelete(ctx context.Context, fi *v1alpha1.FleetIngestion) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(fi, v1alpha1.Finalizer) {
		return ctrl.Result{}, nil
	}
	t := topology(fi)
	switch {
	case fi.Spec.DeletionPolicy != v1alpha1.DeletionPolicyDelete:
		r.event(fi, corev1.EventTypeNormal, EventStreamsRetained, "deletionPolicy %s: kept %d stream(s) and bucket %s in NATS", policyName(fi), t.Shards, t.MappingBucket())
	case fi.Annotations[v1alpha1.AnnotationAbandonStreams] == "true":
		r.event(fi, corev1.EventTypeWarning, EventStreamsAbandoned, "%s=true: left %d stream(s) and bucket %s in NATS without deleting them", v1alpha1.AnnotationAbandonStreams, t.Shards, t.MappingBucket())
	default:
		if err := r.deleteFleetStreams(ctx, fi); err != nil {
			r.event(fi, corev1.EventTypeWarning, EventStreamDeletionFailed,
				"keeping finalizer %s: %v; it is retried, or annotate %s=true to delete without removing the streams",
				v1alpha1.Finalizer, err, v1alpha1.AnnotationAbandonStreams)
			return ctrl.Result{}, err
		}
		r.event(fi, corev1.EventTypeNormal, EventStreamsDeleted, "deleted %d stream(s) and bucket %s", t.Shards, t.MappingBucket())
	}
	r.metrics.forget(fi.Namespace, fi.Name)
	base := fi.DeepCopy()
	controllerutil.RemoveFinalizer(fi, v1alpha1.Finalizer)
	if err := r.Client.Patch(ctx, fi, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer: %w", client.IgnoreNotFound(err))
	}
	return ctrl.Result{}, nil
}

func (r *FleetIngestionReconciler) deleteFleetStreams(ctx context.Context, fi *v1alpha1.FleetIngestion) error {
	secrets := map[string]*corev1.Secret{}
	if ref := fi.Spec.NATS.CredentialsSecretRef; ref != nil {
		s, err := r.readSecret(ctx, fi.Namespace, ref.Name)
		if err != nil {
			return fmt.Errorf("deleting streams: reading NATS credentials: %w", err)
		}
		secrets[ref.Name] = s
	}
	creds, res := natsCredentials(fi, secrets)
	if res.err != nil {
		return fmt.Errorf("deleting streams: %w", res.err)
	}
	js, res := r.jetStream(ctx, fi, creds)
	if res.err != nil {
		return fmt.Errorf("deleting streams: %w", res.err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.NATSRequestTimeout)
	defer cancel()
	return deleteStreams(ctx, js, topology(fi))
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
