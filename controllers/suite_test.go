package controllers

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/internal/localnats"
	"github.com/fleetingest/fleetingest/test/envtest"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// One kube-apiserver and one NATS server for the package's tests; each test works in its
// own namespace. Tests run one after another: the outage test stops the shared NATS.
var (
	kube *envtest.Env
	nsrv *localnats.Server
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fleetingest-controllers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "controllers tests: removing the envtest folder:", err)
		}
	}()
	if kube, err = envtest.Start(dir); err != nil {
		fmt.Fprintln(os.Stderr, "controllers tests:", err)
		return 1
	}
	defer func() { _ = kube.Stop() }()
	if nsrv, err = localnats.Start(localnats.Config{StoreDir: dir + "/nats", SyncAlways: false}); err != nil {
		fmt.Fprintln(os.Stderr, "controllers tests: starting NATS:", err)
		return 1
	}
	defer func() { nsrv.Stop() }()
	return m.Run()
}

// harness is one test's reconciler, namespace and NATS client.
type harness struct {
	t        *testing.T
	ctx      context.Context
	c        client.Client
	r        *FleetIngestionReconciler
	rec      *events.FakeRecorder
	js       jetstream.JetStream
	ns       string
	natsPool *NATSPool
}

var nsSeq int

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	nsSeq++
	ns := fmt.Sprintf("t%d-%d", nsSeq, time.Now().UnixNano()%100000)
	if err := kube.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	pool := NewNATSPool(2*time.Second, nil)
	t.Cleanup(pool.Close)
	rec := events.NewFakeRecorder(100)
	r := NewReconciler(kube.Client, kube.Client, pool, rec, nil, Config{
		DefaultImage:       "fleetingest:test",
		NATSRequestTimeout: 3 * time.Second,
		Registerer:         prometheus.NewRegistry(),
	})
	_, js := natstest.Connect(t, nsrv.URL())
	h := &harness{t: t, ctx: ctx, c: kube.Client, r: r, rec: rec, js: js, ns: ns, natsPool: pool}
	h.createKeysSecret(deviceKeysSecret, "k1")
	h.createKeysSecret(userKeysSecret, "k1")
	h.createDSNSecrets(4)
	t.Cleanup(h.deleteFleets)
	return h
}

// createDSNSecrets creates the DSN Secrets of shards 0..n-1 that fleetIngestion names,
// "shard-<i>" with the key "dsn" (the operator only checks that the key is there).
func (h *harness) createDSNSecrets(n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		h.createSecret(fmt.Sprintf("shard-%d", i), map[string][]byte{"dsn": []byte(fmt.Sprintf("postgres://pg-%d:5432/fleet", i))})
	}
}

// createSecret creates a Secret of the test's namespace.
func (h *harness) createSecret(name string, data map[string][]byte) {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns}, Data: data}
	if err := h.c.Create(h.ctx, s); err != nil {
		h.t.Fatalf("creating secret %s: %v", name, err)
	}
}

// deleteFleets removes the test's FleetIngestions, finalizers and all, so that an
// operator started by a later test has only its own to reconcile (envtest runs no
// namespace controller: deleting the namespace would leave them).
func (h *harness) deleteFleets() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var fis v1alpha1.FleetIngestionList
	if err := h.c.List(ctx, &fis, client.InNamespace(h.ns)); err != nil {
		h.t.Errorf("listing FleetIngestions to delete: %v", err)
		return
	}
	for i := range fis.Items {
		fi := &fis.Items[i]
		if len(fi.Finalizers) > 0 {
			base := fi.DeepCopy()
			fi.Finalizers = nil
			if err := client.IgnoreNotFound(h.c.Patch(ctx, fi, client.MergeFrom(base))); err != nil {
				h.t.Errorf("removing the finalizers of %s: %v", fi.Name, err)
			}
		}
		if err := client.IgnoreNotFound(h.c.Delete(ctx, fi)); err != nil {
			h.t.Errorf("deleting %s: %v", fi.Name, err)
		}
	}
}

// The auth Secrets every fleet of the harness names, made by newHarness.
const (
	deviceKeysSecret = "fleet-device-keys"
	userKeysSecret   = "fleet-user-keys"
)

// createKeysSecret creates a Secret of verification keys, one "<kid>.pub" per kid (the
// operator only checks their names).
func (h *harness) createKeysSecret(name string, kids ...string) {
	h.t.Helper()
	data := map[string][]byte{}
	for _, kid := range kids {
		data[kid+".pub"] = []byte("-----BEGIN PUBLIC KEY-----\n" + kid + "\n-----END PUBLIC KEY-----\n")
	}
	h.createSecret(name, data)
}

// fleetIngestion builds a FleetIngestion with n shards; mods adjust it.
func (h *harness) fleetIngestion(name string, n int, mods ...func(*v1alpha1.FleetIngestion)) *v1alpha1.FleetIngestion {
	fi := &v1alpha1.FleetIngestion{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: v1alpha1.FleetIngestionSpec{
			NATS: v1alpha1.NATSSpec{URL: nsrv.URL(), StreamReplicas: 1, MaxBytesPerShard: ptr.To(resource.MustParse("64Mi"))},
			Auth: v1alpha1.AuthSpec{
				DeviceKeysSecretRef: &v1alpha1.SecretRef{Name: deviceKeysSecret},
				Users:               &v1alpha1.UsersAuthSpec{KeysSecretRef: &v1alpha1.SecretRef{Name: userKeysSecret}},
			},
		},
	}
	for i := 0; i < n; i++ {
		fi.Spec.Shards = append(fi.Spec.Shards, v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: fmt.Sprintf("shard-%d", i), Key: "dsn"}})
	}
	for _, m := range mods {
		m(fi)
	}
	return fi
}

func (h *harness) create(fi *v1alpha1.FleetIngestion) *v1alpha1.FleetIngestion {
	h.t.Helper()
	if err := h.c.Create(h.ctx, fi); err != nil {
		h.t.Fatalf("creating FleetIngestion: %v", err)
	}
	return fi
}

// reconcile runs one pass and returns its result and error.
func (h *harness) reconcile(name string) (ctrl.Result, error) {
	return h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: h.ns, Name: name}})
}

// mustReconcile runs one pass that must succeed.
func (h *harness) mustReconcile(name string) ctrl.Result {
	h.t.Helper()
	res, err := h.reconcile(name)
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (h *harness) get(name string) *v1alpha1.FleetIngestion {
	h.t.Helper()
	var fi v1alpha1.FleetIngestion
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &fi); err != nil {
		h.t.Fatalf("getting FleetIngestion %s: %v", name, err)
	}
	return &fi
}

// markDeploymentsReady does what the Deployment controller would (envtest runs none):
// every Deployment of the namespace, or those named, reports all its replicas updated and
// ready at its generation.
func (h *harness) markDeploymentsReady(names ...string) {
	h.t.Helper()
	var deps appsv1.DeploymentList
	if err := h.c.List(h.ctx, &deps, client.InNamespace(h.ns)); err != nil {
		h.t.Fatal(err)
	}
	for i := range deps.Items {
		d := &deps.Items[i]
		if len(names) > 0 && !slices.Contains(names, d.Name) {
			continue
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
		if err := h.c.Status().Update(h.ctx, d); err != nil {
			h.t.Fatalf("marking deployment %s ready: %v", d.Name, err)
		}
	}
}

// condition returns a condition of fi, failing the test when it is missing.
func condition(t *testing.T, fi *v1alpha1.FleetIngestion, typ string) metav1.Condition {
	t.Helper()
	for _, c := range fi.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	t.Fatalf("condition %s missing; have %+v", typ, fi.Status.Conditions)
	return metav1.Condition{}
}

// drainEvents returns the events recorded so far.
func (h *harness) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
