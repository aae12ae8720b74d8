package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

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
