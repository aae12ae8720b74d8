package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/cmd/fleetingest/app"
	"github.com/fleetingest/fleetingest/controllers"
	"github.com/fleetingest/fleetingest/test/envtest"
)

func sampleFleet(ns, name string, shards int) *v1alpha1.FleetIngestion {
	fi := &v1alpha1.FleetIngestion{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.FleetIngestionSpec{
			NATS: v1alpha1.NATSSpec{
				URL:                  controllers.NATSURL(),
				CredentialsSecretRef: &v1alpha1.SecretKeyRef{Name: "nats", Key: "creds"},
				MaxAge:               &metav1.Duration{Duration: 72 * time.Hour},
				MaxBytesPerShard:     ptr.To(resource.MustParse("2Gi")),
			},
			Auth: v1alpha1.AuthSpec{
				DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: "device-keys"},
				Users:               &v1alpha1.UsersAuthSpec{KeysSecretRef: &v1alpha1.SecretRef{Name: "user-keys"}},
			},
			Gateway:   v1alpha1.GatewaySpec{MaxLateness: &metav1.Duration{Duration: 48 * time.Hour}},
			Retention: v1alpha1.RetentionSpec{History: &metav1.Duration{Duration: 720 * time.Hour}},
		},
	}
	for i := 0; i < shards; i++ {
		fi.Spec.Shards = append(fi.Spec.Shards, v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: fmt.Sprintf("pg-%d", i), Key: "dsn"}})
	}
	return fi
}

// The arguments the operator puts into each Deployment are accepted by the real command
// line of the binary the pods run, whichever way the fleet authenticates.
func TestComponentArgsParseWithTheRealCommand(t *testing.T) {
	auths := map[string]v1alpha1.AuthSpec{
		"local keys": sampleFleet("prod", "fleet-a", 1).Spec.Auth,
		"oidc": {DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: "device-keys"}, Users: &v1alpha1.UsersAuthSpec{OIDC: &v1alpha1.OIDCSpec{
			IssuerURL: "https://idp.example.com/realms/fleet", Audience: "fleet-api", RolesClaim: "realm_access.roles"}}},
		"insecure": {InsecureNoAuth: true},
	}
	for variant, auth := range auths {
		fi := sampleFleet("prod", "fleet-a", 3)
		fi.Spec.Auth = auth
		args, err := controllers.ComponentArgs(fi)
		if err != nil {
			t.Fatal(err)
		}
		for name, a := range args {
			t.Run(variant+"/"+name, func(t *testing.T) { parsesWithTheRealCommand(t, a) })
		}
	}
}

// parsesWithTheRealCommand checks that the subcommand a[0] takes every flag of a[1:] and
// holds the value given.
func parsesWithTheRealCommand(t *testing.T, a []string) {
	t.Helper()
	sub := a[0]
	cmd, args, err := app.NewRootCommand().Find(a)
	if err != nil || cmd.Name() != sub || len(args) == 0 {
		t.Fatalf("finding subcommand %s: %v (args %v)", sub, err, args)
	}
	if err := cmd.ParseFlags(a[1:]); err != nil {
		t.Fatalf("%s %s: %v", sub, strings.Join(a[1:], " "), err)
	}
	for _, arg := range a[1:] {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			t.Errorf("flag --%s not set by %q", name, arg)
			continue
		}
		switch f.Value.Type() {
		case "duration":
			want, _ := time.ParseDuration(value)
			if got, err := time.ParseDuration(f.Value.String()); err != nil || got != want {
				t.Errorf("--%s = %q after parsing %q", name, f.Value.String(), arg)
			}
		case "stringArray", "stringSlice":
			if !strings.Contains(f.Value.String(), value) {
				t.Errorf("--%s = %q lacks %q", name, f.Value.String(), value)
			}
		case "bool":
			if want := value == "true" || !hasValue; f.Value.String() != fmt.Sprint(want) {
				t.Errorf("--%s = %q after parsing %q", name, f.Value.String(), arg)
			}
		default:
			if f.Value.String() != value {
				t.Errorf("--%s = %q after parsing %q", name, f.Value.String(), arg)
			}
		}
	}
}

// The operator subcommand, wired as in a cluster (manager, label-selected cache, leader
// election off) and holding only the generated ClusterRole, reconciles a FleetIngestion
// into its objects, status and finalizer: the role is enough.
func TestTheOperatorCommandReconcilesAFleet(t *testing.T) {
	c, err := client.New(restConfig(t), client.Options{Scheme: envtest.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := "operator-cmd"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	fi := sampleFleet(ns, "fleet-op", 1)
	fi.Spec.NATS.CredentialsSecretRef = nil
	for name, key := range map[string]string{"device-keys": "k1.pub", "user-keys": "k1.pub", "pg-0": "dsn"} { // read by the operator: its role must allow it
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{key: []byte("value")}}
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, fi); err != nil {
		t.Fatal(err)
	}

	kubeconfig := controllers.OperatorKubeconfig(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		cmd := app.NewRootCommand()
		cmd.SetArgs([]string{"operator", "--kubeconfig=" + kubeconfig, "--leader-elect=false",
			"--metrics-addr=0", "--health-addr=127.0.0.1:0", "--default-image=fleetingest:cmd", "--log-level=warn"})
		done <- cmd.ExecuteContext(runCtx)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("operator exited with %v", err)
		}
	}()

	var d appsv1.Deployment
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fleet-op-ingester-0"}, &d)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operator made no ingester Deployment in 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "fleetingest:cmd" {
		t.Errorf("image = %s, want the --default-image", img)
	}
	for time.Now().Before(deadline) {
		_ = c.Get(ctx, client.ObjectKeyFromObject(fi), fi)
		if len(fi.Status.Conditions) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var streams *metav1.Condition
	for i := range fi.Status.Conditions {
		if fi.Status.Conditions[i].Type == v1alpha1.ConditionStreamsReady {
			streams = &fi.Status.Conditions[i]
		}
	}
	if streams == nil || streams.Status != metav1.ConditionTrue {
		t.Errorf("StreamsReady = %+v", streams)
	}
	if len(fi.Finalizers) != 1 || fi.Finalizers[0] != v1alpha1.Finalizer {
		t.Errorf("finalizers = %v", fi.Finalizers)
	}
	// Deleting goes through the finalizer with the same permissions.
	if err := c.Delete(ctx, fi); err != nil {
		t.Fatal(err)
	}
	for {
		err := c.Get(ctx, client.ObjectKeyFromObject(fi), fi)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FleetIngestion not released by the operator: finalizers %v", fi.Finalizers)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func restConfig(t *testing.T) *rest.Config {
	t.Helper()
	return controllers.RestConfig()
}

// The operator's own Deployments (config/manager, config/namespaced, the Helm chart with
// and without watchNamespaces) pass flags the operator command accepts.
func TestTheOperatorDeploymentArgsParseWithTheRealCommand(t *testing.T) {
	root := envtest.RepoRoot()
	helm, err := envtest.Tool("HELM")
	if err != nil {
		t.Fatal(err)
	}
	manager, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(root, "charts", "fleetingest")
	sources := map[string]string{
		"config/manager":    string(manager),
		"config/namespaced": output(t, controllers.Kubectl(), "kustomize", filepath.Join(root, "config", "namespaced")),
		"chart":             output(t, helm, "template", "fi", chart, "--namespace", "fleetingest-system"),
		"chart watching namespaces": output(t, helm, "template", "fi", chart, "--namespace", "fleetingest-system",
			"--set", "watchNamespaces={fleet-a,fleet-b}"),
	}
	wantWatch := map[string]string{"config/namespaced": "[fleetingest]", "chart watching namespaces": "[fleet-a,fleet-b]"}
	for name, manifests := range sources {
		t.Run(name, func(t *testing.T) {
			args := operatorArgs(t, manifests)
			if len(args) == 0 || args[0] != "operator" {
				t.Fatalf("operator Deployment args = %v", args)
			}
			parsesWithTheRealCommand(t, args)
			cmd, _, _ := app.NewRootCommand().Find(args)
			if err := cmd.ParseFlags(args[1:]); err != nil {
				t.Fatal(err)
			}
			if f := cmd.Flags().Lookup("default-image"); f == nil || f.Value.String() == "" {
				t.Errorf("the operator Deployment sets no --default-image")
			}
			want := wantWatch[name]
			if want == "" {
				want = "[]" // every namespace
			}
			if got := cmd.Flags().Lookup("watch-namespaces").Value.String(); got != want {
				t.Errorf("--watch-namespaces = %s, want %s", got, want)
			}
		})
	}
}

// operatorArgs are the arguments of the first container of the Deployment among manifests.
func operatorArgs(t *testing.T, manifests string) []string {
	t.Helper()
	for _, doc := range strings.Split(manifests, "\n---\n") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		if d.Kind == "Deployment" {
			return d.Spec.Template.Spec.Containers[0].Args
		}
	}
	return nil
}

// output runs a command and returns its standard output.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr)
	}
	return string(out)
}
