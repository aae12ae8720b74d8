package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FleetIngestionSpec is the desired state of one fleet's ingestion: its NATS streams, its
// Postgres shards and the gateway, ingester and analytics workloads in front of them.
type FleetIngestionSpec struct {
	// Image is the fleetingest container image every component runs (the gateway, the
	// ingesters with their migrate init container, and analytics). Empty means the image the
	// operator was started with (its --default-image flag).
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of every component's containers. Default IfNotPresent.
	// +optional
	// +kubebuilder:default=IfNotPresent
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// NATS is the JetStream server that carries the fleet's readings and vehicle mappings.
	// +required
	NATS NATSSpec `json:"nats"`

	// Shards are the Postgres databases that hold the fleet's history, one ingester each; a
	// shard's index is its position in the list. The list may be appended to: the operator
	// then provisions the new shards' streams and ingesters, rolls analytics onto every
	// shard's DSN and, once they are up, appends a version to the shard map that gives the
	// new shards their share of the slots for readings stamped from a short lead time on
	// (the Resharding condition reports the progress). Nothing stored moves. Shards cannot be
	// removed, reordered or inserted before others: a shard's readings stay where the shard
	// map placed them, and shrinking needs a copy-based drain that is not implemented. An
	// entry may be pointed in place at a Secret that no entry named before (the same
	// database moved, or its credentials in a new Secret).
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="size(self) >= size(oldSelf)",message="shards cannot be removed: shrinking a fleet needs a copy-based drain of the leaving shards' readings, which is not implemented; shards may only be appended"
	// +kubebuilder:validation:XValidation:rule="size(self) < size(oldSelf) || (oldSelf.all(i, s, self[i] == s || !(self[i] in oldSelf)) && self.all(i, s, i < size(oldSelf) || !(s in oldSelf)))",message="shards cannot be reordered or inserted before others: a shard's index places its readings; append new shards at the end of the list"
	Shards []ShardSpec `json:"shards"`

	// Gateway is the HTTP front door that validates readings and publishes them to the
	// shards' streams.
	// +optional
	// +kubebuilder:default={}
	Gateway GatewaySpec `json:"gateway,omitempty"`

	// Ingester is applied to every shard's ingester Deployment, which moves readings from the
	// shard's stream into its Postgres database.
	// +optional
	// +kubebuilder:default={}
	Ingester ComponentSpec `json:"ingester,omitempty"`

	// Analytics is the Connect and REST query service that fans out over the shards.
	// +optional
	// +kubebuilder:default={}
	Analytics ComponentSpec `json:"analytics,omitempty"`

	// Auth is how callers prove who they are. Devices present a device token to the gateway
	// and users a user token to analytics (roles: viewer reads, admin also changes
	// mappings); /healthz, /readyz and /metrics never ask for one. The verification keys
	// come from Secrets mounted whole into the pods and re-read every second, so a key added
	// to or removed from a Secret takes effect without restarting anything. Users may
	// instead come from an OIDC issuer. insecureNoAuth: true turns authentication off, for
	// experiments only.
	// +required
	Auth AuthSpec `json:"auth"`

	// Ingress, when set, exposes the gateway (and, when opted in, analytics) through an
	// Ingress. Unset means no Ingress: reach the Services from inside the cluster.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// NetworkPolicy restricts who can open connections to the fleet's pods. On by default:
	// one NetworkPolicy per component restricts ingress only (egress is left alone, since
	// NATS and Postgres usually live outside the namespace). The gateway admits its HTTP
	// port (8080) from ingressFrom; analytics admits its HTTP port from the fleet's own pods,
	// and from ingressFrom when spec.ingress.exposeAnalytics is true; every component admits
	// its metrics port (9090) from metricsFrom; nothing else gets in. Kubelet probes and
	// `kubectl port-forward` are not subject to NetworkPolicies. The policies take effect
	// only where the cluster's network plugin enforces NetworkPolicies.
	// +optional
	// +kubebuilder:default={}
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitempty"`

	// Retention of the fleet's data.
	// +optional
	// +kubebuilder:default={}
	Retention RetentionSpec `json:"retention,omitempty"`

	// DeletionPolicy says what happens to the fleet's NATS streams and mapping bucket when the
	// FleetIngestion is deleted: Retain (default) leaves them, Delete removes them (and every
	// reading not yet ingested). Postgres data is never touched. With Delete, if NATS cannot
	// be reached, the FleetIngestion stays (its finalizer is kept and an Event says why)
	// until it can, or until it is annotated fleetingest.io/abandon-streams=true, which lets
	// it go and leaves the streams in NATS.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// DeletionPolicy says what happens to a fleet's NATS streams when it is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain leaves streams and the mapping bucket in NATS.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete removes streams and the mapping bucket from NATS.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// NATSSpec is how the fleet reaches NATS and how its streams are sized.
type NATSSpec struct {
	// URL of the NATS server, or several separated by commas, e.g. "nats://nats.nats:4222".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.matches('^(nats|tls|ws|wss)://[^ ,]+(,(nats|tls|ws|wss)://[^ ,]+)*$')",message="must be one or more nats://, tls://, ws:// or wss:// URLs separated by commas"
	URL string `json:"url"`

	// CredentialsSecretRef names a Secret key holding a NATS credentials file (user JWT and
	// nkey seed). The operator reads it to provision streams, and every component mounts it.
	// Unset means NATS without authentication.
	// +optional
	CredentialsSecretRef *SecretKeyRef `json:"credentialsSecretRef,omitempty"`

	// StreamReplicas is the replica count of every shard stream and of the mapping bucket:
	// 1 for a single server, 3 in production. Default 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	StreamReplicas int32 `json:"streamReplicas,omitempty"`

	// MaxAge, when set, ages unconsumed messages out of the shard streams (a Go duration such
	// as "168h"). Unset keeps them until ingested: an aged-out message is lost data.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 168h, 90m or 1h30m"
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`

	// MaxBytesPerShard bounds each shard's stream. When a stream is full, the gateway refuses
	// new readings for that shard (HTTP 503) instead of dropping accepted ones. Default 1Gi.
	// +optional
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('1Mi')) || quantity(string(self)).compareTo(quantity('1Mi')) == 0",message="must be at least 1Mi"
	MaxBytesPerShard *resource.Quantity `json:"maxBytesPerShard,omitempty"`
}

// SecretKeyRef names one key of a Secret in the FleetIngestion's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// ShardSpec is one Postgres shard.
type ShardSpec struct {
	// DSNSecretRef names the Secret key that holds the shard's Postgres connection string
	// ("postgres://user:pass@host:5432/db?sslmode=require" or key=value form). It is mounted
	// as a file into the shard's ingester, its migrate init container and analytics.
	// +required
	DSNSecretRef SecretKeyRef `json:"dsnSecretRef"`
}

// ComponentSpec is how one component's pods run: their number, resources and environment,
// and where and as whom they run (PodOptions).
type ComponentSpec struct {
	// Replicas of the component's Deployment (for the ingester: of each shard's
	// Deployment; extra ingester replicas share the shard's durable consumer). Default 1. A
	// PodDisruptionBudget is created only above one replica, since one on a single replica
	// would block node drains.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Replicas *int32 `json:"replicas,omitempty"`

	// Resources of the component's main container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Env adds environment variables to the component's main container, e.g.
	// GOMEMLIMIT or GOMAXPROCS.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`

	PodOptions `json:",inline"`
}

// GatewaySpec is the gateway's component settings and its admission window.
type GatewaySpec struct {
	ComponentSpec `json:",inline"`

	// MaxLateness is how old a reading's timestamp may be when it arrives (a Go duration).
	// Older readings are refused with 422. Unset means the gateway's default (7 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 168h, 90m or 1h30m"
	MaxLateness *metav1.Duration `json:"maxLateness,omitempty"`
}

// IngressSpec exposes the fleet over HTTP(S).
type IngressSpec struct {
	// ClassName is the IngressClass to use. Unset means the cluster's default class.
	// +optional
	ClassName *string `json:"className,omitempty"`

	// Host is the DNS name the Ingress answers for, e.g. "telemetry.example.com". Unset
	// answers for every host.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host,omitempty"`

	// TLSSecretName names a kubernetes.io/tls Secret for Host. Unset serves plain HTTP.
	// +optional
	TLSSecretName string `json:"tlsSecretName,omitempty"`

	// Annotations are added to the Ingress, for the ingress controller's own settings.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// ExposeAnalytics also routes /v1/analytics, /v1/status and the Connect service's paths
	// to analytics, whose callers then reach it from outside the cluster with user tokens
	// (spec.auth.users). Off by default: only the gateway is published unless asked. With
	// spec.auth.insecureNoAuth, whoever reaches the Ingress could then read everything and
	// change mappings.
	// +optional
	ExposeAnalytics bool `json:"exposeAnalytics,omitempty"`
}

// RetentionSpec is how long data is kept.
type RetentionSpec struct {
	// History is how long raw readings are kept in each shard's history tables (a Go
	// duration; day partitions older than this are dropped). Default 2160h (90 days).
	// +optional
	// +kubebuilder:default="2160h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="must be a duration such as 2160h or 720h"
	History *metav1.Duration `json:"history,omitempty"`
}

// FleetIngestionStatus is what the operator last observed of the fleet.
type FleetIngestionStatus struct {
	// ObservedGeneration is the generation of the spec that was last reconciled in full.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, StreamsReady, ShardsReady, GatewayReady, AnalyticsReady,
	// AuthEnabled and Resharding.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ShardCount is the number of shards spec.shards lists.
	// +optional
	ShardCount int32 `json:"shardCount,omitempty"`

	// ReadyShards counts shards whose stream exists and whose ingester is ready.
	// +optional
	ReadyShards int32 `json:"readyShards,omitempty"`

	// Shards is the observed state of each shard.
	// +optional
	// +listType=map
	// +listMapKey=index
	Shards []ShardStatus `json:"shards,omitempty"`

	// ShardMap mirrors the fleet's shard map, which lives in the NATS KV bucket
	// fi_<namespace>_<name>_shardmap (key "map") that the gateways and analytics watch: the
	// slot-map versions in force over time. The ConfigMap <name>-shardmap holds the same map
	// as JSON (key shardmap.json). Unset until the operator has read it; kept as last read
	// while NATS cannot be reached.
	// +optional
	ShardMap *ShardMap `json:"shardMap,omitempty"`

	// ShardMapVersions is the number of versions of the shard map: 1 for a fleet that never
	// grew, one more for each growth (the Map Version column of kubectl get).
	// +optional
	ShardMapVersions int32 `json:"shardMapVersions,omitempty"`
}

// ShardStatus is the observed state of one shard.
type ShardStatus struct {
	// Index of the shard, 0-based.
	Index int32 `json:"index"`
	// Stream is the name of the shard's JetStream stream.
	Stream string `json:"stream"`
	// StreamBytes is the size of the stream's unconsumed messages.
	// +optional
	StreamBytes int64 `json:"streamBytes,omitempty"`
	// ConsumerLag is the number of messages the shard's ingester has not acknowledged yet.
	// +optional
	ConsumerLag int64 `json:"consumerLag,omitempty"`
	// ReadyReplicas of the shard's ingester Deployment.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
}

// ShardMap is placement over time: the slot maps in force, each from its From on, in the
// order they take effect. A reading is placed by the version in force at its own timestamp.
// Its JSON is the shard map's own (api/placement.ParseShardMap reads it).
type ShardMap struct {
	// Versions of the map, ordered by From; the first holds from the beginning.
	// +listType=atomic
	Versions []ShardMapVersion `json:"versions"`
}

// ShardMapVersion is one slot map and the time from which it places readings.
type ShardMapVersion struct {
	// From is the first reading timestamp the version places, until the next version's
	// From: an RFC 3339 time with the map's own precision (as in the shard map's JSON).
	// Unset for the first version, which holds from the beginning.
	// +optional
	From string `json:"from,omitempty"`
	// Shards is the number of shards the version places readings on.
	Shards int32 `json:"shards"`
	// Ranges assign every one of the 4096 slots to a shard: contiguous, inclusive ranges
	// sorted by start.
	// +listType=atomic
	Ranges []SlotRange `json:"ranges"`
}

// SlotRange is a contiguous, inclusive range of slots owned by one shard.
type SlotRange struct {
	// Shard owning the range, 0-based.
	Shard int32 `json:"shard"`
	// Start is the first slot of the range.
	Start int32 `json:"start"`
	// End is the last slot of the range (inclusive).
	End int32 `json:"end"`
}

// FleetIngestion runs one fleet's telemetry ingestion: NATS streams per shard, the vehicle
// mapping bucket, the gateway, one ingester per Postgres shard and analytics.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fi;fis,categories=fleetingest
// +kubebuilder:printcolumn:name="Shards",type=integer,JSONPath=`.status.shardCount`,description="Shards spec.shards lists"
// +kubebuilder:printcolumn:name="Map Version",type=integer,JSONPath=`.status.shardMapVersions`,description="Versions of the shard map: one more after each growth"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Resharding",type=string,JSONPath=`.status.conditions[?(@.type=="Resharding")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40",message="metadata.name must be a lowercase DNS label of at most 40 characters starting with a letter (no dots): it names NATS streams and subjects, Services and Deployments"
type FleetIngestion struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired fleet.
	// +required
	Spec FleetIngestionSpec `json:"spec"`

	// Status is the fleet as last observed by the operator.
	// +optional
	Status FleetIngestionStatus `json:"status,omitempty"`
}

// FleetIngestionList is a list of FleetIngestions.
//
// +kubebuilder:object:root=true
type FleetIngestionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the FleetIngestions.
	Items []FleetIngestion `json:"items"`
}
