package controllers

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// streamsResult is what the streams phase saw: what EnsureStreams reported, or why it could
// not run, with the condition reason that names the cause.
type streamsResult struct {
	provisioned ingester.Provisioned
	err         error
	reason      string
	// js is the fleet's JetStream, nil when NATS could not be reached.
	js jetstream.JetStream
}

// reconcileStreams creates or repairs the fleet's streams, durable consumers and mapping
// bucket through ingester.EnsureStreams, the function `fleetingest dev` also uses. It
// compares the live server configuration with the desired one on every pass, so the periodic
// resync puts back what was changed or deleted behind the operator's back. The NATS
// credentials, if any, come from the Secrets observed in this pass.
func (r *FleetIngestionReconciler) reconcileStreams(ctx context.Context, f fleet, obs *observed) streamsResult {
	creds, res := natsCredentials(f.FleetIngestion, obs.secrets)
	if res.err != nil {
		return res
	}
	js, res := r.jetStream(ctx, f.FleetIngestion, creds)
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
		return streamsResult{provisioned: p, err: fmt.Errorf("provisioning streams of %s/%s: %w", f.Namespace, f.Name, err), reason: reason, js: js}
	}
	return streamsResult{provisioned: p, reason: v1alpha1.ReasonProvisioned, js: js}
}

// natsCredentials is the content of the fleet's NATS credentials file from the Secrets read
// (name → Secret, nil when it does not exist); none when the fleet uses no credentials.
func natsCredentials(fi *v1alpha1.FleetIngestion, secrets map[string]*corev1.Secret) ([]byte, streamsResult) {
	ref := fi.Spec.NATS.CredentialsSecretRef
	if ref == nil {
		return nil, streamsResult{}
	}
	s := secrets[ref.Name]
	if s == nil {
		return nil, streamsResult{err: fmt.Errorf("reading NATS credentials: secret %s/%s (spec.nats.credentialsSecretRef) not found", fi.Namespace, ref.Name),
			reason: v1alpha1.ReasonSecretNotFound}
	}
	creds := s.Data[ref.Key]
	if len(creds) == 0 {
		return nil, streamsResult{err: fmt.Errorf("reading NATS credentials: secret %s/%s has no key %q", fi.Namespace, ref.Name, ref.Key),
			reason: v1alpha1.ReasonCredentialsUnavailable}
	}
	return creds, streamsResult{}
}

// jetStream connects to the fleet's NATS with the content of its credentials file, if any.
func (r *FleetIngestionReconciler) jetStream(ctx context.Context, f *v1alpha1.FleetIngestion, creds []byte) (jetstream.JetStream, streamsResult) {
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

// deleteStreams removes the fleet's shard streams (with their consumers), its dead-letter
// stream and its buckets, and returns t with the shard count it deleted streams of: every
// shard the spec lists or the shard map places readings on, whichever are more. Objects
// already gone are not an error, so a retry after a partial failure finishes the job.
func deleteStreams(ctx context.Context, js jetstream.JetStream, t ingester.Topology) (ingester.Topology, error) {
	m, _, err := ingester.ReadShardMap(ctx, js, t)
	switch {
	case err == nil:
		t.Shards = max(t.Shards, m.Shards())
	case !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrKeyNotFound):
		return t, fmt.Errorf("reading the shard map for its shard count: %w", err)
	}
	streams := []string{t.DeadLetterStream()}
	for i := 0; i < t.Shards; i++ {
		streams = append(streams, t.Stream(i))
	}
	for _, s := range streams {
		if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return t, fmt.Errorf("deleting stream %s: %w", s, err)
		}
	}
	for _, b := range t.Buckets() {
		if err := js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return t, fmt.Errorf("deleting bucket %s: %w", b, err)
		}
	}
	return t, nil
}
