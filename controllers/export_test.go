package controllers

import (
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/test/envtest"
)

// ComponentArgs exposes the argument builders to the external test package, which parses
// them with the real command line (it cannot be imported from this package: the command
// imports controllers).
func ComponentArgs(fi *v1alpha1.FleetIngestion) (map[string][]string, error) {
	f, err := resolveFleet(fi, "fleetingest:test")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{
		"gateway":   gatewayArgs(f),
		"analytics": analyticsArgs(f),
		"migrate":   migrateArgs(),
	}
	for i := range fi.Spec.Shards {
		out[ingesterName(f, i)] = ingesterArgs(f, i)
	}
	return out, nil
}

// Kube, Kubectl and NATSURL expose the package's test servers and kubectl to the external
// test package.
func Kube() (kubeconfig string) { return kube.Kubeconfig }
func Kubectl() string           { return kube.Kubectl }
func NATSURL() string           { return nsrv.URL() }

// RestConfig exposes the test API server's client configuration.
func RestConfig() *rest.Config { return kube.Config }

// OperatorKubeconfig returns the kubeconfig of a user holding exactly the operator's
// generated ClusterRole (config/rbac/role.yaml), bound as config/rbac does.
func OperatorKubeconfig(t *testing.T) string {
	t.Helper()
	kc, err := kube.AddUser(t.TempDir(), "fleetingest-operator-test")
	if err != nil {
		t.Fatal(err)
	}
	role := filepath.Join(envtest.RepoRoot(), "config", "rbac", "role.yaml")
	run(t, nil, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "-f", role)
	run(t, nil, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "create", "clusterrolebinding", "fleetingest-operator-test",
		"--clusterrole=fleetingest-operator", "--user=fleetingest-operator-test")
	return kc
}
