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
	// ConditionAuthEnabled is true when the gateway asks devices for tokens and analytics
	// asks users for tokens; false (reason InsecureNoAuth) when spec.auth.insecureNoAuth
	// turned that off. It informs and does not count towards Ready.
	ConditionAuthEnabled = "AuthEnabled"
	// ConditionResharding reports a growth of the fleet: true from shards appended to
	// spec.shards until the shard-map version that places readings on them takes effect,
	// false (reason Complete) once the shard map places readings on every shard the spec
	// lists, unknown while the map cannot be read from NATS (the reason says why, as
	// StreamsReady's). It informs and does not count towards Ready, except with reason
	// ShardMapAhead, which a person must resolve.
	ConditionResharding = "Resharding"
)

// Reasons of the Resharding condition. A growth passes through ProvisioningShards,
// WaitingForAnalytics and VersionWritten (status True) to Complete (status False).
const (
	// ReasonProvisioningShards: spec.shards lists more shards than the shard map places
	// readings on; the new shards' streams are provisioned and the operator waits for their
	// ingester Deployments to be available (the message names them).
	ReasonProvisioningShards = "ProvisioningShards"
	// ReasonWaitingForAnalytics: the new shards' ingesters are available; the operator waits
	// for the analytics Deployment to roll out with every shard's DSN, so that no replica
	// is asked about a shard it cannot read.
	ReasonWaitingForAnalytics = "WaitingForAnalytics"
	// ReasonVersionWritten: the shard-map version for the new count is written; readings
	// stamped from its from time on (the operator's --shard-map-lead after the write) go
	// to the new shards. The message names that time.
	ReasonVersionWritten = "VersionWritten"
	// ReasonReshardingComplete: the shard map places readings on every shard spec.shards
	// lists, from a time that has come.
	ReasonReshardingComplete = "Complete"
	// ReasonShardMapWriteFailed: writing the new shard-map version failed (the message says
	// why); the operator retries with backoff. The write is compare-and-set and only made
	// while the map has fewer shards than the spec, so a version is never written twice.
	ReasonShardMapWriteFailed = "ShardMapWriteFailed"
	// ReasonShardMapAhead: the shard map in NATS already places readings on more shards than
	// spec.shards lists (a fleet re-created with fewer shards over the NATS state of an
	// earlier one, with deletionPolicy Retain). The operator writes no version and removes
	// nothing; readings the map places on the missing shards are refused until they are
	// listed again (shrinking is not supported). Ready is false with this reason.
	ReasonShardMapAhead = "ShardMapAhead"
)

// Condition reasons.
const (
	// ReasonReconciled: the condition's objects match the spec and are available.
	ReasonReconciled = "Reconciled"
	// ReasonProvisioned: streams, consumers and the bucket match the spec.
	ReasonProvisioned = "Provisioned"
	// ReasonNATSUnreachable: the operator could not connect to NATS; it retries with backoff.
	ReasonNATSUnreachable = "NATSUnreachable"
	// ReasonCredentialsUnavailable: the NATS credentials Secret exists but holds nothing
	// under its key, so the operator cannot reach NATS (a missing Secret is SecretNotFound).
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
	// ReasonComponentsNotReady: Ready is false because another condition is. When that
	// condition's reason asks a person to act (SecretNotFound, SecretInvalid,
	// CredentialsUnavailable), Ready takes that reason and its message instead.
	ReasonComponentsNotReady = "ComponentsNotReady"
	// ReasonDeleting: the FleetIngestion is being deleted.
	ReasonDeleting = "Deleting"
	// ReasonSecretNotFound: a Secret the spec names (a shard's DSN, the NATS credentials,
	// the auth keys) does not exist, so the pods that mount it cannot start; the message
	// names it and the spec field. The operator checks again with backoff.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretInvalid: a Secret the spec names exists but lacks what the pods need: the
	// key a DSN or credentials reference names (kubelet then cannot mount it), or, in a
	// Secret of verification keys, any "<kid>.pub" key (the component refuses to start);
	// the message names it.
	ReasonSecretInvalid = "SecretInvalid"
	// ReasonTokensRequired: AuthEnabled is true; the message says where the keys come from.
	ReasonTokensRequired = "TokensRequired"
	// ReasonInsecureNoAuth: AuthEnabled is false because spec.auth.insecureNoAuth is true.
	ReasonInsecureNoAuth = "InsecureNoAuth"
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
