// Package v1alpha1 is the fleetingest.io/v1alpha1 API: the FleetIngestion resource that a
// platform team applies to run one fleet's ingestion and analytics.
//
// +kubebuilder:object:generate=true
// +groupName=fleetingest.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the API.
	GroupVersion = schema.GroupVersion{Group: "fleetingest.io", Version: "v1alpha1"}

	// SchemeBuilder registers the API's types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the API's kinds, and the meta/v1 kinds (options, status) every
// group version serves, under GroupVersion.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &FleetIngestion{}, &FleetIngestionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
