package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// The API server accepts every pod option in the Deployments, and server-side apply takes
// back what the spec no longer asks for: the default spread when replicas go down to one,
// the options when they are removed.
func TestPodOptionsAreAppliedAndTakenBack(t *testing.T) {
	h := newHarness(t)
	opts := v1alpha1.PodOptions{
		ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry"}},
		ServiceAccountName: "fleet-workload",
		NodeSelector:       map[string]string{"pool": "telemetry"},
		Tolerations:        []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 50, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: corev1.LabelHostname}}}}},
		PriorityClassName: "telemetry-high",
		PodLabels:         map[string]string{"team": "energy"},
		PodAnnotations:    map[string]string{"cost-center": "42"},
	}
	fi := h.create(h.fleetIngestion("opts", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Gateway.PodOptions = opts
		fi.Spec.Gateway.Replicas = ptr.To[int32](2)
		fi.Spec.Ingester.Replicas = ptr.To[int32](2)
	}))
	h.mustReconcile(fi.Name)

	gw := h.deployment("opts-gateway").Spec.Template
	ps := gw.Spec
	if len(ps.ImagePullSecrets) != 1 || ps.ServiceAccountName != "fleet-workload" || ps.DeprecatedServiceAccount != "fleet-workload" || ps.NodeSelector["pool"] != "telemetry" ||
		len(ps.Tolerations) != 1 || ps.Affinity == nil || ps.PriorityClassName != "telemetry-high" ||
		gw.Labels["team"] != "energy" || gw.Annotations["cost-center"] != "42" || ptr.Deref(ps.AutomountServiceAccountToken, true) {
		t.Errorf("gateway pod template = %+v", gw)
	}
	if n := len(ps.TopologySpreadConstraints); n != 2 {
		t.Errorf("gateway at 2 replicas has %d spread constraints, want the zone and host defaults", n)
	}
	ing := h.deployment("opts-ingester-0").Spec.Template
	if len(ing.Spec.TopologySpreadConstraints) != 2 || ing.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels[labelShard] != "0" {
		t.Errorf("ingester spread = %+v, want its shard's pods spread", ing.Spec.TopologySpreadConstraints)
	}
	if ing.Spec.ServiceAccountName != "" || ing.Labels["team"] != "" {
		t.Errorf("the gateway's options reached the ingester: %+v", ing)
	}

	fi = h.get(fi.Name)
	fi.Spec.Gateway.PodOptions = v1alpha1.PodOptions{}
	fi.Spec.Ingester.Replicas = ptr.To[int32](1)
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	gw = h.deployment("opts-gateway").Spec.Template
	ps = gw.Spec
	if len(ps.ImagePullSecrets) != 0 || ps.ServiceAccountName != "" || ps.DeprecatedServiceAccount != "" || ps.NodeSelector != nil ||
		ps.Tolerations != nil || ps.Affinity != nil || ps.PriorityClassName != "" || gw.Labels["team"] != "" || gw.Annotations["cost-center"] != "" {
		t.Errorf("gateway pod template keeps removed options: %+v", gw)
	}
	if n := len(h.deployment("opts-ingester-0").Spec.Template.Spec.TopologySpreadConstraints); n != 0 {
		t.Errorf("ingester at one replica keeps %d spread constraints", n)
	}
}
