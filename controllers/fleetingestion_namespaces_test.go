package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/test/envtest"
)

// An operator watching one namespace, wired as the operator command does with
// --watch-namespaces and holding nothing but the Role the chart renders there, reconciles
// that namespace's fleets (Secrets read, objects applied, status and finalizer written,
// deletion released) and never touches another namespace's.
func TestAnOperatorWatchingANamespaceNeedsOnlyTheChartsRole(t *testing.T) {
	suffix := fmt.Sprint(time.Now().UnixNano() % 100000)
	watched, other := "watched-"+suffix, "unwatched-"+suffix
	ensureNamespaces(t, watched, other)
	cfg := chartRoleConfig(t, watched)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 envtest.Scheme(),
		Cache:                  CacheOptions([]string{watched}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The package's other tests register this controller's name in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := NewNATSPool(2*time.Second, nil)
	defer pool.Close()
	r := NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), pool, mgr.GetEventRecorder("fleetingest-operator"), nil, Config{
		DefaultImage: "fleetingest:test", NATSRequestTimeout: 3 * time.Second, Registerer: prometheus.NewRegistry(),
	})
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	fleets := map[string]*v1alpha1.FleetIngestion{}
	for _, ns := range []string{watched, other} {
		h := &harness{t: t, ctx: ctx, c: kube.Client, ns: ns}
		t.Cleanup(h.deleteFleets)
		h.createKeysSecret(deviceKeysSecret, "k1")
		h.createKeysSecret(userKeysSecret, "k1")
		h.createDSNSecrets(1)
		fleets[ns] = h.create(h.fleetIngestion("fleet", 1))
	}

	fi := fleets[watched]
	waitFor(t, 30*time.Second, "the watched fleet to be reconciled", func() bool {
		if err := kube.Client.Get(ctx, types.NamespacedName{Namespace: watched, Name: fi.Name}, fi); err != nil {
			return false
		}
		c := meta.FindStatusCondition(fi.Status.Conditions, v1alpha1.ConditionStreamsReady)
		g := meta.FindStatusCondition(fi.Status.Conditions, v1alpha1.ConditionGatewayReady)
		return c != nil && c.Status == metav1.ConditionTrue && g != nil && g.Reason == v1alpha1.ReasonDeploymentsProgressing
	})
	var d appsv1.Deployment
	if err := kube.Client.Get(ctx, types.NamespacedName{Namespace: watched, Name: "fleet-ingester-0"}, &d); err != nil {
		t.Errorf("ingester Deployment in the watched namespace: %v", err)
	}
	if !slices.Contains(fi.Finalizers, v1alpha1.Finalizer) {
		t.Errorf("finalizers = %v", fi.Finalizers)
	}

	time.Sleep(time.Second) // the other namespace's events, were it watched, would have arrived
	unwatched := fleets[other]
	if err := kube.Client.Get(ctx, types.NamespacedName{Namespace: other, Name: unwatched.Name}, unwatched); err != nil {
		t.Fatal(err)
	}
	if len(unwatched.Finalizers) > 0 || len(unwatched.Status.Conditions) > 0 {
		t.Errorf("the fleet of an unwatched namespace was reconciled: finalizers %v, conditions %v", unwatched.Finalizers, unwatched.Status.Conditions)
	}
	var deps appsv1.DeploymentList
	if err := kube.Client.List(ctx, &deps, client.InNamespace(other)); err != nil || len(deps.Items) > 0 {
		t.Errorf("deployments in the unwatched namespace: %d (%v)", len(deps.Items), err)
	}

	// Deleting goes through the finalizer with the same Role.
	if err := kube.Client.Delete(ctx, fi); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the watched fleet's finalizer to be released", func() bool {
		return apierrors.IsNotFound(kube.Client.Get(ctx, types.NamespacedName{Namespace: watched, Name: fi.Name}, &v1alpha1.FleetIngestion{}))
	})
}

// chartRoleConfig is the client configuration of a new user holding nothing but the Role
// the Helm chart renders in namespace ns with watchNamespaces={ns}.
func chartRoleConfig(t *testing.T, ns string) *rest.Config {
	t.Helper()
	helm, err := envtest.Tool("HELM")
	if err != nil {
		t.Fatal(err)
	}
	rendered := run(t, nil, helm, "template", "fi", filepath.Join(envtest.RepoRoot(), "charts", "fleetingest"),
		"--namespace", "fleetingest-system", "--set", "watchNamespaces={"+ns+"}")
	var role string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var o metav1.PartialObjectMetadata
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind == "Role" && o.Namespace == ns {
			role = doc
		}
	}
	if role == "" {
		t.Fatalf("the chart renders no Role in %s:\n%s", ns, rendered)
	}
	user := "fleetingest-operator-" + ns
	kc, err := kube.AddUser(t.TempDir(), user)
	if err != nil {
		t.Fatal(err)
	}
	run(t, strings.NewReader(role), kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "-f", "-")
	run(t, nil, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "-n", ns, "create", "rolebinding", user, "--role=fi-fleetingest", "--user="+user)
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
