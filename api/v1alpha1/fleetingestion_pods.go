package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
)

// PodOptions are how one component's pods are placed, identified and labelled in the
// cluster: what a platform team sets on every workload it runs. Every field is optional and
// applies to the component's pods (for the ingester: every shard's).
type PodOptions struct {
	// ImagePullSecrets name Secrets of the FleetIngestion's namespace holding registry
	// credentials for pulling the image.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// ServiceAccountName is the ServiceAccount the pods run as, e.g. one a cloud's workload
	// identity maps to a role. The ServiceAccount token is never mounted (the components do
	// not call the Kubernetes API); identity webhooks that project their own token still
	// work. Unset means the namespace's "default" ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// NodeSelector restricts the pods to nodes carrying every one of these labels.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations let the pods run on nodes with matching taints.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity is the pods' node affinity and pod (anti-)affinity.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints spread the pods over failure domains. Unset, a component with
	// more than one replica is spread over zones (topology.kubernetes.io/zone) and nodes
	// (kubernetes.io/hostname) with maxSkew 1 and whenUnsatisfiable ScheduleAnyway, selecting
	// its own pods (one shard's, for ingesters); a list given here replaces that default.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PriorityClassName is the PriorityClass of the pods; it must exist when they are
	// created.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// PodLabels are added to the pods' labels, e.g. for cost allocation or a service mesh.
	// They cannot set the labels the operator selects its pods by (app.kubernetes.io/name,
	// instance, component, managed-by, part-of and fleetingest.io/shard).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/part-of', 'fleetingest.io/shard']))",message="podLabels cannot set the operator's own labels (app.kubernetes.io/name, instance, component, managed-by, part-of, fleetingest.io/shard)"
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// PodAnnotations are added to the pods' annotations. They may replace the operator's
	// prometheus.io/* scrape annotations (e.g. prometheus.io/scrape: "false" where a
	// ServiceMonitor scrapes instead), but not set keys under fleetingest.io/, which the
	// operator keeps for itself.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('fleetingest.io/'))",message="podAnnotations cannot set keys under fleetingest.io/ (the operator's own)"
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`
}
