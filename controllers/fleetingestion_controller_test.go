package controllers

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

func TestCreatingAFleetProvisionsStreamsBucketAndObjects(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-a", 2, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Ingress = &v1alpha1.IngressSpec{Host: "telemetry.example.com"}
	}))
	res := h.mustReconcile(fi.Name)
	if res.RequeueAfter < 5*time.Minute || res.RequeueAfter > 6*time.Minute {
		t.Errorf("RequeueAfter = %v, want the jittered 5m resync", res.RequeueAfter)
	}
	fi = h.get(fi.Name)
	topo := ingester.Topology{Namespace: h.ns, Fleet: "fleet-a", Shards: 2}

	for i := 0; i < 2; i++ {
		s, err := h.js.Stream(h.ctx, topo.Stream(i))
		if err != nil {
			t.Fatalf("stream %s: %v", topo.Stream(i), err)
		}
		cfg := s.CachedInfo().Config
		if !slices.Equal(cfg.Subjects, []string{topo.Subject(i)}) || cfg.Retention != jetstream.WorkQueuePolicy ||
			cfg.Discard != jetstream.DiscardNew || cfg.MaxBytes != 64<<20 || cfg.Replicas != 1 || cfg.Storage != jetstream.FileStorage {
			t.Errorf("stream %s config = subjects %v retention %v discard %v maxBytes %d replicas %d storage %v",
				cfg.Name, cfg.Subjects, cfg.Retention, cfg.Discard, cfg.MaxBytes, cfg.Replicas, cfg.Storage)
		}
		if _, err := s.Consumer(h.ctx, ingester.ConsumerName); err != nil {
			t.Errorf("consumer on %s: %v", cfg.Name, err)
		}
	}
	kv, err := h.js.KeyValue(h.ctx, topo.MappingBucket())
	if err != nil {
		t.Fatalf("bucket %s: %v", topo.MappingBucket(), err)
	}
	if st, _ := kv.Status(h.ctx); st.History() != 1 {
		t.Errorf("bucket history = %d, want 1", st.History())
	}

	// Every object exists and is controlled by the FleetIngestion (envtest runs no garbage
	// collector, so the reference itself is what is checked).
	objects := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-gateway"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-ingester-0"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-ingester-1"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-analytics"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-gateway"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-analytics"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-shardmap"}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-gateway"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-analytics"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fleet-a-ingester"}},
	}
	for _, o := range objects {
		if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: o.GetName()}, o); err != nil {
			t.Fatalf("getting %T %s: %v", o, o.GetName(), err)
		}
		ref := metav1.GetControllerOf(o)
		if ref == nil || ref.UID != fi.UID || ref.Kind != "FleetIngestion" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("%T %s controller reference = %+v, want the FleetIngestion %s", o, o.GetName(), ref, fi.UID)
		}
	}

	// The ConfigMap mirrors the shard map that the streams phase wrote into NATS, and no pod
	// mounts it.
	m, _, err := ingester.ReadShardMap(h.ctx, h.js, topo)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Marshal()
	var cm corev1.ConfigMap
	_ = h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-a-shardmap"}, &cm)
	if cm.Data["shardmap.json"] != string(want) || len(cm.Data) != 1 || m.Shards() != 2 || len(m.Versions) != 1 {
		t.Errorf("shard map ConfigMap data = %v, want the map in NATS %s", cm.Data, want)
	}
	var deps appsv1.DeploymentList
	_ = h.c.List(h.ctx, &deps, client.InNamespace(h.ns))
	for _, d := range deps.Items {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				t.Errorf("deployment %s mounts config map %s", d.Name, v.ConfigMap.Name)
			}
		}
	}

	var ing networkingv1.Ingress
	_ = h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-a"}, &ing)
	var paths []string
	for _, p := range ing.Spec.Rules[0].HTTP.Paths {
		paths = append(paths, p.Path+"→"+p.Backend.Service.Name)
	}
	if !slices.Equal(paths, []string{"/v1/telemetry→fleet-a-gateway"}) {
		t.Errorf("ingress paths = %v, want only the gateway's (analytics not opted in)", paths)
	}

	var ing0 appsv1.Deployment
	_ = h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-a-ingester-0"}, &ing0)
	pod := ing0.Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Args[0] != "migrate" {
		t.Errorf("ingester init containers = %+v, want one running migrate", pod.InitContainers)
	}
	c := pod.Containers[0]
	if c.Image != "fleetingest:test" || !slices.Contains(c.Args, "--shard=0") || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		!ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false) || !ptr.Deref(pod.SecurityContext.RunAsNonRoot, false) {
		t.Errorf("ingester container = %+v", c)
	}

	if fi.Status.ShardCount != 2 || fi.Status.ShardMapVersions != 1 || fi.Status.ShardMap == nil || len(fi.Status.ShardMap.Versions) != 1 ||
		fi.Status.ShardMap.Versions[0].Shards != 2 || len(fi.Status.Shards) != 2 || fi.Status.Shards[1].Stream != topo.Stream(1) {
		t.Errorf("status = %+v", fi.Status)
	}
	if c := condition(t, fi, v1alpha1.ConditionResharding); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonReshardingComplete {
		t.Errorf("Resharding of a new fleet = %+v, want False/Complete", c)
	}
	if c := condition(t, fi, v1alpha1.ConditionStreamsReady); c.Status != metav1.ConditionTrue {
		t.Errorf("StreamsReady = %+v", c)
	}
	if c := condition(t, fi, v1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonComponentsNotReady {
		t.Errorf("Ready before any pod is ready = %+v", c)
	}
	if !slices.Contains(fi.Finalizers, v1alpha1.Finalizer) {
		t.Errorf("finalizers = %v", fi.Finalizers)
	}
	ev := strings.Join(h.drainEvents(), "\n")
	for _, want := range []string{
		"Normal StreamCreated created stream(s) " + topo.Stream(0) + ", " + topo.Stream(1),
		"Normal BucketCreated created bucket(s) " + topo.MappingBucket() + ", " + topo.RevocationBucket(),
	} {
		if !strings.Contains(ev, want) {
			t.Errorf("events = %s\nwant %q", ev, want)
		}
	}
}

func TestReadyDeploymentsMakeTheFleetReady(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-b", 2))
	h.mustReconcile(fi.Name)
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)
	fi = h.get(fi.Name)
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionStreamsReady, v1alpha1.ConditionShardsReady, v1alpha1.ConditionGatewayReady, v1alpha1.ConditionAnalyticsReady} {
		if c := condition(t, fi, typ); c.Status != metav1.ConditionTrue || c.ObservedGeneration != fi.Generation {
			t.Errorf("%s = %+v, want True at generation %d", typ, c, fi.Generation)
		}
	}
	if fi.Status.ObservedGeneration != fi.Generation || fi.Status.ReadyShards != 2 || fi.Status.Shards[0].ReadyReplicas != 1 {
		t.Errorf("status = observedGeneration %d (generation %d), readyShards %d, shards %+v",
			fi.Status.ObservedGeneration, fi.Generation, fi.Status.ReadyShards, fi.Status.Shards)
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, EventReady) {
		t.Errorf("events = %s, want a Ready event", ev)
	}
}

func TestSpecChangesApplyInPlaceAndASteadyPassWritesNothing(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-c", 2))
	h.mustReconcile(fi.Name)
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)

	fi = h.get(fi.Name)
	fi.Spec.Gateway.Replicas = ptr.To[int32](3)
	fi.Spec.Ingester.Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)

	var gw appsv1.Deployment
	_ = h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-c-gateway"}, &gw)
	if *gw.Spec.Replicas != 3 {
		t.Errorf("gateway replicas = %d, want 3", *gw.Spec.Replicas)
	}
	var pdb policyv1.PodDisruptionBudget
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-c-gateway"}, &pdb); err != nil {
		t.Errorf("gateway PDB for 3 replicas: %v", err)
	}
	var ing1 appsv1.Deployment
	_ = h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-c-ingester-1"}, &ing1)
	if got := ing1.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(); got != "512Mi" {
		t.Errorf("ingester memory limit = %s, want 512Mi", got)
	}
	fi = h.get(fi.Name)
	if c := condition(t, fi, v1alpha1.ConditionGatewayReady); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonDeploymentsProgressing {
		t.Errorf("GatewayReady while rolling out = %+v", c)
	}
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)

	// Back to one replica: the PDB goes, since it would block node drains.
	fi = h.get(fi.Name)
	fi.Spec.Gateway.Replicas = ptr.To[int32](1)
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-c-gateway"}, &pdb); err == nil {
		t.Errorf("gateway PDB still exists at one replica")
	}
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)

	before := h.resourceVersions()
	h.drainEvents()
	h.mustReconcile(fi.Name)
	after := h.resourceVersions()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s resourceVersion %s → %s on a pass over an unchanged spec", k, v, after[k])
		}
	}
	if len(before) < 11 {
		t.Errorf("only %d objects compared: %v", len(before), before)
	}
	if ev := h.drainEvents(); len(ev) > 0 {
		t.Errorf("a steady pass emitted events: %v", ev)
	}
}

// resourceVersions of every object in the test's namespace that a pass may write.
func (h *harness) resourceVersions() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	lists := []client.ObjectList{&v1alpha1.FleetIngestionList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{},
		&networkingv1.IngressList{}, &policyv1.PodDisruptionBudgetList{}, &networkingv1.NetworkPolicyList{}}
	for _, l := range lists {
		if err := h.c.List(h.ctx, l, client.InNamespace(h.ns)); err != nil {
			h.t.Fatal(err)
		}
		items, _ := metaItems(l)
		for _, o := range items {
			out[o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName()+"/"+typeName(l)] = o.GetResourceVersion()
		}
	}
	return out
}

func TestResyncPutsBackStreamAndBucketChangedBehindTheOperatorsBack(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-d", 2))
	h.mustReconcile(fi.Name)
	topo := ingester.Topology{Namespace: h.ns, Fleet: "fleet-d", Shards: 2}

	s, err := h.js.Stream(h.ctx, topo.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxBytes = 1 << 20
	if _, err := h.js.UpdateStream(h.ctx, cfg); err != nil {
		t.Fatalf("changing the stream behind the operator's back: %v", err)
	}
	if err := h.js.DeleteKeyValue(h.ctx, topo.MappingBucket()); err != nil {
		t.Fatalf("deleting the bucket behind the operator's back: %v", err)
	}
	h.drainEvents()

	h.mustReconcile(fi.Name) // what the periodic resync runs

	s, err = h.js.Stream(h.ctx, topo.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxBytes; got != 64<<20 {
		t.Errorf("stream MaxBytes after resync = %d, want %d", got, 64<<20)
	}
	if _, err := h.js.KeyValue(h.ctx, topo.MappingBucket()); err != nil {
		t.Errorf("bucket after resync: %v", err)
	}
	ev := strings.Join(h.drainEvents(), "\n")
	if !strings.Contains(ev, "Normal StreamRepaired repaired stream(s) "+topo.Stream(1)+" (maxBytes had drifted)") ||
		!strings.Contains(ev, "Normal BucketCreated created bucket(s) "+topo.MappingBucket()) || strings.Contains(ev, EventStreamCreated) {
		t.Errorf("events = %s, want the repair and the re-creation reported under their own reasons", ev)
	}
	if got := testutil.ToFloat64(h.r.metrics.streamRepairs.WithLabelValues(h.ns, "fleet-d")); got != 2 {
		t.Errorf("stream repairs metric = %v, want 2 (one stream, one bucket)", got)
	}
}

func TestANATSOutageIsReportedAndRecoveredWithoutEditingTheFleet(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-e", 1))
	h.mustReconcile(fi.Name)
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)
	gen := h.get(fi.Name).Status.ObservedGeneration
	h.drainEvents()

	nsrv.Stop()
	restarted := false
	defer func() {
		if !restarted {
			if s, err := nsrv.Restart(); err == nil {
				nsrv = s
			}
		}
	}()
	_, err := h.reconcile(fi.Name)
	if err == nil || !errors.Is(err, ErrNATSUnreachable) && !isUnreachable(err) {
		t.Fatalf("reconcile with NATS down: err = %v, want NATS unreachable (so the pass is retried with backoff)", err)
	}
	fi = h.get(fi.Name)
	c := condition(t, fi, v1alpha1.ConditionStreamsReady)
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonNATSUnreachable || !strings.Contains(c.Message, nsrv.URL()) {
		t.Errorf("StreamsReady with NATS down = %+v, want False/%s naming the URL", c, v1alpha1.ReasonNATSUnreachable)
	}
	if r := condition(t, fi, v1alpha1.ConditionReady); r.Status != metav1.ConditionFalse {
		t.Errorf("Ready with NATS down = %+v", r)
	}
	if r := condition(t, fi, v1alpha1.ConditionResharding); r.Status != metav1.ConditionUnknown || r.Reason != v1alpha1.ReasonNATSUnreachable ||
		fi.Status.ShardMapVersions != 1 {
		t.Errorf("Resharding with NATS down = %+v (shard map versions %d), want Unknown/%s and the map last seen kept",
			r, fi.Status.ShardMapVersions, v1alpha1.ReasonNATSUnreachable)
	}
	if fi.Status.ObservedGeneration != gen {
		t.Errorf("observedGeneration = %d, want it held at %d", fi.Status.ObservedGeneration, gen)
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, EventStreamsUnavailable) {
		t.Errorf("events = %s, want %s", ev, EventStreamsUnavailable)
	}

	s, err := nsrv.Restart()
	if err != nil {
		t.Fatalf("restarting NATS: %v", err)
	}
	nsrv, restarted = s, true

	// The controller retries with backoff; here the retries are run by hand until the pooled
	// connection has reconnected by itself.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = h.reconcile(fi.Name)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("reconcile after NATS came back: %v", err)
	}
	fi = h.get(fi.Name)
	if c := condition(t, fi, v1alpha1.ConditionReady); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready after NATS came back = %+v", c)
	}
}

func TestDeletionHonoursTheDeletionPolicy(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name        string
		policy      v1alpha1.DeletionPolicy
		wantStreams bool
	}{
		{"retain keeps the streams", v1alpha1.DeletionPolicyRetain, true},
		{"delete removes the streams", v1alpha1.DeletionPolicyDelete, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := []string{"keep", "drop"}[i]
			fi := h.create(h.fleetIngestion(name, 2, func(fi *v1alpha1.FleetIngestion) { fi.Spec.DeletionPolicy = tc.policy }))
			h.mustReconcile(fi.Name)
			if err := h.c.Delete(h.ctx, h.get(name)); err != nil {
				t.Fatal(err)
			}
			h.mustReconcile(name)
			var gone v1alpha1.FleetIngestion
			if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &gone); err == nil {
				t.Errorf("FleetIngestion still exists with finalizers %v", gone.Finalizers)
			}
			topo := ingester.Topology{Namespace: h.ns, Fleet: name, Shards: 2}
			for _, s := range []string{topo.Stream(0), topo.Stream(1), topo.DeadLetterStream()} {
				_, err := h.js.Stream(h.ctx, s)
				if exists := err == nil; exists != tc.wantStreams {
					t.Errorf("stream %s exists = %v (err %v), want %v", s, exists, err, tc.wantStreams)
				}
			}
			for _, b := range topo.Buckets() {
				_, err := h.js.KeyValue(h.ctx, b)
				if exists := err == nil; exists != tc.wantStreams {
					t.Errorf("bucket %s exists = %v, want %v", b, exists, tc.wantStreams)
				}
			}
		})
	}
}

func TestDeletingWhileNATSIsDownKeepsTheFinalizerUntilAnAdminLetsGo(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-f", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete
	}))
	h.mustReconcile(fi.Name)
	// Point the fleet at a NATS that is not there (a closed port), then delete it.
	fi = h.get(fi.Name)
	fi.Spec.NATS.URL = "nats://127.0.0.1:1"
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.drainEvents()
	if _, err := h.reconcile(fi.Name); err == nil {
		t.Fatalf("reconcile deleted the fleet's finalizer although NATS is unreachable")
	}
	fi = h.get(fi.Name)
	if !slices.Contains(fi.Finalizers, v1alpha1.Finalizer) {
		t.Errorf("finalizer removed while streams could not be deleted")
	}
	ev := strings.Join(h.drainEvents(), "\n")
	if !strings.Contains(ev, EventStreamDeletionFailed) || !strings.Contains(ev, v1alpha1.AnnotationAbandonStreams) {
		t.Errorf("events = %q, want %s naming the annotation that lets go", ev, EventStreamDeletionFailed)
	}

	fi.Annotations = map[string]string{v1alpha1.AnnotationAbandonStreams: "true"}
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: fi.Name}, fi); err == nil {
		t.Errorf("FleetIngestion still exists after the abandon annotation")
	}
}

func TestAMissingCredentialsSecretIsReportedByName(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("fleet-g", 1, func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.NATS.CredentialsSecretRef = &v1alpha1.SecretKeyRef{Name: "nats-creds", Key: "user.creds"}
	}))
	if _, err := h.reconcile(fi.Name); err == nil {
		t.Fatal("reconcile succeeded without the NATS credentials")
	}
	fi = h.get(fi.Name)
	c := condition(t, fi, v1alpha1.ConditionStreamsReady)
	want := "secret " + h.ns + "/nats-creds (spec.nats.credentialsSecretRef) not found"
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(c.Message, want) {
		t.Errorf("StreamsReady = %+v, want False/%s saying %q", c, v1alpha1.ReasonSecretNotFound, want)
	}
	// Every component mounts the credentials: each says so, and Ready names the Secret.
	for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionShardsReady, v1alpha1.ConditionGatewayReady, v1alpha1.ConditionAnalyticsReady} {
		if c := condition(t, fi, typ); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(c.Message, want) {
			t.Errorf("%s = %+v, want False/%s saying %q", typ, c, v1alpha1.ReasonSecretNotFound, want)
		}
	}
	// The Kubernetes objects are applied all the same, with the credentials mounted.
	var gw appsv1.Deployment
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "fleet-g-gateway"}, &gw); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gw.Spec.Template.Spec.Containers[0].Args, "--nats-creds=/etc/fleetingest/nats/creds") {
		t.Errorf("gateway args = %v", gw.Spec.Template.Spec.Containers[0].Args)
	}
}
