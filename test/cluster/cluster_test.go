package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/controllers"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/cluster"
	"github.com/fleetingest/fleetingest/test/envtest"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// The names config/default, the dev sample and hack/kind-deploy.sh use.
const (
	operatorNamespace = "fleetingest-system"
	operatorName      = "fleetingest-operator"
	image             = "fleetingest:dev" // config/manager's image and --default-image
	fleetNamespace    = "fleetingest"
	fleetName         = "dev"
	samplePath        = "config/samples/fleetingest_v1alpha1_fleetingestion_dev.yaml"
)

// The fleet's Deployments.
var (
	gateway   = fleetName + "-gateway"
	analytics = fleetName + "-analytics"
)

// scenario is one run of the whole system on the emulated cluster.
type scenario struct {
	t    *testing.T
	ctx  context.Context
	c    client.Client
	node *cluster.Node
	keys string
	// dsns are the shards' DSNs as first written into their Secrets.
	dsns []string
	// deviceToken and adminToken are minted from the keys the fleet's Secrets hold.
	deviceToken, adminToken string
	// runID names this run's databases.
	runID string
	// fleetUID is the FleetIngestion's, whose Events count.
	fleetUID types.UID
}

// ingesterName is the name of shard i's ingester Deployment.
func ingesterName(i int) string { return fmt.Sprintf("%s-ingester-%d", fleetName, i) }

// ingesters are the names of the fleet's ingester Deployments, one per shard.
func (s *scenario) ingesters() []string {
	out := make([]string, len(s.dsns))
	for i := range s.dsns {
		out[i] = ingesterName(i)
	}
	return out
}

// deploymentNames are the names of every Deployment of the fleet.
func (s *scenario) deploymentNames() []string {
	return append([]string{gateway, analytics}, s.ingesters()...)
}

// The operator installed from config/default (CRD, RBAC, its Deployment) runs the dev
// sample fleet against local NATS and Postgres, its pods run by the emulated kubelet from
// the Deployments it made; readings go through the gateway and come back from analytics;
// the fleet is scaled, resized and its DSN and device key rotated; it grows by a shard that
// then takes readings; and it is deleted.
func TestTheDevFleetRunsFromItsManifestsOnAnEmulatedCluster(t *testing.T) {
	s := newScenario(t)
	s.deployOperator()
	s.createFleet()
	s.waitForRollout("the first rollout")
	s.checkEvents(controllers.EventStreamCreated, controllers.EventBucketCreated, controllers.EventReady)
	s.checkEnvironmentReachesTheProcess()
	s.sendReadingsAndAskAnalytics()
	s.scaleAndResize()
	s.rotateADSN()
	s.rotateADeviceKey()
	s.growByOneShard()
	s.deleteTheFleet()
	s.checkNoContainerRestarted()
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// Each run its own folders, so that the test can run again in the same process.
	dir, err := os.MkdirTemp(workDir, "run-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	node, err := cluster.New(cluster.Config{
		Client:                   kube.Client,
		Images:                   map[string]cluster.Image{image: {Executable: binary, UID: 65532, GID: 65532}},
		Dir:                      filepath.Join(dir, "node"),
		Namespaces:               []string{operatorNamespace, fleetNamespace},
		ServiceAccountKubeconfig: serviceAccountKubeconfig,
		Log:                      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	nodeCtx, stopNode := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- node.Run(nodeCtx) }()
	t.Cleanup(func() {
		stopNode()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	return &scenario{t: t, ctx: ctx, c: kube.Client, node: node, keys: filepath.Join(dir, "keys"), runID: filepath.Base(dir)}
}

// eventually polls check until it returns nil, failing the test with its last error after
// timeout.
func (s *scenario) eventually(timeout time.Duration, what string, check func() error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || s.ctx.Err() != nil {
			s.t.Fatalf("waited %s for %s: %v\nthe emulated node's pods:\n%s", timeout, what, err, s.node.Describe())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// run runs a command and returns its standard output.
func (s *scenario) run(stdin []byte, name string, args ...string) string {
	s.t.Helper()
	cmd := exec.CommandContext(s.ctx, name, args...)
	cmd.Dir = envtest.RepoRoot()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// fleetingest runs the binary and returns the last line of its output (a token).
func (s *scenario) fleetingest(args ...string) string {
	s.t.Helper()
	lines := strings.Split(strings.TrimSpace(s.run(nil, binary, args...)), "\n")
	return lines[len(lines)-1]
}

// deployOperator applies config/default as `make deploy` does and waits for the operator's
// pod, run with its ServiceAccount's token, to be ready.
func (s *scenario) deployOperator() {
	s.t.Helper()
	rendered := s.run(nil, kube.Kubectl, "kustomize", "config/default")
	s.run([]byte(rendered), kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-")
	s.eventually(60*time.Second, "the operator to be available", func() error {
		return s.rolledOut(operatorNamespace, operatorName)
	})
}

// rolledOut is nil once a Deployment's status says every replica is ready at its
// generation and the node runs exactly that many ready pods of its current template.
func (s *scenario) rolledOut(ns, name string) error {
	var d appsv1.Deployment
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: ns, Name: name}, &d); err != nil {
		return err
	}
	want := int(ptr.Deref(d.Spec.Replicas, 1))
	if d.Status.ObservedGeneration != d.Generation || int(d.Status.ReadyReplicas) != want || int(d.Status.UpdatedReplicas) != want {
		return fmt.Errorf("deployment %s status %+v, want %d ready at generation %d", name, d.Status, want, d.Generation)
	}
	pods := s.node.Pods(ns, name)
	if len(pods) != want {
		return fmt.Errorf("deployment %s has %d pods, want %d", name, len(pods), want)
	}
	for _, p := range pods {
		if !p.Ready() || !equalTemplates(p.Template(), d.Spec.Template) {
			return fmt.Errorf("pod %s ready %v, runs the current template %v", p.Name, p.Ready(), equalTemplates(p.Template(), d.Spec.Template))
		}
	}
	return nil
}

func equalTemplates(a, b corev1.PodTemplateSpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// createFleet makes what hack/kind-up.sh and hack/kind-deploy.sh make for the dev fleet
// (the namespace, the shards' DSN Secrets, the auth Secrets from keys generated with
// `fleetingest token keygen`), then applies the dev sample pointed at the local NATS, with
// some of the day-2 settings a platform team adds.
func (s *scenario) createFleet() {
	s.t.Helper()
	// envtest runs no namespace controller: a namespace is never deleted, so an earlier run's
	// is used again (its objects were deleted when that run ended).
	if err := s.c.Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		s.t.Fatal(err)
	}
	for range 2 {
		s.addShardDatabase()
	}
	for kind, name := range map[string]string{"device": "dev-device-keys", "user": "dev-user-keys"} {
		s.fleetingest("token", "keygen", "--out", filepath.Join(s.keys, kind))
		s.create(secret(name, publicKeys(s.t, filepath.Join(s.keys, kind))))
	}
	s.deviceToken = s.fleetingest("token", "device", "--key-file", keyFile(s.t, filepath.Join(s.keys, "device")), "--prefix", "")
	s.adminToken = s.fleetingest("token", "user", "--key-file", keyFile(s.t, filepath.Join(s.keys, "user")), "--name", "cluster-test", "--role", "admin")

	// What the day-2 settings name must exist, or the pods are not admitted.
	s.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "fleet-analytics", Namespace: fleetNamespace}})
	s.create(&schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "fleetingest-ingest"}, Value: 1000})

	b, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), samplePath))
	if err != nil {
		s.t.Fatal(err)
	}
	var fi v1alpha1.FleetIngestion
	if err := yaml.UnmarshalStrict(b, &fi); err != nil {
		s.t.Fatalf("%s: %v", samplePath, err)
	}
	fi.Spec.NATS.URL = natsSrv.URL()
	g := &fi.Spec.Gateway
	g.PodLabels = map[string]string{"team": "telemetry"}
	g.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	g.Env = append(g.Env, corev1.EnvVar{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
		ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"},
	}})
	fi.Spec.Ingester.PriorityClassName = "fleetingest-ingest"
	fi.Spec.Analytics.ServiceAccountName = "fleet-analytics"
	s.create(&fi)
	s.fleetUID = fi.UID
}

// addShardDatabase creates the next shard's database in the shared Postgres and its DSN
// Secret, pg-<i>-dsn, and returns the shard's index.
func (s *scenario) addShardDatabase() int {
	s.t.Helper()
	i := len(s.dsns)
	db := fmt.Sprintf("cluster_%s_shard_%d", strings.ReplaceAll(s.runID, "-", "_"), i)
	if err := postgres.CreateDatabase(s.ctx, db); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := postgres.DropDatabase(ctx, db); err != nil {
			s.t.Errorf("dropping %s: %v", db, err)
		}
	})
	s.dsns = append(s.dsns, postgres.DSN(db))
	s.create(secret(fmt.Sprintf("pg-%d-dsn", i), map[string][]byte{"dsn": []byte(postgres.DSN(db))}))
	return i
}

// create creates an object, deleted again when the test ends.
func (s *scenario) create(o client.Object) {
	s.t.Helper()
	if err := s.c.Create(s.ctx, o); err != nil {
		s.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, ok := o.(*v1alpha1.FleetIngestion); ok { // still there when a step failed
			err := s.c.Patch(ctx, o, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
			if client.IgnoreNotFound(err) != nil {
				s.t.Errorf("removing the fleet's finalizer: %v", err)
			}
		}
		if err := client.IgnoreNotFound(s.c.Delete(ctx, o)); err != nil {
			s.t.Errorf("deleting %T %s: %v", o, o.GetName(), err)
		}
	})
}

func secret(name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: fleetNamespace}, Data: data}
}

// publicKeys are the <kid>.pub files of a key folder, as `kubectl create secret
// --from-file` puts them into a Secret.
func publicKeys(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no public key in %s (%v)", dir, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// keyFile is the one signing key of a key folder.
func keyFile(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil || len(files) != 1 {
		t.Fatalf("signing keys in %s: %v (%v)", dir, files, err)
	}
	return files[0]
}

// fleet reads the FleetIngestion.
func (s *scenario) fleet() (*v1alpha1.FleetIngestion, error) {
	var fi v1alpha1.FleetIngestion
	err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: fleetName}, &fi)
	return &fi, err
}

// waitForRollout waits until the fleet is Ready at its generation and every Deployment of
// it runs its current template on the node.
func (s *scenario) waitForRollout(what string) {
	s.t.Helper()
	s.eventually(2*time.Minute, what, func() error {
		fi, err := s.fleet()
		if err != nil {
			return err
		}
		c := meta.FindStatusCondition(fi.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || fi.Status.ObservedGeneration != fi.Generation {
			return fmt.Errorf("fleet generation %d, observed %d, Ready %+v", fi.Generation, fi.Status.ObservedGeneration, c)
		}
		for _, d := range s.deploymentNames() {
			if err := s.rolledOut(fleetNamespace, d); err != nil {
				return err
			}
		}
		return nil
	})
	for _, d := range s.deploymentNames() {
		for _, p := range s.node.Pods(fleetNamespace, d) {
			if n := p.Restarts(); n > 0 {
				s.t.Errorf("pod %s restarted %d time(s)", p.Name, n)
			}
		}
	}
}

// checkEvents checks that the fleet's Events carry these reasons.
func (s *scenario) checkEvents(reasons ...string) {
	s.t.Helper()
	s.eventually(10*time.Second, fmt.Sprintf("events %v", reasons), func() error {
		var evs eventsv1.EventList
		if err := s.c.List(s.ctx, &evs, client.InNamespace(fleetNamespace)); err != nil {
			return err
		}
		have := map[string]bool{}
		for i := range evs.Items {
			if e := &evs.Items[i]; e.Regarding.Kind == "FleetIngestion" && e.Regarding.UID == s.fleetUID {
				have[e.Reason] = true
			}
		}
		for _, r := range reasons {
			if !have[r] {
				return fmt.Errorf("no %s event among %v", r, have)
			}
		}
		return nil
	})
}

// checkEnvironmentReachesTheProcess reads the gateway's GOMEMLIMIT, given by a
// resourceFieldRef on its memory limit, from the Go runtime's own metric.
func (s *scenario) checkEnvironmentReachesTheProcess() {
	s.t.Helper()
	p := s.node.Pods(fleetNamespace, gateway)[0]
	body := s.get(p.URL("metrics")+"/metrics", "")
	if !strings.Contains(body, "go_gc_gomemlimit_bytes 2.68435456e+08") {
		s.t.Errorf("the gateway's metrics do not show GOMEMLIMIT of its 256Mi limit:\n%s", grep(body, "gomemlimit"))
	}
}

func grep(s, what string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, what) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The pairs of a meter and the vehicle charging from it: each pair's ids are placed on one
// shard, pair i on shard i, so that whichever mapping a gateway has seen yet, a reading
// lands where analytics looks for it.
func pairs(t *testing.T) [][2]string {
	t.Helper()
	m := placement.MustSlotMap(2)
	var out [][2]string
	for shard := range 2 {
		var meter, vehicle string
		for i := 0; meter == "" || vehicle == ""; i++ {
			if id := fmt.Sprintf("meter-%d", i); meter == "" && m.ShardOf(id) == shard {
				meter = id
			}
			if id := fmt.Sprintf("EV-%d", i); vehicle == "" && m.ShardOf(id) == shard {
				vehicle = id
			}
		}
		out = append(out, [2]string{meter, vehicle})
	}
	return out
}

// sendReadingsAndAskAnalytics maps each vehicle to its meter, posts a reading of each
// through the gateway with the device token and waits for analytics to answer with them.
func (s *scenario) sendReadingsAndAskAnalytics() {
	s.t.Helper()
	gw := s.node.Pods(fleetNamespace, gateway)[0].URL("http")
	an := s.node.Pods(fleetNamespace, analytics)[0].URL("http")
	now := time.Now().UTC()
	for _, pair := range pairs(s.t) {
		meterID, vehicle := pair[0], pair[1]
		mapping := fmt.Sprintf(`{"vehicleId":%q,"meterId":%q,"from":%q}`, vehicle, meterID, now.Add(-2*time.Hour).Format(time.RFC3339))
		if code, body := s.post(an+"/v1/analytics/mappings", s.adminToken, mapping); code != http.StatusOK {
			s.t.Fatalf("mapping %s to %s: %d %s", vehicle, meterID, code, body)
		}
		ts := now.Add(-30 * time.Minute).Format(time.RFC3339)
		for _, reading := range []string{
			fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":1.2,"voltage":231.5,"timestamp":%q}`, meterID, ts),
			fmt.Sprintf(`{"vehicleId":%q,"soc":55,"kwhDeliveredDc":1.0,"batteryTemp":24,"timestamp":%q}`, vehicle, ts),
		} {
			if code, body := s.post(gw+"/v1/telemetry", s.deviceToken, reading); code != http.StatusAccepted {
				s.t.Fatalf("POST /v1/telemetry %s: %d %s", reading, code, body)
			}
		}
		s.waitForAnswer(vehicle)
	}
	if code, _ := s.post(gw+"/v1/telemetry", "", `{"meterId":"meter-x","kwhConsumedAc":1,"voltage":230,"timestamp":"`+now.Format(time.RFC3339)+`"}`); code != http.StatusUnauthorized {
		s.t.Errorf("a reading without a token: %d, want 401", code)
	}
}

func (s *scenario) post(url, token, body string) (int, string) {
	s.t.Helper()
	return s.do(http.MethodPost, url, token, body)
}

func (s *scenario) get(url, token string) string {
	s.t.Helper()
	code, body := s.do(http.MethodGet, url, token, "")
	if code != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func (s *scenario) do(method, url, token, body string) (int, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// patchFleet changes the FleetIngestion's spec or metadata.
func (s *scenario) patchFleet(mod func(*v1alpha1.FleetIngestion)) {
	s.t.Helper()
	fi, err := s.fleet()
	if err != nil {
		s.t.Fatal(err)
	}
	base := fi.DeepCopy()
	mod(fi)
	if err := s.c.Patch(s.ctx, fi, client.MergeFrom(base)); err != nil {
		s.t.Fatalf("patching the fleet: %v", err)
	}
}

func (s *scenario) deployment(name string) *appsv1.Deployment {
	s.t.Helper()
	var d appsv1.Deployment
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: name}, &d); err != nil {
		s.t.Fatalf("deployment %s: %v", name, err)
	}
	return &d
}

// podNames are the names of the node's pods of each Deployment.
func (s *scenario) podNames() map[string][]string {
	out := map[string][]string{}
	for _, d := range s.deploymentNames() {
		for _, p := range s.node.Pods(fleetNamespace, d) {
			out[d] = append(out[d], p.Name)
		}
	}
	return out
}

// scaleAndResize scales the gateway to two replicas and raises the ingesters' memory
// limit: the Deployments change, the node runs two gateways and new ingester pods, a
// PodDisruptionBudget and a topology spread appear, and both gateways take readings.
func (s *scenario) scaleAndResize() {
	s.t.Helper()
	before := s.podNames()
	s.patchFleet(func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Gateway.Replicas = ptr.To[int32](2)
		fi.Spec.Ingester.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}
	})
	s.waitForRollout("the gateway scaled to two and the ingesters resized")
	gw := s.deployment(gateway)
	if *gw.Spec.Replicas != 2 || len(gw.Spec.Template.Spec.TopologySpreadConstraints) != 2 {
		s.t.Errorf("gateway replicas %d, spread %+v", *gw.Spec.Replicas, gw.Spec.Template.Spec.TopologySpreadConstraints)
	}
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: gateway}, &policyv1.PodDisruptionBudget{}); err != nil {
		s.t.Errorf("the gateway's PodDisruptionBudget at two replicas: %v", err)
	}
	after := s.podNames()
	for _, name := range s.ingesters() {
		if got := s.deployment(name).Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(); got != "512Mi" {
			s.t.Errorf("%s memory limit = %s", name, got)
		}
		if slices.Equal(after[name], before[name]) {
			s.t.Errorf("%s still runs pod %v after its template changed", name, after[name])
		}
	}
	if !slices.Equal(after[analytics], before[analytics]) {
		s.t.Errorf("analytics was restarted (%v → %v) by a change that was not its own", before[analytics], after[analytics])
	}
	ts := time.Now().UTC().Format(time.RFC3339)
	for _, p := range s.node.Pods(fleetNamespace, gateway) {
		reading := `{"meterId":"meter-scaled","kwhConsumedAc":0.5,"voltage":230,"timestamp":"` + ts + `"}`
		if code, body := s.post(p.URL("http")+"/v1/telemetry", s.deviceToken, reading); code != http.StatusAccepted {
			s.t.Errorf("POST to gateway pod %s: %d %s", p.Name, code, body)
		}
	}
}

// rotateADSN changes shard 0's DSN Secret (a new application_name) and asks for a pass: the
// checksum rolls shard 0's ingester and analytics, which connect with the new DSN, and no
// other pod.
func (s *scenario) rotateADSN() {
	s.t.Helper()
	before := s.podNames()
	rotated := s.dsns[0] + "&application_name=rotated-shard-0"
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: "pg-0-dsn"}, &sec); err != nil {
		s.t.Fatal(err)
	}
	sec.Data["dsn"] = []byte(rotated)
	if err := s.c.Update(s.ctx, &sec); err != nil {
		s.t.Fatal(err)
	}
	// The operator reads Secrets at each pass (it does not watch them): an annotation
	// starts one now rather than at the next resync.
	s.patchFleet(func(fi *v1alpha1.FleetIngestion) {
		fi.Annotations = map[string]string{"rotated-at": time.Now().Format(time.RFC3339Nano)}
	})
	s.eventually(2*time.Minute, "shard 0's ingester and analytics to roll", func() error {
		after := s.podNames()
		for _, d := range []string{ingesterName(0), analytics} {
			if slices.Equal(after[d], before[d]) {
				return fmt.Errorf("%s still runs %v", d, after[d])
			}
		}
		for _, d := range s.deploymentNames() {
			if err := s.rolledOut(fleetNamespace, d); err != nil {
				return err
			}
		}
		return nil
	})
	after := s.podNames()
	for _, d := range []string{ingesterName(1), gateway} {
		if !slices.Equal(after[d], before[d]) {
			s.t.Errorf("%s rolled (%v → %v) when shard 0's DSN changed", d, before[d], after[d])
		}
	}
	s.eventually(30*time.Second, "connections with the rotated DSN", func() error {
		conn, err := pgx.Connect(s.ctx, s.dsns[0])
		if err != nil {
			return err
		}
		defer conn.Close(s.ctx)
		var n int
		if err := conn.QueryRow(s.ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rotated-shard-0'`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("no connection to shard 0 with application_name rotated-shard-0")
		}
		return nil
	})
	s.checkEvents(controllers.EventSecretChanged)
}

// rotateADeviceKey adds a second device key to the device keys Secret: a token signed with
// it is accepted once kubelet has updated the mount, and no pod restarts.
func (s *scenario) rotateADeviceKey() {
	s.t.Helper()
	before := s.podNames()
	generations := map[string]int64{}
	for _, d := range s.deploymentNames() {
		generations[d] = s.deployment(d).Generation
	}
	dir := filepath.Join(s.keys, "device-2")
	s.fleetingest("token", "keygen", "--out", dir)
	token := s.fleetingest("token", "device", "--key-file", keyFile(s.t, dir), "--device", "meter-rotated")
	var sec corev1.Secret
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: "dev-device-keys"}, &sec); err != nil {
		s.t.Fatal(err)
	}
	for k, v := range publicKeys(s.t, dir) {
		sec.Data[k] = v
	}
	if err := s.c.Update(s.ctx, &sec); err != nil {
		s.t.Fatal(err)
	}
	reading := `{"meterId":"meter-rotated","kwhConsumedAc":0.5,"voltage":230,"timestamp":"` + time.Now().UTC().Format(time.RFC3339) + `"}`
	for _, p := range s.node.Pods(fleetNamespace, gateway) {
		s.eventually(30*time.Second, "gateway "+p.Name+" to accept the new key", func() error {
			if code, body := s.post(p.URL("http")+"/v1/telemetry", token, reading); code != http.StatusAccepted {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	time.Sleep(2 * time.Second) // a pass the key change might have started has run
	if after := s.podNames(); !equalPods(before, after) {
		s.t.Errorf("pods changed when a device key was added: %v → %v", before, after)
	}
	for _, d := range s.deploymentNames() {
		if g := s.deployment(d).Generation; g != generations[d] {
			s.t.Errorf("deployment %s went from generation %d to %d when a device key was added", d, generations[d], g)
		}
	}
}

func equalPods(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !slices.Equal(a[k], b[k]) {
			return false
		}
	}
	return true
}

// deleteTheFleet deletes the FleetIngestion: with the sample's deletionPolicy Delete the
// operator deletes its streams and buckets and lets it go, the garbage collector takes its
// objects and the node stops their pods.
func (s *scenario) deleteTheFleet() {
	s.t.Helper()
	fi, err := s.fleet()
	if err != nil {
		s.t.Fatal(err)
	}
	if fi.Spec.DeletionPolicy != v1alpha1.DeletionPolicyDelete {
		s.t.Fatalf("the dev sample's deletionPolicy is %s; this step expects Delete", fi.Spec.DeletionPolicy)
	}
	if err := s.c.Delete(s.ctx, fi); err != nil {
		s.t.Fatal(err)
	}
	s.eventually(60*time.Second, "the fleet, its Deployments and pods to go", func() error {
		switch _, err := s.fleet(); {
		case err == nil:
			return errors.New("the FleetIngestion is still there")
		case !apierrors.IsNotFound(err):
			return err
		}
		var deps appsv1.DeploymentList
		if err := s.c.List(s.ctx, &deps, client.InNamespace(fleetNamespace)); err != nil {
			return err
		}
		if len(deps.Items) > 0 {
			return fmt.Errorf("%d deployment(s) left", len(deps.Items))
		}
		for _, d := range s.deploymentNames() {
			if pods := s.node.Pods(fleetNamespace, d); len(pods) > 0 {
				return fmt.Errorf("%d pod(s) of %s left", len(pods), d)
			}
		}
		return nil
	})
	_, js := natstest.Connect(s.t, natsSrv.URL())
	topo := ingester.Topology{Namespace: fleetNamespace, Fleet: fleetName, Shards: len(s.dsns)}
	streams := []string{topo.DeadLetterStream()}
	for i := range topo.Shards {
		streams = append(streams, topo.Stream(i))
	}
	for _, name := range streams {
		if _, err := js.Stream(s.ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			s.t.Errorf("stream %s after deletion: %v, want not found", name, err)
		}
	}
	for _, b := range topo.Buckets() {
		if _, err := js.KeyValue(s.ctx, b); !errors.Is(err, jetstream.ErrBucketNotFound) {
			s.t.Errorf("bucket %s after deletion: %v, want not found", b, err)
		}
	}
}

// checkNoContainerRestarted fails when the operator's container restarted: a crash or a
// failing liveness probe.
func (s *scenario) checkNoContainerRestarted() {
	s.t.Helper()
	for _, p := range s.node.Pods(operatorNamespace, operatorName) {
		if n := p.Restarts(); n > 0 {
			s.t.Errorf("operator pod %s restarted %d time(s)", p.Name, n)
		}
	}
}
