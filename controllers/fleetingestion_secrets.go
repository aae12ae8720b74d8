package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// AnnotationSecretsChecksum is the pod-template annotation that digests the content of the
// Secret keys a component's pods read once at start (shard DSNs, NATS credentials): when
// one of them changes, so does the template, and the Deployment rolls its pods. The
// verification-key Secrets are left out: the processes re-read them while running.
const AnnotationSecretsChecksum = "fleetingest.io/secrets-checksum"

// keyFileSuffix ends the name of every verification key in an auth Secret ("<kid>.pub").
const keyFileSuffix = ".pub"

// mountedSecret is one Secret a component's pods mount, and the spec field that names it.
type mountedSecret struct {
	component string // componentGateway, componentIngester or componentAnalytics
	shard     int    // the ingester's shard; -1 for the other components
	field     string // e.g. spec.shards[1].dsnSecretRef
	name      string
	// key is the one key the pods mount; empty for a Secret mounted whole.
	key string
	// verificationKeys marks a Secret of "<kid>.pub" keys, mounted whole and re-read by the
	// process every second: a change to it rolls nothing.
	verificationKeys bool
}

// pods names the pods that mount the Secret, for messages.
func (m mountedSecret) pods() string {
	if m.component == componentIngester {
		return fmt.Sprintf("shard %d ingester", m.shard)
	}
	return m.component
}

// podSecrets are the Secrets one component's pods mount (shard ≥ 0 for an ingester), in a
// stable order: the NATS credentials, the DSNs, then the verification keys.
func podSecrets(f fleet, component string, shard int) []mountedSecret {
	var out []mountedSecret
	if ref := f.Spec.NATS.CredentialsSecretRef; ref != nil {
		out = append(out, mountedSecret{component: component, shard: shard, field: "spec.nats.credentialsSecretRef", name: ref.Name, key: ref.Key})
	}
	dsn := func(i int) mountedSecret {
		ref := f.Spec.Shards[i].DSNSecretRef
		return mountedSecret{component: component, shard: shard, field: fmt.Sprintf("spec.shards[%d].dsnSecretRef", i), name: ref.Name, key: ref.Key}
	}
	switch component {
	case componentIngester:
		out = append(out, dsn(shard))
	case componentAnalytics:
		for i := range f.Spec.Shards {
			out = append(out, dsn(i))
		}
	}
	if f.insecureNoAuth() {
		return out
	}
	a := f.Spec.Auth
	switch {
	case component == componentGateway && a.DeviceKeysSecretRef != nil:
		out = append(out, mountedSecret{component: component, shard: shard, field: "spec.auth.deviceKeysSecretRef",
			name: a.DeviceKeysSecretRef.Name, verificationKeys: true})
	case component == componentAnalytics && a.Users != nil && a.Users.KeysSecretRef != nil:
		out = append(out, mountedSecret{component: component, shard: shard, field: "spec.auth.users.keysSecretRef",
			name: a.Users.KeysSecretRef.Name, verificationKeys: true})
	}
	return out
}

// mountedSecrets are the Secrets every pod of the fleet mounts: the gateway's, each shard's
// ingester's, then analytics'.
func mountedSecrets(f fleet) []mountedSecret {
	out := podSecrets(f, componentGateway, -1)
	for i := range f.Spec.Shards {
		out = append(out, podSecrets(f, componentIngester, i)...)
	}
	return append(out, podSecrets(f, componentAnalytics, -1)...)
}

// secretsChecksum digests what the pods read once from their Secrets: the value of every
// mounted key that is not a verification key (a missing Secret or key digests as absent,
// so its appearance rolls the pods too). Empty when the pods mount no such key.
func secretsChecksum(ms []mountedSecret, secrets map[string]*corev1.Secret) string {
	h := sha256.New()
	n := 0
	for _, m := range ms {
		if m.verificationKeys {
			continue
		}
		n++
		fmt.Fprintf(h, "%s/%s=", m.name, m.key)
		if s := secrets[m.name]; s != nil {
			if v, ok := s.Data[m.key]; ok {
				d := sha256.Sum256(v)
				h.Write([]byte(hex.EncodeToString(d[:])))
			}
		}
		h.Write([]byte{'\n'})
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// secretProblem is why a component's pods cannot start: a Secret they mount is missing,
// or holds nothing the component can use. reason is a condition reason.
type secretProblem struct {
	reason  string
	message string
}

// checkSecret says what keeps a mounted Secret from being used (secret nil: it does not
// exist), or nil when the pods can use it.
func checkSecret(ns string, m mountedSecret, secret *corev1.Secret) *secretProblem {
	if secret == nil {
		return &secretProblem{reason: v1alpha1.ReasonSecretNotFound, message: fmt.Sprintf(
			"secret %s/%s (%s) not found: the %s pods cannot start until it exists", ns, m.name, m.field, m.pods())}
	}
	if m.verificationKeys {
		for k := range secret.Data {
			if strings.HasSuffix(k, keyFileSuffix) {
				return nil
			}
		}
		return &secretProblem{reason: v1alpha1.ReasonSecretInvalid, message: fmt.Sprintf(
			"secret %s/%s (%s) holds no <kid>%s key: the %s refuses to start without a verification key", ns, m.name, m.field, keyFileSuffix, m.pods())}
	}
	if len(secret.Data[m.key]) == 0 {
		return &secretProblem{reason: v1alpha1.ReasonSecretInvalid, message: fmt.Sprintf(
			"secret %s/%s (%s) holds nothing under key %q: the %s pods cannot start without it", ns, m.name, m.field, m.key, m.pods())}
	}
	return nil
}

// observeSecrets reads every Secret the fleet's pods mount, each once and by name straight
// from the API server (the operator caches no Secret and may only get them), keeps them for
// the pods' checksums and records, per component, what keeps its pods from starting.
func (r *FleetIngestionReconciler) observeSecrets(ctx context.Context, f fleet, obs *observed) error {
	for _, m := range mountedSecrets(f) {
		s, seen := obs.secrets[m.name]
		if !seen {
			var err error
			if s, err = r.readSecret(ctx, f.Namespace, m.name); err != nil {
				return fmt.Errorf("reading secret %s/%s (%s): %w", f.Namespace, m.name, m.field, err)
			}
			obs.secrets[m.name] = s
		}
		if p := checkSecret(f.Namespace, m, s); p != nil && !slices.Contains(obs.secretProblems[m.component], *p) {
			obs.secretProblems[m.component] = append(obs.secretProblems[m.component], *p)
		}
	}
	return nil
}

// readSecret gets one Secret from the API server; nil when it does not exist.
func (r *FleetIngestionReconciler) readSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &s, nil
}

// secretsErr is the pass's error when a Secret keeps a component from starting, so the
// pass is retried with backoff until the Secret is there (no watch on Secrets tells).
func (o *observed) secretsErr() error {
	var errs []error
	seen := map[string]bool{}
	for _, c := range []string{componentGateway, componentIngester, componentAnalytics} {
		for _, p := range o.secretProblems[c] {
			if !seen[p.message] {
				seen[p.message] = true
				errs = append(errs, errors.New(p.message))
			}
		}
	}
	return errors.Join(errs...)
}
