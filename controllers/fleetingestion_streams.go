package controllers

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// streamsResult is what the streams phase saw: what EnsureStreams reported, or why it could
// not run, with the condition reason that names the cause.
type streamsResult struct {
	provisioned ingester.Provisioned
	err         error
	reason      string
}

// reconcileStreams creates or repairs the fleet's streams, durable consumers and mapping
// bucket through ingester.EnsureStreams, the function `fleetingest dev` also uses. It
// compares the live server configuration with the desired one on every pass, so the periodic
// resync puts back what was changed or deleted behind the operator's back.
func (r *FleetIngestionReconciler) reconcileStreams(ctx context.Context, f fleet) streamsResult {
	js, res := r.jetStream(ctx, f.FleetIngestion)
	if res.err != nil {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.NATSRequestTimeout)
	defer cancel()
	p, err := ingester.EnsureStreams(ctx, js, f.topology(), f.streamOptions())
	if err != nil {
		reason := v1alpha1.ReasonProvisioningFailed
		if isUnreachable(err) {
			reason = v1alpha1.ReasonNATSUnreachable
		}
		return streamsResult{provisioned: p, err: fmt.Errorf("provisioning streams of %s/%s: %w", f.Namespace, f.Name, err), reason: reason}
	}
	return streamsResult{provisioned: p, reason: v1alpha1.ReasonProvisioned}
}

// jetStream connects to the fleet's NATS with its credentials, if any.
func (r *FleetIngestionReconciler) jetStream(ctx context.Context, f *v1alpha1.FleetIngestion) (jetstream.JetStream, streamsResult) {
	var creds []byte
	if ref := f.Spec.NATS.CredentialsSecretRef; ref != nil {
		var s corev1.Secret
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: ref.Name}, &s); err != nil {
			if apierrors.IsNotFound(err) {
				err = fmt.Errorf("secret %s/%s not found", f.Namespace, ref.Name)
			}
			return nil, streamsResult{err: fmt.Errorf("reading NATS credentials: %w", err), reason: v1alpha1.ReasonCredentialsUnavailable}
		}
		if creds = s.Data[ref.Key]; len(creds) == 0 {
			return nil, streamsResult{err: fmt.Errorf("reading NATS credentials: secret %s/%s has no key %q", f.Namespace, ref.Name, ref.Key), reason: v1alpha1.ReasonCredentialsUnavailable}
		}
	}
	js, err := r.NATS.JetStream(ctx, f.Spec.NATS.URL, creds)
	if err != nil {
		reason := v1alpha1.ReasonProvisioningFailed
		if isUnreachable(err) {
			reason = v1alpha1.ReasonNATSUnreachable
		}
		return nil, streamsResult{err: err, reason: reason}
	}
	return js, streamsResult{}
}

// deleteStreams removes the fleet's streams (with their consumers) and its buckets.
// Objects already gone are not an error, so a retry after a partial failure finishes the job.
func deleteStreams(ctx context.Context, js jetstream.JetStream, t ingester.Topology) error {
	for i := 0; i < t.Shards; i++ {
		if err := js.DeleteStream(ctx, t.Stream(i)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("deleting stream %s: %w", t.Stream(i), err)
		}
	}
	for _, b := range t.Buckets() {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("deleting bucket %s: %w", b, err)
		}
	}
	return nil
}

// streamsEvents are the notable things a streams pass did, for Events.
func streamsEvents(p ingester.Provisioned) []string {
	var out []string
	for _, s := range p.Streams {
		switch {
		case s.Created:
			out = append(out, fmt.Sprintf("created stream %s", s.Name))
		case len(s.Updated) > 0:
			out = append(out, fmt.Sprintf("repaired stream %s: %v had drifted", s.Name, s.Updated))
		}
	}
	for _, b := range p.Buckets {
		if b.Created {
			out = append(out, fmt.Sprintf("created bucket %s", b.Name))
		}
	}
	return out
}
