package app

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/controllers"
)

// operatorOptions are the operator's flags.
type operatorOptions struct {
	kubeconfig              string
	defaultImage            string
	metricsAddr             string
	healthAddr              string
	leaderElect             bool
	leaderElectionNamespace string
	resyncPeriod            time.Duration
	natsTimeout             time.Duration
	maxConcurrentReconciles int
	watchNamespaces         []string
	shardMapLead            time.Duration
}

func newOperatorCommand() *cobra.Command {
	var o operatorOptions
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the FleetIngestion operator: NATS streams, Deployments, Services and Ingress from FleetIngestion resources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOperator(cmd, o, logger("operator"))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; default: in-cluster, then $KUBECONFIG, then ~/.kube/config")
	fs.StringVar(&o.defaultImage, "default-image", "", "image of FleetIngestions that leave spec.image empty (normally the operator's own image)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":8080", "address of the Prometheus /metrics endpoint (\"0\" disables it)")
	fs.StringVar(&o.healthAddr, "health-addr", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so that only one replica reconciles")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease; default: the pod's namespace (required out of cluster)")
	fs.DurationVar(&o.resyncPeriod, "resync-period", 5*time.Minute, "how often each FleetIngestion is re-checked against NATS without any event (jittered by up to 20%)")
	fs.DurationVar(&o.natsTimeout, "nats-timeout", 10*time.Second, "bound on one pass's JetStream requests")
	fs.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 2, "FleetIngestions reconciled at once")
	fs.StringSliceVar(&o.watchNamespaces, "watch-namespaces", nil, "namespaces whose FleetIngestions are reconciled, comma-separated (the operator then needs a Role in each, no ClusterRole); default: every namespace")
	fs.DurationVar(&o.shardMapLead, "shard-map-lead", 30*time.Second, "when spec.shards grows, how long after it is written the new shard-map version takes effect (time for every gateway and analytics replica to see it)")
	return cmd
}

// operatorScheme knows the core types the operator applies and the FleetIngestion.
func operatorScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func runOperator(cmd *cobra.Command, o operatorOptions, log *slog.Logger) error {
	ctx := cmd.Context()
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        operatorScheme(),
		Metrics:                       metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:        o.healthAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "fleetingest-operator.fleetingest.io",
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(o.watchNamespaces),
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	pool := controllers.NewNATSPool(5*time.Second, log)
	defer pool.Close()
	r := controllers.NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), pool, mgr.GetEventRecorder("fleetingest-operator"), log, controllers.Config{
		DefaultImage:            o.defaultImage,
		ResyncPeriod:            o.resyncPeriod,
		NATSRequestTimeout:      o.natsTimeout,
		MaxConcurrentReconciles: o.maxConcurrentReconciles,
		ShardMapLead:            o.shardMapLead,
		Registerer:              ctrlmetrics.Registry,
	})
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the FleetIngestion controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	log.Info("starting operator", "defaultImage", o.defaultImage, "leaderElect", o.leaderElect, "resyncPeriod", o.resyncPeriod, "watchNamespaces", o.watchNamespaces, "shardMapLead", o.shardMapLead)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the controller manager: %w", err)
	}
	return nil
}

// restConfig is the API server configuration from --kubeconfig, or controller-runtime's
// usual search (in-cluster, $KUBECONFIG, ~/.kube/config).
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("finding the Kubernetes API server: %w", err)
	}
	return cfg, nil
}
