package controllers

import (
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
)

// deployment is a component's Deployment around its pod template. Rolling updates keep
// every replica serving (maxUnavailable 0) and add one new pod at a time.
func deployment(f fleet, name string, p podSpec) *appsv1ac.DeploymentApplyConfiguration {
	return appsv1ac.Deployment(name, f.Namespace).
		WithLabels(componentLabels(f, p.component, p.shard)).
		WithOwnerReferences(ownerReference(f)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas(p.spec)).
			WithRevisionHistoryLimit(5).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(f, p.component, p.shard))).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(podTemplate(f, p)))
}

// service exposes a component's HTTP port on port 80 of a ClusterIP Service.
func service(f fleet, name, component string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(name, f.Namespace).
		WithLabels(componentLabels(f, component, -1)).
		WithOwnerReferences(ownerReference(f)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(selectorLabels(f, component, -1)).
			WithPorts(corev1ac.ServicePort().
				WithName(httpPortName).
				WithPort(80).
				WithTargetPort(intstr.FromString(httpPortName))))
}

// podDisruptionBudget keeps all but one of a component's pods up during voluntary
// disruptions. Only built for more than one replica: on one replica it would block node
// drains forever.
func podDisruptionBudget(f fleet, name string, p podSpec) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	if replicas(p.spec) < 2 {
		return nil
	}
	return policyv1ac.PodDisruptionBudget(name, f.Namespace).
		WithLabels(componentLabels(f, p.component, p.shard)).
		WithOwnerReferences(ownerReference(f)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(f, p.component, p.shard))))
}
