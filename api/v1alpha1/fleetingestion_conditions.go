package v1alpha1

// Condition types of a FleetIngestion's status.
const (
	// ConditionReady is true when every other condition is true: streams provisioned, every
	// shard's ingester, the gateway and analytics available.
	ConditionReady = "Ready"
	// ConditionStreamsReady is true when every shard stream, its durable consumer and the
	// mapping bucket exist in NATS with the desired configuration.
	ConditionStreamsReady = "StreamsReady"
	// ConditionShardsReady is true when every shard's ingester Deployment is available.
	ConditionShardsReady = "ShardsReady"
	// ConditionGatewayReady is true when the gateway Deployment is available.
	ConditionGatewayReady = "GatewayReady"
	// ConditionAnalyticsReady is true when the analytics Deployment is available.
	ConditionAnalyticsReady = "AnalyticsReady"
)

// Condition reasons.
const (
	// ReasonReconciled: the condition's objects match the spec and are available.
	ReasonReconciled = "Reconciled"
	// ReasonProvisioned: streams, consumers and the bucket match the spec.
	ReasonProvisioned = "Provisioned"
	// ReasonNATSUnreachable: the operator could not connect to NATS; it retries with backoff.
	ReasonNATSUnreachable = "NATSUnreachable"
	// ReasonCredentialsUnavailable: the NATS credentials Secret or key is missing.
	ReasonCredentialsUnavailable = "CredentialsUnavailable"
	// ReasonProvisioningFailed: NATS answered but refused to create or update a stream,
	// consumer or bucket (the message says which and why).
	ReasonProvisioningFailed = "ProvisioningFailed"
	// ReasonApplyFailed: the API server refused one of the fleet's Kubernetes objects.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonDeploymentsProgressing: a Deployment has fewer ready replicas than desired, or
	// its controller has not yet observed the latest spec.
	ReasonDeploymentsProgressing = "Progressing"
	// ReasonDeploymentsAvailable: every Deployment has all its replicas ready.
	ReasonDeploymentsAvailable = "Available"
	// ReasonComponentsNotReady: Ready is false because another condition is.
	ReasonComponentsNotReady = "ComponentsNotReady"
	// ReasonDeleting: the FleetIngestion is being deleted.
	ReasonDeleting = "Deleting"
)

const (
	// Finalizer holds a FleetIngestion until its streams are handled per its DeletionPolicy.
	Finalizer = "fleetingest.io/streams"

	// AnnotationAbandonStreams set to "true" on a FleetIngestion being deleted with
	// deletionPolicy Delete, lets the operator remove its finalizer without deleting the
	// streams: for when NATS is gone for good. The streams, if any remain, are left to an
	// administrator.
	AnnotationAbandonStreams = "fleetingest.io/abandon-streams"
)

// ReasonInvalidSpec says the spec passed the API server's validation but cannot be acted on
// (the message says why); fix the spec.
const ReasonInvalidSpec = "InvalidSpec"
