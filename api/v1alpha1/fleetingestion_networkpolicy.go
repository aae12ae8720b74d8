package v1alpha1

import networkingv1 "k8s.io/api/networking/v1"

// NetworkPolicySpec says who may open connections to the fleet's pods: the peers allowed to
// reach the HTTP ports from outside the fleet, and the metrics ports.
type NetworkPolicySpec struct {
	// Enabled renders the NetworkPolicies; false deletes them and leaves the pods open to
	// the whole cluster. Default true.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// IngressFrom are the peers allowed to reach the gateway's HTTP port (and analytics'
	// when spec.ingress.exposeAnalytics is true): normally the ingress controller's pods.
	// Default: every pod of the namespace ingress-nginx. An empty list admits nobody.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:default={{namespaceSelector:{matchLabels:{"kubernetes.io/metadata.name":"ingress-nginx"}}}}
	IngressFrom []networkingv1.NetworkPolicyPeer `json:"ingressFrom,omitempty"`

	// MetricsFrom are the peers allowed to reach every component's metrics port (9090,
	// /metrics): normally Prometheus. Default: every pod of the namespace monitoring
	// (where kube-prometheus-stack is usually installed). An empty list admits nobody.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:default={{namespaceSelector:{matchLabels:{"kubernetes.io/metadata.name":"monitoring"}}}}
	MetricsFrom []networkingv1.NetworkPolicyPeer `json:"metricsFrom,omitempty"`
}
