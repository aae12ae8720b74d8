package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// shardMapEntry reads the fleet's shard map from NATS, with its KV revision.
func (h *harness) shardMapEntry(fleet string) jetstream.KeyValueEntry {
	h.t.Helper()
	kv, err := h.js.KeyValue(h.ctx, ingester.Topology{Namespace: h.ns, Fleet: fleet, Shards: 1}.ShardMapBucket())
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(h.ctx, ingester.ShardMapKey)
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

// wantResharding checks the Resharding condition's status and reason, and that its message
// says what it should.
func wantResharding(t *testing.T, fi *v1alpha1.FleetIngestion, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	c := condition(t, fi, v1alpha1.ConditionResharding)
	if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, message) {
		t.Errorf("Resharding = %s/%s %q, want %s/%s saying %q", c.Status, c.Reason, c.Message, status, reason, message)
	}
}

// Appending a shard provisions its stream and ingester, rolls analytics onto every shard's
// DSN and only then writes the shard map's version, a lead ahead; a pass after the write
// writes nothing again, even one that finds the status from before it.
func TestAppendingAShardGrowsTheFleetOnceItsShardIsServed(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("grow", 2))
	h.mustReconcile(fi.Name)
	h.markDeploymentsReady()
	h.mustReconcile(fi.Name)
	wantResharding(t, h.get(fi.Name), metav1.ConditionFalse, v1alpha1.ReasonReshardingComplete, "all 2 shards")
	first := h.shardMapEntry(fi.Name)
	ingester0 := h.deployment("grow-ingester-0").Generation

	fi = h.get(fi.Name)
	fi.Spec.Shards = append(fi.Spec.Shards, v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: "shard-2", Key: "dsn"}})
	if err := h.c.Update(h.ctx, fi); err != nil {
		t.Fatalf("appending a shard: %v", err)
	}

	// The new shard's stream, consumer and ingester come first; the map stays as it was.
	h.mustReconcile(fi.Name)
	topo := ingester.Topology{Namespace: h.ns, Fleet: fi.Name, Shards: 3}
	s, err := h.js.Stream(h.ctx, topo.Stream(2))
	if err != nil {
		t.Fatalf("the new shard's stream: %v", err)
	}
	if _, err := s.Consumer(h.ctx, ingester.ConsumerName); err != nil {
		t.Errorf("the new shard's consumer: %v", err)
	}
	pod := h.deployment("grow-ingester-2").Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Args[0] != "migrate" || !slices.Contains(pod.Containers[0].Args, "--shard=2") {
		t.Errorf("the new shard's ingester pod = init %+v, args %v", pod.InitContainers, pod.Containers[0].Args)
	}
	if g := h.deployment("grow-ingester-0").Generation; g != ingester0 {
		t.Errorf("shard 0's ingester went from generation %d to %d: growing must not roll the running ingesters", ingester0, g)
	}
	if args := h.deployment("grow-analytics").Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--shard-dsn-file="+shardDSNFile(2)) {
		t.Errorf("analytics args = %v, want shard 2's DSN", args)
	}
	fi = h.get(fi.Name)
	wantResharding(t, fi, metav1.ConditionTrue, v1alpha1.ReasonProvisioningShards, "growing from 2 to 3 shards: waiting for the new shards' ingesters: grow-ingester-2")
	if r := condition(t, fi, v1alpha1.ConditionReady); r.Status != metav1.ConditionFalse {
		t.Errorf("Ready while the new ingester starts = %+v", r)
	}
	if e := h.shardMapEntry(fi.Name); e.Revision() != first.Revision() {
		t.Errorf("the shard map was written (revision %d → %d) before the new shard's ingester was available", first.Revision(), e.Revision())
	}

	// The ingester is up; analytics, whose template changed, has not rolled out yet.
	h.markDeploymentsReady("grow-ingester-2")
	h.mustReconcile(fi.Name)
	wantResharding(t, h.get(fi.Name), metav1.ConditionTrue, v1alpha1.ReasonWaitingForAnalytics, "grow-analytics rolling out generation")
	if e := h.shardMapEntry(fi.Name); e.Revision() != first.Revision() {
		t.Errorf("the shard map was written before analytics rolled out")
	}

	// Everything is up: the version is written, to take effect the lead after the write.
	h.markDeploymentsReady()
	beforeWrite := time.Now()
	res := h.mustReconcile(fi.Name)
	written := h.shardMapEntry(fi.Name)
	m := h.checkGrownMap(fi.Name, written, beforeWrite)
	if res.RequeueAfter <= 0 || res.RequeueAfter > 31*time.Second {
		t.Errorf("RequeueAfter = %v, want the cutover, within the 30s lead", res.RequeueAfter)
	}
	fi = h.get(fi.Name)
	from := m.Versions[1].From.UTC().Format(time.RFC3339Nano)
	wantResharding(t, fi, metav1.ConditionTrue, v1alpha1.ReasonVersionWritten, "shard-map version 2 written: readings stamped from "+from+" on are placed on 3 shards")
	if fi.Status.ShardCount != 3 || fi.Status.ShardMapVersions != 2 || fi.Status.ShardMap.Versions[1].From != from || fi.Status.ShardMap.Versions[1].Shards != 3 {
		t.Errorf("status = %d shard(s), shard map %d version(s) %+v", fi.Status.ShardCount, fi.Status.ShardMapVersions, fi.Status.ShardMap)
	}
	var cm corev1.ConfigMap
	if err := h.c.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "grow-shardmap"}, &cm); err != nil || cm.Data["shardmap.json"] != string(written.Value()) {
		t.Errorf("config map = %v (%v), want the map in NATS %s", cm.Data, err, written.Value())
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, "Normal ShardMapGrown shard-map version 2 written") {
		t.Errorf("events = %s, want %s", ev, EventShardMapGrown)
	}

	// A pass that follows, even one that finds the status of before the write (the pass
	// that wrote may have failed before writing its status), writes no version again.
	h.mustReconcile(fi.Name)
	h.rewindResharding(fi.Name)
	h.mustReconcile(fi.Name)
	if e := h.shardMapEntry(fi.Name); e.Revision() != written.Revision() {
		t.Errorf("the shard map was written again (revision %d → %d)", written.Revision(), e.Revision())
	}
	wantResharding(t, h.get(fi.Name), metav1.ConditionTrue, v1alpha1.ReasonVersionWritten, "version 2 written")

	// Once the version is in force, the growth is complete.
	h.r.Now = func() time.Time { return time.Now().Add(time.Minute) }
	res = h.mustReconcile(fi.Name)
	fi = h.get(fi.Name)
	wantResharding(t, fi, metav1.ConditionFalse, v1alpha1.ReasonReshardingComplete, "all 3 shards spec.shards lists (2 version(s))")
	if res.RequeueAfter < 5*time.Minute {
		t.Errorf("RequeueAfter = %v once complete, want the resync", res.RequeueAfter)
	}
	if r := condition(t, fi, v1alpha1.ConditionReady); r.Status != metav1.ConditionTrue {
		t.Errorf("Ready after the growth = %+v", r)
	}
	cols := h.printerColumns(fi.Name)
	if cols["SHARDS"] != "3" || cols["MAP VERSION"] != "2" || cols["READY"] != "True" || cols["RESHARDING"] != "Complete" {
		t.Errorf("kubectl get fi -o wide = %v, want 3 shards, map version 2, Ready and Resharding Complete", cols)
	}
}

// printerColumns runs `kubectl get fi NAME -o wide` and returns its columns by header.
func (h *harness) printerColumns(name string) map[string]string {
	h.t.Helper()
	out := run(h.t, nil, kube.Kubectl, "--kubeconfig", kube.Kubeconfig, "-n", h.ns, "get", "fi", name, "-o", "wide")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		h.t.Fatalf("kubectl get fi:\n%s", out)
	}
	header := strings.Fields(strings.ReplaceAll(lines[0], "MAP VERSION", "MAP_VERSION"))
	values := strings.Fields(lines[1])
	cols := map[string]string{}
	for i, k := range header {
		if i < len(values) {
			cols[strings.ReplaceAll(k, "_", " ")] = values[i]
		}
	}
	return cols
}

// checkGrownMap checks that the shard map entry holds a second version for 3 shards that
// takes effect at least the 30s default lead after writtenAfter, and returns the map.
func (h *harness) checkGrownMap(fleet string, e jetstream.KeyValueEntry, writtenAfter time.Time) *placement.ShardMap {
	h.t.Helper()
	m, err := placement.ParseShardMap(e.Value())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(m.Versions) != 2 || m.Shards() != 3 || m.Versions[0].Shards != 2 {
		h.t.Fatalf("shard map of %s = %s, want a second version for 3 shards", fleet, e.Value())
	}
	if from := m.Versions[1].From; from.Before(writtenAfter.Add(30 * time.Second)) {
		h.t.Errorf("the new version takes effect at %v, less than the 30s lead after %v", from, writtenAfter)
	}
	return m
}

// rewindResharding writes back the status of a pass before the version was written, as if
// the pass that wrote it had failed before its status write.
func (h *harness) rewindResharding(name string) {
	h.t.Helper()
	fi := h.get(name)
	base := fi.DeepCopy()
	meta.SetStatusCondition(&fi.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionResharding, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonWaitingForAnalytics, Message: "waiting", ObservedGeneration: fi.Generation})
	fi.Status.ShardMapVersions = 1
	fi.Status.ShardMap.Versions = fi.Status.ShardMap.Versions[:1]
	if err := h.c.Status().Patch(h.ctx, fi, client.MergeFrom(base)); err != nil {
		h.t.Fatalf("rewinding the status: %v", err)
	}
}

// A fleet re-created with fewer shards over a shard map that a former one grew is told so:
// the map is not shrunk, no version is written, Ready says what to do; deleting it removes
// the streams of every shard the map names.
func TestAShardMapAheadOfTheSpecIsReportedAndNeverShrunk(t *testing.T) {
	h := newHarness(t)
	fi := h.create(h.fleetIngestion("ahead", 2, func(fi *v1alpha1.FleetIngestion) { fi.Spec.DeletionPolicy = v1alpha1.DeletionPolicyDelete }))
	h.mustReconcile(fi.Name)
	three := ingester.Topology{Namespace: h.ns, Fleet: fi.Name, Shards: 3}
	if _, err := ingester.EnsureStreams(h.ctx, h.js, three, ingester.StreamOptions{MaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := ingester.GrowShardMap(h.ctx, h.js, three, 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	grown := h.shardMapEntry(fi.Name)
	h.markDeploymentsReady()
	h.drainEvents()

	h.mustReconcile(fi.Name)
	fi = h.get(fi.Name)
	wantResharding(t, fi, metav1.ConditionFalse, v1alpha1.ReasonShardMapAhead, "places readings on 3 shards but spec.shards lists 2: list shards 2..2 again")
	if r := condition(t, fi, v1alpha1.ConditionReady); r.Status != metav1.ConditionFalse || r.Reason != v1alpha1.ReasonShardMapAhead {
		t.Errorf("Ready = %+v, want False/%s", r, v1alpha1.ReasonShardMapAhead)
	}
	if fi.Status.ShardCount != 2 || fi.Status.ShardMapVersions != 2 {
		t.Errorf("status = %d shard(s), %d shard-map version(s)", fi.Status.ShardCount, fi.Status.ShardMapVersions)
	}
	if e := h.shardMapEntry(fi.Name); e.Revision() != grown.Revision() {
		t.Errorf("the shard map was written (revision %d → %d)", grown.Revision(), e.Revision())
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, "Warning ShardMapAhead") {
		t.Errorf("events = %s, want %s", ev, EventShardMapAhead)
	}

	if err := h.c.Delete(h.ctx, fi); err != nil {
		t.Fatal(err)
	}
	h.mustReconcile(fi.Name)
	for _, s := range []string{three.Stream(0), three.Stream(1), three.Stream(2), three.DeadLetterStream()} {
		if _, err := h.js.Stream(h.ctx, s); err == nil {
			t.Errorf("stream %s left after the fleet was deleted", s)
		}
	}
	if ev := strings.Join(h.drainEvents(), "\n"); !strings.Contains(ev, "deleted the shard streams "+three.Stream(0)+".."+three.Stream(2)) {
		t.Errorf("events = %s, want the deletion of the 3 shard streams", ev)
	}
}
