package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Image is what a node runs for an image reference: a local executable as its entrypoint,
// and the image's USER, which processes run as when the pod does not say.
type Image struct {
	// Executable is the entrypoint's path on this machine.
	Executable string
	// UID and GID are the image's USER (e.g. distroless nonroot's 65532).
	UID, GID int64
}

// Config of a Node. Client, Images, Dir and Namespaces are required.
type Config struct {
	// Client reaches the API server as an administrator: it reads Deployments, Secrets,
	// ConfigMaps, ServiceAccounts and PriorityClasses, writes Deployment status and deletes
	// objects whose owners are gone.
	Client client.Client
	// Images are the images the node has, by reference; a pod with any other image waits
	// (as ErrImagePull would).
	Images map[string]Image
	// Dir holds the pods' folders. It must be traversable by the pods' users.
	Dir string
	// Namespaces whose Deployments run on the node.
	Namespaces []string
	// ServiceAccountKubeconfig returns a kubeconfig holding a ServiceAccount's credentials,
	// for pods that mount its token. Default none: such pods get no KUBECONFIG.
	ServiceAccountKubeconfig func(ctx context.Context, namespace, name string) ([]byte, error)
	// SyncInterval is how often Deployments are compared with the pods. Default 200ms.
	SyncInterval time.Duration
	// ProbeInterval is how often startup and readiness probes run (liveness probes every
	// fifth time). Default 200ms.
	ProbeInterval time.Duration
	// VolumeRefresh is how often mounted Secrets and ConfigMaps are compared with the API
	// server's. Default 1s.
	VolumeRefresh time.Duration
	// MaxGracePeriod caps terminationGracePeriodSeconds. Default 10s.
	MaxGracePeriod time.Duration
	// Log receives what the node does. Default: discarded.
	Log *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Client == nil || len(c.Images) == 0 || c.Dir == "" || len(c.Namespaces) == 0 {
		return c, errors.New("cluster: Client, Images, Dir and Namespaces are required")
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 200 * time.Millisecond
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 200 * time.Millisecond
	}
	if c.VolumeRefresh <= 0 {
		c.VolumeRefresh = time.Second
	}
	if c.MaxGracePeriod <= 0 {
		c.MaxGracePeriod = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Node runs the Deployments of its namespaces as local processes. Make one with New and
// run it with Run.
type Node struct {
	cfg Config

	mu   sync.Mutex
	pods map[string]*Pod // by namespace/name
	seq  int
	all  sync.WaitGroup
}

// New returns a node that runs nothing until Run.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: creating %s: %w", cfg.Dir, err)
	}
	return &Node{cfg: cfg, pods: map[string]*Pod{}}, nil
}

// Run keeps the pods in line with the Deployments until ctx is done, then stops every pod
// and waits for their processes to exit.
func (n *Node) Run(ctx context.Context) error {
	defer n.all.Wait()
	defer n.stopAll()
	t := time.NewTicker(n.cfg.SyncInterval)
	defer t.Stop()
	for {
		if err := n.sync(ctx); err != nil && ctx.Err() == nil {
			n.cfg.Log.Warn("sync", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Pods are the running pods of a Deployment, oldest first.
func (n *Node) Pods(namespace, deployment string) []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*Pod
	for _, p := range n.pods {
		if p.Namespace == namespace && p.Deployment == deployment {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// Describe tells every pod's state and the last lines of its containers' logs, for a test
// failure's message.
func (n *Node) Describe() string {
	n.mu.Lock()
	pods := make([]*Pod, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	n.mu.Unlock()
	sort.Slice(pods, func(i, j int) bool { return pods[i].seq < pods[j].seq })
	var b strings.Builder
	for _, p := range pods {
		b.WriteString(p.describe())
	}
	return b.String()
}

func (n *Node) sync(ctx context.Context) error {
	var errs []error
	for _, ns := range n.cfg.Namespaces {
		var deps appsv1.DeploymentList
		if err := n.cfg.Client.List(ctx, &deps, client.InNamespace(ns)); err != nil {
			errs = append(errs, fmt.Errorf("listing deployments of %s: %w", ns, err))
			continue
		}
		exists := map[string]bool{}
		for i := range deps.Items {
			d := &deps.Items[i]
			exists[d.Name] = true
			if err := n.syncDeployment(ctx, d); err != nil {
				errs = append(errs, err)
			}
		}
		for _, p := range n.podsOf(ns, func(p *Pod) bool { return !exists[p.Deployment] }) {
			n.stop(p)
		}
		if err := n.collectGarbage(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncDeployment starts and stops a Deployment's pods and writes its status: missing pods
// of the current template start at once, the old template's pods stop when as many current
// ones are ready as the Deployment wants.
func (n *Node) syncDeployment(ctx context.Context, d *appsv1.Deployment) error {
	hash := templateHash(&d.Spec.Template)
	want := int(ptr.Deref(d.Spec.Replicas, 1))
	if d.DeletionTimestamp != nil {
		want = 0
	}
	pods := n.podsOf(d.Namespace, func(p *Pod) bool { return p.Deployment == d.Name })
	var cur, old []*Pod
	for _, p := range pods {
		if p.TemplateHash == hash {
			cur = append(cur, p)
		} else {
			old = append(old, p)
		}
	}
	for len(cur) < want {
		cur = append(cur, n.start(ctx, d, hash))
	}
	for len(cur) > want {
		n.stop(cur[len(cur)-1])
		cur = cur[:len(cur)-1]
	}
	if ready(cur) >= want {
		for _, p := range old {
			n.stop(p)
		}
		old = nil
	}
	return n.writeStatus(ctx, d, cur, old, want)
}

func ready(pods []*Pod) int {
	k := 0
	for _, p := range pods {
		if p.Ready() {
			k++
		}
	}
	return k
}

// writeStatus writes what the Deployment controller would: replicas counted over every pod,
// updated ones of the current template, ready and available ones (no minReadySeconds), and
// the Available and Progressing conditions. Nothing is written when nothing changed.
func (n *Node) writeStatus(ctx context.Context, d *appsv1.Deployment, cur, old []*Pod, want int) error {
	all := slices.Concat(cur, old)
	readyAll := int32(ready(all))
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            int32(len(all)),
		UpdatedReplicas:     int32(len(cur)),
		ReadyReplicas:       readyAll,
		AvailableReplicas:   readyAll,
		UnavailableReplicas: max(int32(want)-readyAll, 0),
	}
	available := corev1.ConditionTrue
	availableReason := "MinimumReplicasAvailable"
	if readyAll < int32(want) {
		available, availableReason = corev1.ConditionFalse, "MinimumReplicasUnavailable"
	}
	progressReason := "NewReplicaSetAvailable"
	if len(old) > 0 || ready(cur) < want {
		progressReason = "ReplicaSetUpdated"
	}
	st.Conditions = []appsv1.DeploymentCondition{
		condition(d.Status.Conditions, appsv1.DeploymentAvailable, available, availableReason),
		condition(d.Status.Conditions, appsv1.DeploymentProgressing, corev1.ConditionTrue, progressReason),
	}
	if statusEqual(d.Status, st) {
		return nil
	}
	d.Status = st
	if err := n.cfg.Client.Status().Update(ctx, d); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the status of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return nil
}

// condition is a Deployment condition that keeps its transition time while its status
// stays.
func condition(old []appsv1.DeploymentCondition, typ appsv1.DeploymentConditionType, s corev1.ConditionStatus, reason string) appsv1.DeploymentCondition {
	c := appsv1.DeploymentCondition{Type: typ, Status: s, Reason: reason, Message: "emulated node"}
	for _, o := range old {
		if o.Type == typ && o.Status == s {
			c.LastTransitionTime, c.LastUpdateTime = o.LastTransitionTime, o.LastUpdateTime
			if o.Reason == reason {
				return c
			}
		}
	}
	now := metaNow()
	if c.LastTransitionTime.IsZero() {
		c.LastTransitionTime = now
	}
	c.LastUpdateTime = now
	return c
}

func statusEqual(a, b appsv1.DeploymentStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Replicas != b.Replicas || a.UpdatedReplicas != b.UpdatedReplicas ||
		a.ReadyReplicas != b.ReadyReplicas || a.AvailableReplicas != b.AvailableReplicas || a.UnavailableReplicas != b.UnavailableReplicas ||
		len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason {
			return false
		}
	}
	return true
}

// templateHash identifies a pod template, as the pod-template-hash label does.
func templateHash(t *corev1.PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("encoding a pod template: %v", err)) // API types always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

func (n *Node) podsOf(namespace string, keep func(*Pod) bool) []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*Pod
	for _, p := range n.pods {
		if p.Namespace == namespace && keep(p) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// start creates a pod of d's current template and starts running it.
func (n *Node) start(ctx context.Context, d *appsv1.Deployment, hash string) *Pod {
	n.mu.Lock()
	n.seq++
	seq := n.seq
	n.mu.Unlock()
	p := newPod(n, d, hash, seq)
	n.mu.Lock()
	n.pods[p.Namespace+"/"+p.Name] = p
	n.mu.Unlock()
	n.cfg.Log.Info("starting pod", "pod", p.Namespace+"/"+p.Name)
	podCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	n.all.Add(1)
	go func() {
		defer n.all.Done()
		p.run(podCtx)
	}()
	return p
}

// stop removes a pod from the node and stops its processes in the background.
func (n *Node) stop(p *Pod) {
	n.mu.Lock()
	delete(n.pods, p.Namespace+"/"+p.Name)
	n.mu.Unlock()
	n.cfg.Log.Info("stopping pod", "pod", p.Namespace+"/"+p.Name)
	p.cancel()
}

func (n *Node) stopAll() {
	n.mu.Lock()
	pods := make([]*Pod, 0, len(n.pods))
	for _, p := range n.pods {
		pods = append(pods, p)
	}
	n.mu.Unlock()
	for _, p := range pods {
		n.stop(p)
	}
}
