package controllers

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fleetingest/fleetingest/test/envtest"
)

// generatedFiles are the files hack/manifests.sh writes, relative to the repository.
var generatedFiles = []string{
	"config/crd/bases/fleetingest.io_fleetingestions.yaml",
	"config/rbac/role.yaml",
	"charts/fleetingest/crds/fleetingest.io_fleetingestions.yaml",
	"charts/fleetingest/templates/_rules.tpl",
}

// The committed CRD and RBAC are what controller-gen makes of the code's markers today.
func TestGeneratedManifestsMatchTheMarkers(t *testing.T) {
	cg, err := envtest.Tool("CONTROLLER_GEN")
	if err != nil {
		t.Fatal(err)
	}
	root, out := envtest.RepoRoot(), t.TempDir()
	cmd := exec.Command(filepath.Join(root, "hack", "manifests.sh"), out)
	cmd.Env = append(os.Environ(), "CONTROLLER_GEN="+cg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/manifests.sh: %v\n%s", err, b)
	}
	for _, f := range generatedFiles {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatalf("generated %s: %v", f, err)
		}
		have, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatalf("committed %s: %v", f, err)
		}
		if !bytes.Equal(have, want) {
			t.Errorf("%s differs from what the markers generate: run `make manifests` and commit", f)
		}
	}
}

func TestTheChartsCRDIsConfigsCRD(t *testing.T) {
	root := envtest.RepoRoot()
	a, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "fleetingest.io_fleetingestions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "charts", "fleetingest", "crds", "fleetingest.io_fleetingestions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("charts/fleetingest/crds differs from config/crd/bases: run `make manifests`")
	}
}

func TestTheHelmChartLintsAndRendersObjectsTheAPIServerAccepts(t *testing.T) {
	helm, err := envtest.Tool("HELM")
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(envtest.RepoRoot(), "charts", "fleetingest")
	run(t, nil, helm, "lint", "--strict", chart)
	ensureNamespaces(t, "fleetingest-helm")
	for _, values := range [][]string{
		nil,
		{"--set", "replicaCount=2", "--set", "leaderElection.enabled=false", "--set", "serviceAccount.create=false", "--set", "image.tag=v9"},
	} {
		args := append([]string{"template", "fi", chart, "--namespace", "fleetingest-helm", "--include-crds"}, values...)
		rendered := run(t, nil, helm, args...)
		for _, kind := range []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Deployment"} {
			if !strings.Contains(rendered, "kind: "+kind+"\n") {
				t.Errorf("helm template %v renders no %s", values, kind)
			}
		}
		kubectlDryRun(t, rendered)
	}
}

// With watchNamespaces, the chart grants the operator's generated rules in a Role per
// listed namespace and nothing cluster-wide; config/namespaced does the same for one.
func TestWatchingNamespacesRendersRolesAndNoClusterRole(t *testing.T) {
	helm, err := envtest.Tool("HELM")
	if err != nil {
		t.Fatal(err)
	}
	root := envtest.RepoRoot()
	ensureNamespaces(t, "fleetingest", "fleetingest-system", "fleet-a", "fleet-b")
	want := clusterRoleRules(t)
	for name, tc := range map[string]struct {
		manifests  string
		namespaces []string
	}{
		"chart": {run(t, nil, helm, "template", "fi", filepath.Join(root, "charts", "fleetingest"), "--namespace", "fleetingest-system",
			"--set", "watchNamespaces={fleet-a,fleet-b}"), []string{"fleet-a", "fleet-b"}},
		"config/namespaced": {run(t, nil, kube.Kubectl, "kustomize", filepath.Join(root, "config", "namespaced")), []string{"fleetingest"}},
	} {
		t.Run(name, func(t *testing.T) {
			roles := map[string][]rbacv1.PolicyRule{}
			bound := map[string]string{}
			for _, doc := range strings.Split(tc.manifests, "\n---\n") {
				var o struct {
					metav1.TypeMeta   `json:",inline"`
					metav1.ObjectMeta `json:"metadata"`
					Rules             []rbacv1.PolicyRule `json:"rules"`
					RoleRef           rbacv1.RoleRef      `json:"roleRef"`
				}
				if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
					t.Fatalf("decoding %q: %v", doc, err)
				}
				switch {
				case o.Kind == "ClusterRole" || o.Kind == "ClusterRoleBinding":
					t.Errorf("renders %s %s with namespaces to watch", o.Kind, o.Name)
				case o.Kind == "Role" && !strings.HasSuffix(o.Name, "-leader-election"):
					roles[o.Namespace] = o.Rules
				case o.Kind == "RoleBinding" && !strings.HasSuffix(o.Name, "-leader-election"):
					bound[o.Namespace] = o.RoleRef.Kind + "/" + o.RoleRef.Name
				}
			}
			if len(roles) != len(tc.namespaces) {
				t.Errorf("Roles in %v, want one in each of %v", slices.Sorted(maps.Keys(roles)), tc.namespaces)
			}
			for _, ns := range tc.namespaces {
				if !equality.Semantic.DeepEqual(roles[ns], want) {
					t.Errorf("Role in %s has rules %+v\nwant the generated ones %+v", ns, roles[ns], want)
				}
				if !strings.HasPrefix(bound[ns], "Role/") {
					t.Errorf("RoleBinding in %s binds %q, want the Role", ns, bound[ns])
				}
			}
			kubectlDryRun(t, tc.manifests)
		})
	}
}

// clusterRoleRules are the rules of the generated ClusterRole, config/rbac/role.yaml.
func clusterRoleRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cr rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &cr); err != nil {
		t.Fatal(err)
	}
	if len(cr.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}
	return cr.Rules
}

func TestSamplesKindManifestsAndConfigPassServerSideDryRun(t *testing.T) {
	root := envtest.RepoRoot()
	ensureNamespaces(t, "fleetingest", "fleetingest-prod", "fleetingest-system")
	out := run(t, nil, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "--dry-run=server",
		"-f", filepath.Join(root, "config", "samples", "fleetingest_v1alpha1_fleetingestion_dev.yaml"),
		"-f", filepath.Join(root, "config", "samples", "fleetingest_v1alpha1_fleetingestion_production.yaml"),
		"-f", filepath.Join(root, "hack", "kind"))
	for _, want := range []string{"fleetingestion.fleetingest.io/dev created (server dry run)", "fleetingestion.fleetingest.io/fleet-eu created (server dry run)",
		"statefulset.apps/nats created (server dry run)", "statefulset.apps/pg-1 created (server dry run)", "secret/pg-0-dsn created (server dry run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	rendered := run(t, nil, kube.Kubectl, "kustomize", filepath.Join(root, "config", "default"))
	kubectlDryRun(t, rendered)
}

// kubectlDryRun applies manifests with --dry-run=server against the test API server.
func kubectlDryRun(t *testing.T, manifests string) {
	t.Helper()
	run(t, strings.NewReader(manifests), kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "--dry-run=server", "-f", "-")
}

func ensureNamespaces(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		err := kube.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", n, err)
		}
	}
}

func run(t *testing.T, stdin *strings.Reader, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
