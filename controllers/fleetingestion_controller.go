package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// Least privilege: Deployments, Services and ConfigMaps are never deleted by the operator
// (garbage collection follows the owner references); Ingresses, PodDisruptionBudgets and
// NetworkPolicies are, when the spec stops asking for them. Secrets are only read, one by
// name, and never listed or watched. Every rule is on namespaced resources, so with
// --watch-namespaces the same rules go into one Role per watched namespace instead of a
// ClusterRole (charts/fleetingest, config/namespaced).
//
// +kubebuilder:rbac:groups=fleetingest.io,resources=fleetingestions,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=fleetingest.io,resources=fleetingestions/status,verbs=get;patch
// +kubebuilder:rbac:groups=fleetingest.io,resources=fleetingestions/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Config of the reconciler. Every field has a documented default (withDefaults).
type Config struct {
	// DefaultImage is the image of FleetIngestions that leave spec.image empty. Default
	// none: such a FleetIngestion is reported InvalidSpec.
	DefaultImage string
	// ResyncPeriod is how often a FleetIngestion is reconciled without any event, to put
	// back NATS state changed behind the operator's back (no watch sees it). Jittered by up
	// to +20% so fleets do not resync in step. Default 5m.
	ResyncPeriod time.Duration
	// NATSRequestTimeout bounds one pass's JetStream requests. Default 10s.
	NATSRequestTimeout time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the exponential backoff after a failed pass
	// (NATS unreachable, an apply refused). Defaults 1s and 2m.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// MaxConcurrentReconciles is the number of FleetIngestions reconciled at once. Default 2.
	MaxConcurrentReconciles int
	// ShardMapLead is how long after it is written a shard-map version takes effect: readings
	// stamped from then on are placed by it. It gives every gateway and analytics replica
	// time to see the version (they watch the map) before any reading is placed by it.
	// Default 30s.
	ShardMapLead time.Duration
	// Registerer receives the operator's metrics (the operator passes controller-runtime's
	// registry, which serves them beside its own). Default nil: not registered.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.ResyncPeriod <= 0 {
		c.ResyncPeriod = 5 * time.Minute
	}
	if c.NATSRequestTimeout <= 0 {
		c.NATSRequestTimeout = 10 * time.Second
	}
	if c.RetryBaseDelay <= 0 {
		c.RetryBaseDelay = time.Second
	}
	if c.RetryMaxDelay <= 0 {
		c.RetryMaxDelay = 2 * time.Minute
	}
	if c.MaxConcurrentReconciles <= 0 {
		c.MaxConcurrentReconciles = 2
	}
	if c.ShardMapLead <= 0 {
		c.ShardMapLead = 30 * time.Second
	}
	return c
}

// FleetIngestionReconciler turns a FleetIngestion into NATS streams and Kubernetes objects.
type FleetIngestionReconciler struct {
	// Client reads (from the cache, under the manager) and applies the fleet's objects.
	Client client.Client
	// APIReader reads Secrets straight from the API server, so the operator needs no
	// list/watch on Secrets.
	APIReader client.Reader
	// NATS hands out JetStream contexts.
	NATS NATSConnector
	// Recorder emits Events on FleetIngestions.
	Recorder events.EventRecorder
	// Log is the reconciler's logger.
	Log *slog.Logger
	// Now is the clock that stamps condition transitions. Default time.Now.
	Now func() time.Time

	cfg     Config
	metrics *metrics
}

// NewReconciler returns a reconciler with cfg's defaults filled in.
func NewReconciler(c client.Client, apiReader client.Reader, nats NATSConnector, rec events.EventRecorder, log *slog.Logger, cfg Config) *FleetIngestionReconciler {
	if log == nil {
		log = slog.Default()
	}
	return &FleetIngestionReconciler{Client: c, APIReader: apiReader, NATS: nats, Recorder: rec, Log: log, Now: time.Now, cfg: cfg.withDefaults(), metrics: newMetrics(cfg.Registerer)}
}

// ownedKinds are the kinds of object the operator applies for a fleet and watches.
func ownedKinds() []client.Object {
	return []client.Object{
		&appsv1.Deployment{},
		&corev1.Service{},
		&corev1.ConfigMap{},
		&networkingv1.Ingress{},
		&policyv1.PodDisruptionBudget{},
		&networkingv1.NetworkPolicy{},
	}
}

// SetupWithManager registers the reconciler: it watches FleetIngestions (changes to their
// spec, annotations or deletion: see specChanged) and the objects they control, and retries
// failed passes with exponential backoff.
func (r *FleetIngestionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("fleetingestion").
		For(&v1alpha1.FleetIngestion{}, builder.WithPredicates(specChanged()))
	for _, o := range ownedKinds() {
		b = b.Owns(o)
	}
	return b.WithOptions(controller.Options{
		MaxConcurrentReconciles: r.cfg.MaxConcurrentReconciles,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](r.cfg.RetryBaseDelay, r.cfg.RetryMaxDelay),
	}).Complete(r)
}

// specChanged passes the FleetIngestion updates a pass must follow: a new generation (the
// spec, or the deletion timestamp being set), changed annotations (such as
// fleetingest.io/abandon-streams, or any annotation a person changes to ask for a pass at
// once, e.g. after rotating a DSN Secret) and deletion. It drops updates of the status alone,
// which the operator writes itself: a pass that only rewrote a condition's message would
// otherwise start the next one at once, around the backoff that failed passes wait for.
// Creations and deletions always pass.
func specChanged() predicate.Predicate {
	return predicate.Or[client.Object](
		predicate.GenerationChangedPredicate{},
		predicate.AnnotationChangedPredicate{},
		predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectNew != nil && !e.ObjectNew.GetDeletionTimestamp().IsZero()
		}},
	)
}

// CacheOptions are the manager's cache settings for the reconciler. The cache holds only
// the objects the operator made (selected by label), not every Deployment, Service or
// ConfigMap of the cluster. With namespaces, it lists and watches those namespaces only, so
// the operator needs a Role in each of them and nothing cluster-wide; without, it watches
// every namespace. Blank names are ignored.
func CacheOptions(namespaces []string) cache.Options {
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{labelManagedBy: ManagedBy})}
	o := cache.Options{ByObject: map[client.Object]cache.ByObject{}}
	for _, k := range ownedKinds() {
		o.ByObject[k] = managed
	}
	for _, ns := range namespaces {
		if ns = strings.TrimSpace(ns); ns != "" {
			if o.DefaultNamespaces == nil {
				o.DefaultNamespaces = map[string]cache.Config{}
			}
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}

// Reconcile brings one FleetIngestion's streams and objects to its spec and reports what
// it observed, in one status write.
func (r *FleetIngestionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var fi v1alpha1.FleetIngestion
	if err := r.Client.Get(ctx, req.NamespacedName, &fi); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !fi.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, &fi)
	}
	if err := r.ensureFinalizer(ctx, &fi); err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(r.Now().Truncate(time.Second))
	f, err := resolveFleet(&fi, r.cfg.DefaultImage)
	if err != nil { // retrying cannot help: wait for the spec to change
		return ctrl.Result{}, r.writeStatus(ctx, &fi, invalidSpecStatus(fi.Status, fi.Generation, err, now))
	}

	obs, err := r.observe(ctx, f)
	if err != nil {
		return ctrl.Result{}, err
	}
	// Kubernetes objects are applied whether or not NATS answers: the pods wait for their
	// streams by themselves, and an outage must not hold back a spec change.
	streams := r.reconcileStreams(ctx, f, obs)
	if streams.err == nil {
		r.metrics.observeStreams(f.Namespace, f.Name, streams.provisioned, fi.Status.ObservedGeneration == 0)
	}
	applyErr := r.reconcileObjects(ctx, f, obs)
	shardMap := r.reconcileShardMap(ctx, f, obs, streams, applyErr)

	status := fleetStatus(f, fi.Status, obs, streams, shardMap, applyErr, now)
	r.recordEvents(&fi, passEvents(fi.Status, status, streams.provisioned, obs.rolled, shardMap.grown))
	if err := r.writeStatus(ctx, &fi, status); err != nil {
		return ctrl.Result{}, err
	}
	if err := errors.Join(streams.err, obs.secretsErr(), applyErr, shardMap.err); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.requeueAfter(shardMap)}, nil
}

// requeueAfter is the jittered resync period, or less when a shard-map version written
// takes effect sooner, so that the Resharding condition says Complete when it does.
func (r *FleetIngestionReconciler) requeueAfter(shardMap shardMapResult) time.Duration {
	d := wait.Jitter(r.cfg.ResyncPeriod, 0.2)
	if c := shardMap.untilCutover(r.Now()); c > 0 && c < d {
		return c
	}
	return d
}

// reconcileObjects applies the fleet's Kubernetes objects, phase by phase.
func (r *FleetIngestionReconciler) reconcileObjects(ctx context.Context, f fleet, obs *observed) error {
	for _, phase := range []func(context.Context, fleet, *observed) error{
		r.reconcileNetworkPolicies, // first, so that no new pod is ever open to the cluster
		r.reconcileShards,
		r.reconcileGateway,
		r.reconcileAnalytics,
		r.reconcileIngress,
	} {
		if err := phase(ctx, f, obs); err != nil {
			return err
		}
	}
	return nil
}

// ensureFinalizer adds the finalizer that holds the FleetIngestion until its streams are
// handled. A no-op once present.
func (r *FleetIngestionReconciler) ensureFinalizer(ctx context.Context, fi *v1alpha1.FleetIngestion) error {
	if controllerutil.ContainsFinalizer(fi, v1alpha1.Finalizer) {
		return nil
	}
	base := fi.DeepCopy()
	controllerutil.AddFinalizer(fi, v1alpha1.Finalizer)
	if err := r.Client.Patch(ctx, fi, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// writeStatus patches the status subresource when it differs from what is stored; an
// unchanged status writes nothing.
func (r *FleetIngestionReconciler) writeStatus(ctx context.Context, fi *v1alpha1.FleetIngestion, status v1alpha1.FleetIngestionStatus) error {
	if equality.Semantic.DeepEqual(fi.Status, status) {
		return nil
	}
	base := fi.DeepCopy()
	fi.Status = status
	if err := r.Client.Status().Patch(ctx, fi, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}
