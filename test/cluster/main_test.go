package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/internal/localpg"
	"github.com/fleetingest/fleetingest/test/envtest"
	"github.com/fleetingest/fleetingest/test/pgtest"
)

// One kube-apiserver with etcd, one NATS server, one Postgres cluster (a database per
// shard) and the fleetingest binary for the package's tests.
var (
	kube     *envtest.Env
	natsSrv  *localnats.Server
	postgres *localpg.Cluster
	binary   string
	workDir  string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fleetingest-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "cluster tests: removing the work folder:", err)
		}
	}()
	// When the tests run as root the pods run as the image's user, who must reach their
	// folders and the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	workDir = dir
	if binary, err = envtest.BuildFleetingest(filepath.Join(dir, "bin")); err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests:", err)
		return 1
	}
	if kube, err = envtest.Start(dir); err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests:", err)
		return 1
	}
	defer func() { _ = kube.Stop() }()
	if natsSrv, err = localnats.Start(localnats.Config{StoreDir: filepath.Join(dir, "nats"), SyncAlways: false}); err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests: starting NATS:", err)
		return 1
	}
	defer natsSrv.Stop()
	pg, stop, err := pgtest.StartShared()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster tests:", err)
		return 1
	}
	defer stop()
	postgres = pg
	return m.Run()
}

// serviceAccountKubeconfig is a kubeconfig holding a token the API server issued for the
// ServiceAccount (TokenRequest), as the token kubelet mounts into a pod: its holder is
// authorised by the RBAC bound to that account, and by nothing else.
func serviceAccountKubeconfig(ctx context.Context, namespace, name string) ([]byte, error) {
	cs, err := kubernetes.NewForConfig(kube.Config)
	if err != nil {
		return nil, err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s/%s: %w", namespace, name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: kube.Config.Host, CertificateAuthorityData: kube.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: name, Namespace: namespace}
	cfg.CurrentContext = "pod"
	return clientcmd.Write(*cfg)
}
