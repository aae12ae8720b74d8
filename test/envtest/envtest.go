// Package envtest starts a real kube-apiserver and etcd for tests (controller-runtime's
// envtest) with the FleetIngestion CRD installed, and finds the pinned tools the tests use.
// The binaries are built by hack/envtest-binaries.sh; `make test` passes their folder in
// KUBEBUILDER_ASSETS and the tools' paths in HELM and CONTROLLER_GEN.
package envtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// RepoRoot is the module's root folder, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildFleetingest builds the fleetingest command into dir (made if missing) and returns its
// path, readable and executable by anyone: tests run it as child processes, some as another
// user than the one building it.
func BuildFleetingest(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "fleetingest")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/fleetingest")
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/fleetingest: %w\n%s", err, b)
	}
	return out, os.Chmod(out, 0o755)
}

// Fleetingest is the fleetingest command built once for a test binary's tests: Path builds it
// on first use; Remove, called from TestMain after the tests, deletes it.
type Fleetingest struct {
	once      sync.Once
	dir, path string
	err       error
}

// Path returns the command's path, building it on first use; a failed build fails t.
func (f *Fleetingest) Path(t testing.TB) string {
	t.Helper()
	f.once.Do(func() {
		if f.dir, f.err = os.MkdirTemp("", "fleetingest-bin-"); f.err == nil {
			f.path, f.err = BuildFleetingest(f.dir)
		}
	})
	if f.err != nil {
		t.Fatal(f.err)
	}
	return f.path
}

// Remove deletes what Path built.
func (f *Fleetingest) Remove() {
	if f.dir != "" {
		_ = os.RemoveAll(f.dir)
	}
}

// Tool returns the path of a pinned tool from the environment variable env (HELM,
// CONTROLLER_GEN, KUBEBUILDER_ASSETS), or an error that says how to run the tests so it is
// set. Tests fail on that error rather than skip.
func Tool(env string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		return "", fmt.Errorf("%s is not set: run the tests with `make test`, which builds the pinned tools and exports it", env)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s=%s: %w (run `make tools` or `make test`)", env, p, err)
	}
	return p, nil
}

// Env is a running kube-apiserver with the FleetIngestion CRD installed.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a direct (uncached) client whose scheme knows the core and fleetingest types.
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for kubectl and helm.
	Kubeconfig string
	// Kubectl is the path of kubectl.
	Kubectl string

	env *crenvtest.Environment
}

// Start starts etcd and kube-apiserver from KUBEBUILDER_ASSETS and installs the CRDs in
// config/crd/bases. dir is a scratch folder for the kubeconfig.
func Start(dir string) (*Env, error) {
	assets, err := Tool("KUBEBUILDER_ASSETS")
	if err != nil {
		return nil, err
	}
	kubectl := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			return nil, fmt.Errorf("kubectl is neither in KUBEBUILDER_ASSETS=%s nor on PATH", assets)
		}
	}
	te := &crenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, Kubectl: kubectl, env: te}
	if e.Client, err = client.New(cfg, client.Options{Scheme: Scheme()}); err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, te.KubeConfig, 0o600); err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	return e, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	return e.env.Stop()
}

// Scheme returns a new scheme with the core Kubernetes and fleetingest types.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// AddUser creates a user the API server authenticates (by client certificate) with no
// permissions of its own, and writes its kubeconfig into dir. Bind roles to name (or one
// of groups) to grant it some.
func (e *Env) AddUser(dir, name string, groups ...string) (kubeconfig string, err error) {
	u, err := e.env.AddUser(crenvtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("rendering kubeconfig of %s: %w", name, err)
	}
	path := filepath.Join(dir, name+".kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return "", fmt.Errorf("writing kubeconfig of %s: %w", name, err)
	}
	return path, nil
}
