// Package v1alpha1 is the fleetingest.io/v1alpha1 API: the FleetIngestion resource that a
// platform team applies to run one fleet's ingestion and analytics.
//
// +kubebuilder:object:generate=true
// +groupName=fleetingest.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the API.
	GroupVersion = schema.GroupVersion{Group: "fleetingest.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
