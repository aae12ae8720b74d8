package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// observed is every child of a FleetIngestion the pass looked at, gathered once.
type observed struct {
	deployments     map[string]deploymentState
	pdbs            map[string]*policyv1.PodDisruptionBudget
	networkPolicies map[string]*networkingv1.NetworkPolicy
	ingress         *networkingv1.Ingress
	// secrets are the Secrets the pods mount, by name; nil for one that does not exist.
	secrets map[string]*corev1.Secret
	// secretProblems says, per component, what in the Secrets it mounts keeps its pods
	// from starting.
	secretProblems map[string][]secretProblem
	// rolled names the Deployments whose pods this pass rolls because a Secret they read
	// at start changed.
	rolled []string
}

// deployment returns the observed state of a Deployment; one never seen is not available.
func (o *observed) deployment(name string) deploymentState {
	if d, ok := o.deployments[name]; ok {
		return d
	}
	return deploymentState{name: name, desired: 1, generation: 1}
}

// observe lists the fleet's Deployments, PodDisruptionBudgets, NetworkPolicies and Ingress,
// and reads the Secrets its pods mount. Only objects the FleetIngestion controls count, so a
// same-named object someone else made is neither reported nor deleted.
func (r *FleetIngestionReconciler) observe(ctx context.Context, f fleet) (*observed, error) {
	obs := &observed{
		deployments:     map[string]deploymentState{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		networkPolicies: map[string]*networkingv1.NetworkPolicy{},
		secrets:         map[string]*corev1.Secret{},
		secretProblems:  map[string][]secretProblem{},
	}
	sel := client.MatchingLabels{labelInstance: f.Name, labelManagedBy: ManagedBy}
	in := client.InNamespace(f.Namespace)

	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, in, sel); err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	for i := range deps.Items {
		if d := &deps.Items[i]; controlledBy(d, f) {
			obs.deployments[d.Name] = deploymentStateOf(d.Name, d.Generation, d.Spec.Replicas, d.Status, d.Spec.Template.Annotations[AnnotationSecretsChecksum])
		}
	}
	var pdbs policyv1.PodDisruptionBudgetList
	if err := r.Client.List(ctx, &pdbs, in, sel); err != nil {
		return nil, fmt.Errorf("listing pod disruption budgets: %w", err)
	}
	for i := range pdbs.Items {
		if p := &pdbs.Items[i]; controlledBy(p, f) {
			obs.pdbs[p.Name] = p
		}
	}
	var ings networkingv1.IngressList
	if err := r.Client.List(ctx, &ings, in, sel); err != nil {
		return nil, fmt.Errorf("listing ingresses: %w", err)
	}
	for i := range ings.Items {
		if ing := &ings.Items[i]; controlledBy(ing, f) && ing.Name == ingressName(f) {
			obs.ingress = ing
		}
	}
	var nps networkingv1.NetworkPolicyList
	if err := r.Client.List(ctx, &nps, in, sel); err != nil {
		return nil, fmt.Errorf("listing network policies: %w", err)
	}
	for i := range nps.Items {
		if np := &nps.Items[i]; controlledBy(np, f) {
			obs.networkPolicies[np.Name] = np
		}
	}
	if err := r.observeSecrets(ctx, f, obs); err != nil {
		return nil, err
	}
	return obs, nil
}

func controlledBy(o metav1.Object, f fleet) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == f.UID
}

func deploymentStateOf(name string, gen int64, replicas *int32, st appsv1.DeploymentStatus, checksum string) deploymentState {
	return deploymentState{
		name: name, desired: ptr.Deref(replicas, 1), generation: gen, observedGeneration: st.ObservedGeneration,
		ready: st.ReadyReplicas, updated: st.UpdatedReplicas, total: st.Replicas, availableReplicas: st.AvailableReplicas,
		secretsChecksum: checksum,
	}
}

// deploymentStatusOf is the status in an apply's answer.
func deploymentStatusOf(s *appsv1ac.DeploymentStatusApplyConfiguration) appsv1.DeploymentStatus {
	if s == nil {
		return appsv1.DeploymentStatus{}
	}
	return appsv1.DeploymentStatus{
		ObservedGeneration: ptr.Deref(s.ObservedGeneration, 0),
		Replicas:           ptr.Deref(s.Replicas, 0),
		UpdatedReplicas:    ptr.Deref(s.UpdatedReplicas, 0),
		ReadyReplicas:      ptr.Deref(s.ReadyReplicas, 0),
		AvailableReplicas:  ptr.Deref(s.AvailableReplicas, 0),
	}
}

// applyDeployment applies a Deployment and records the API server's answer (its generation
// and status) as the observed state, and whether the apply rolls its pods for a changed
// Secret.
func (r *FleetIngestionReconciler) applyDeployment(ctx context.Context, d *appsv1ac.DeploymentApplyConfiguration, obs *observed) error {
	name := ptr.Deref(d.Name, "")
	before, seen := obs.deployments[name]
	if err := r.apply(ctx, d); err != nil {
		return fmt.Errorf("applying deployment %s: %w", name, err)
	}
	var replicas *int32
	var checksum string
	if d.Spec != nil {
		replicas = d.Spec.Replicas
		if d.Spec.Template != nil {
			checksum = d.Spec.Template.Annotations[AnnotationSecretsChecksum]
		}
	}
	obs.deployments[name] = deploymentStateOf(name, ptr.Deref(d.Generation, 0), replicas, deploymentStatusOf(d.Status), checksum)
	if seen && before.secretsChecksum != "" && before.secretsChecksum != checksum {
		obs.rolled = append(obs.rolled, name)
	}
	return nil
}
