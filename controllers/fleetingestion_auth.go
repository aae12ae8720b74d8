package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// keyFileSuffix ends the name of every verification key in an auth Secret ("<kid>.pub").
const keyFileSuffix = ".pub"

// authSecret is a Secret of verification keys that spec.auth names, and the component
// whose pods mount it.
type authSecret struct {
	component string
	field     string
	name      string
}

// authSecrets are the Secrets spec.auth names: the device keys (gateway) and a local
// issuer's user keys (analytics). None with insecureNoAuth.
func authSecrets(f fleet) []authSecret {
	if f.insecureNoAuth() {
		return nil
	}
	var out []authSecret
	if ref := f.Spec.Auth.DeviceKeysSecretRef; ref != nil {
		out = append(out, authSecret{component: componentGateway, field: "spec.auth.deviceKeysSecretRef", name: ref.Name})
	}
	if u := f.Spec.Auth.Users; u != nil && u.KeysSecretRef != nil {
		out = append(out, authSecret{component: componentAnalytics, field: "spec.auth.users.keysSecretRef", name: u.KeysSecretRef.Name})
	}
	return out
}

// secretProblem is why a component's pods cannot start: a Secret they mount is missing,
// or holds nothing the component can use. reason is a condition reason.
type secretProblem struct {
	reason  string
	message string
}

// checkAuthSecret says what keeps an auth Secret from being used (secret nil: it does not
// exist), or nil when it holds at least one "<kid>.pub" key.
func checkAuthSecret(ns string, s authSecret, secret *corev1.Secret) *secretProblem {
	if secret == nil {
		return &secretProblem{reason: v1alpha1.ReasonSecretNotFound, message: fmt.Sprintf(
			"secret %s/%s (%s) not found: the %s pods cannot start until it exists", ns, s.name, s.field, s.component)}
	}
	for k := range secret.Data {
		if strings.HasSuffix(k, keyFileSuffix) {
			return nil
		}
	}
	return &secretProblem{reason: v1alpha1.ReasonSecretInvalid, message: fmt.Sprintf(
		"secret %s/%s (%s) holds no <kid>%s key: the %s refuses to start without a verification key", ns, s.name, s.field, keyFileSuffix, s.component)}
}

// observeAuthSecrets reads the auth Secrets straight from the API server (the operator
// caches no Secret, and needs only get on them) and records, per component, what keeps
// its pods from starting.
func (r *FleetIngestionReconciler) observeAuthSecrets(ctx context.Context, f fleet, obs *observed) error {
	for _, s := range authSecrets(f) {
		var secret corev1.Secret
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: s.name}, &secret)
		switch {
		case apierrors.IsNotFound(err):
			obs.secretProblems[s.component] = checkAuthSecret(f.Namespace, s, nil)
		case err != nil:
			return fmt.Errorf("reading secret %s/%s (%s): %w", f.Namespace, s.name, s.field, err)
		default:
			if p := checkAuthSecret(f.Namespace, s, &secret); p != nil {
				obs.secretProblems[s.component] = p
			}
		}
	}
	return nil
}

// secretsErr is the pass's error when a Secret keeps a component from starting, so the
// pass is retried with backoff until the Secret is there (no watch on Secrets tells).
func (o *observed) secretsErr() error {
	var errs []error
	for _, c := range []string{componentGateway, componentAnalytics} {
		if p := o.secretProblems[c]; p != nil {
			errs = append(errs, errors.New(p.message))
		}
	}
	return errors.Join(errs...)
}

// setAuthCondition reports whether tokens are asked for, and where their keys come from.
func setAuthCondition(conds *[]metav1.Condition, f fleet, gen int64, now metav1.Time) {
	if f.insecureNoAuth() {
		setCondition(conds, v1alpha1.ConditionAuthEnabled, metav1.ConditionFalse, v1alpha1.ReasonInsecureNoAuth,
			"spec.auth.insecureNoAuth: the gateway accepts readings and analytics answers and changes mappings without any token; for experiments only", gen, now)
		return
	}
	a := f.Spec.Auth
	msg := "device tokens verified with the keys of secret " + a.DeviceKeysSecretRef.Name
	if o := a.Users.OIDC; o != nil {
		msg += "; user tokens from the OIDC issuer " + o.IssuerURL
	} else {
		msg += "; user tokens verified with the keys of secret " + a.Users.KeysSecretRef.Name
	}
	setCondition(conds, v1alpha1.ConditionAuthEnabled, metav1.ConditionTrue, v1alpha1.ReasonTokensRequired, msg, gen, now)
}
