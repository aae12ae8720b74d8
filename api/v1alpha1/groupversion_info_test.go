package v1alpha1_test

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

func TestAddToSchemeRegistersTheKindsAndTheMetaOptions(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, obj := range map[string]runtime.Object{
		"FleetIngestion":     &v1alpha1.FleetIngestion{},
		"FleetIngestionList": &v1alpha1.FleetIngestionList{},
		"ListOptions":        &metav1.ListOptions{},
		"DeleteOptions":      &metav1.DeleteOptions{},
	} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Errorf("%s is not registered: %v", kind, err)
			continue
		}
		if !slices.Contains(gvks, v1alpha1.GroupVersion.WithKind(kind)) {
			t.Errorf("%s registered as %v, want %v", kind, gvks, v1alpha1.GroupVersion.WithKind(kind))
		}
	}
}
