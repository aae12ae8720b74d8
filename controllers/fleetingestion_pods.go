package controllers

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

// nonRootUID is the distroless "nonroot" user the image runs as.
const nonRootUID int64 = 65532

// podSpec describes one component's pod; podTemplate turns it into a hardened template.
type podSpec struct {
	component string
	shard     int // -1 for components that are not per shard
	spec      v1alpha1.ComponentSpec
	args      []string
	// volumes and mounts beyond /tmp and the NATS credentials.
	volumes []*corev1ac.VolumeApplyConfiguration
	mounts  []*corev1ac.VolumeMountApplyConfiguration
	// init containers run before the main container, with the same image and hardening.
	initArgs [][]string
	// secrets are the Secrets the pods mount (podSecrets); checksum digests the content of
	// those read at start (withSecrets), and rolls the pods when it changes.
	secrets  []mountedSecret
	checksum string
}

// withSecrets returns p with the checksum of what its pods read at start from the Secrets
// observed (name → Secret, nil when missing).
func (p podSpec) withSecrets(secrets map[string]*corev1.Secret) podSpec {
	p.checksum = secretsChecksum(p.secrets, secrets)
	return p
}

// ownerReference makes the FleetIngestion the controller owner of an object, so deleting
// it garbage-collects everything it made.
func ownerReference(f fleet) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).
		WithKind("FleetIngestion").
		WithName(f.Name).
		WithUID(f.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// podTemplate is a component's pod: non-root, read-only root filesystem, no privilege
// escalation, no capabilities, probes on /healthz and /readyz, scraped by Prometheus on the
// metrics port, placed and labelled as the spec's PodOptions say. Its only checksum is that
// of the DSNs and NATS credentials (AnnotationSecretsChecksum), which the processes read
// once: the verification keys are re-read while running, so rotating them rolls nothing.
func podTemplate(f fleet, p podSpec) *corev1ac.PodTemplateSpecApplyConfiguration {
	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName("tmp").WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resourceQuantity("256Mi"))),
	}
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName("tmp").WithMountPath(tmpDir),
	}
	if f.natsCreds {
		ref := f.Spec.NATS.CredentialsSecretRef
		volumes = append(volumes, secretKeyVolume("nats-creds", ref.Name, ref.Key, "creds"))
		mounts = append(mounts, corev1ac.VolumeMount().WithName("nats-creds").WithMountPath(natsCredsDir).WithReadOnly(true))
	}
	volumes = append(volumes, p.volumes...)
	mounts = append(mounts, p.mounts...)

	main := container(f, p.component, p.args, mounts).
		WithPorts(
			corev1ac.ContainerPort().WithName(httpPortName).WithContainerPort(httpPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName(metricsPortName).WithContainerPort(metricsPort).WithProtocol(corev1.ProtocolTCP)).
		WithLivenessProbe(httpProbe("/healthz").WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(httpProbe("/readyz").WithPeriodSeconds(5).WithFailureThreshold(2)).
		WithStartupProbe(httpProbe("/healthz").WithPeriodSeconds(2).WithFailureThreshold(60)).
		WithResources(resourceRequirements(p.spec.Resources)).
		WithEnv(envVars(p.spec.Env)...)

	spec := corev1ac.PodSpec().
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(30).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(nonRootUID).
			WithRunAsGroup(nonRootUID).
			WithFSGroup(nonRootUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumes(volumes...).
		WithContainers(main)
	withPodOptions(spec, p.spec.PodOptions, topologySpread(f, p))
	for i, args := range p.initArgs {
		name := args[0]
		if len(p.initArgs) > 1 {
			name = fmt.Sprintf("%s-%d", args[0], i)
		}
		spec.WithInitContainers(container(f, name, args, mounts).
			WithResources(resourceRequirements(p.spec.Resources)))
	}

	return corev1ac.PodTemplateSpec().
		WithLabels(podLabels(f, p)).
		WithAnnotations(podAnnotations(p)).
		WithSpec(spec)
}

// reservedAnnotationPrefix starts the pod annotations only the operator sets.
const reservedAnnotationPrefix = "fleetingest.io/"

// podLabels are the spec's extra pod labels under the operator's own, which always win: the
// Deployment's selector and the Services, PodDisruptionBudgets and NetworkPolicies select
// the pods by them.
func podLabels(f fleet, p podSpec) map[string]string {
	l := map[string]string{}
	maps.Copy(l, p.spec.PodLabels)
	maps.Copy(l, componentLabels(f, p.component, p.shard))
	return l
}

// podAnnotations are the Prometheus scrape annotations, the spec's extra annotations (which
// may replace those) and the Secrets' checksum (which none may set).
func podAnnotations(p podSpec) map[string]string {
	a := map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   fmt.Sprint(metricsPort),
		"prometheus.io/path":   "/metrics",
	}
	for k, v := range p.spec.PodAnnotations {
		if !strings.HasPrefix(k, reservedAnnotationPrefix) {
			a[k] = v
		}
	}
	if p.checksum != "" {
		a[AnnotationSecretsChecksum] = p.checksum
	}
	return a
}

// withPodOptions sets where and as whom the pods run: pull secrets, ServiceAccount,
// scheduling constraints and priority. The ServiceAccount token stays unmounted.
func withPodOptions(spec *corev1ac.PodSpecApplyConfiguration, o v1alpha1.PodOptions, spread []corev1.TopologySpreadConstraint) {
	for _, s := range o.ImagePullSecrets {
		spec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s.Name))
	}
	if o.ServiceAccountName != "" {
		// Also its deprecated alias, which the API server copies the name into: were it left
		// to nobody, it would bring the name back after the spec stops naming an account.
		spec.WithServiceAccountName(o.ServiceAccountName).WithDeprecatedServiceAccount(o.ServiceAccountName)
	}
	if len(o.NodeSelector) > 0 {
		spec.WithNodeSelector(o.NodeSelector)
	}
	for _, t := range o.Tolerations {
		spec.WithTolerations(applyConfiguration[corev1ac.TolerationApplyConfiguration](t))
	}
	if o.Affinity != nil {
		spec.WithAffinity(applyConfiguration[corev1ac.AffinityApplyConfiguration](o.Affinity))
	}
	for _, c := range spread {
		spec.WithTopologySpreadConstraints(applyConfiguration[corev1ac.TopologySpreadConstraintApplyConfiguration](c))
	}
	if o.PriorityClassName != "" {
		spec.WithPriorityClassName(o.PriorityClassName)
	}
}

// topologySpread is the spec's topology spread constraints or, when it gives none and the
// component runs more than one replica, a spread of its pods (one shard's, for an
// ingester) over zones and nodes that never keeps a pod from being scheduled.
func topologySpread(f fleet, p podSpec) []corev1.TopologySpreadConstraint {
	if c := p.spec.TopologySpreadConstraints; len(c) > 0 {
		return c
	}
	if replicas(p.spec) < 2 {
		return nil
	}
	spread := func(key string) corev1.TopologySpreadConstraint {
		return corev1.TopologySpreadConstraint{
			MaxSkew:           1,
			TopologyKey:       key,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: selectorLabels(f, p.component, p.shard)},
		}
	}
	return []corev1.TopologySpreadConstraint{spread(corev1.LabelTopologyZone), spread(corev1.LabelHostname)}
}

// container is a hardened container running the fleet's image with args.
func container(f fleet, name string, args []string, mounts []*corev1ac.VolumeMountApplyConfiguration) *corev1ac.ContainerApplyConfiguration {
	policy := f.Spec.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
	}
	return corev1ac.Container().
		WithName(name).
		WithImage(f.image).
		WithImagePullPolicy(policy).
		WithArgs(args...).
		WithVolumeMounts(mounts...).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
}

func httpProbe(path string) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().WithHTTPGet(corev1ac.HTTPGetAction().
		WithPath(path).
		WithPort(intstr.FromString(httpPortName))).
		WithTimeoutSeconds(3)
}

// secretKeyVolume projects one key of a Secret as the file `file`, readable by the
// non-root user only.
func secretKeyVolume(volume, secret, key, file string) *corev1ac.VolumeApplyConfiguration {
	return corev1ac.Volume().WithName(volume).WithSecret(corev1ac.SecretVolumeSource().
		WithSecretName(secret).
		WithDefaultMode(0o440).
		WithItems(corev1ac.KeyToPath().WithKey(key).WithPath(file)))
}

// secretVolume mounts a whole Secret, each key a file, readable by the non-root user only.
// Whole (never one key by subPath) so that kubelet swaps in a changed Secret.
func secretVolume(volume, secret string) *corev1ac.VolumeApplyConfiguration {
	return corev1ac.Volume().WithName(volume).WithSecret(corev1ac.SecretVolumeSource().
		WithSecretName(secret).
		WithDefaultMode(0o440))
}

// readOnlyMount mounts a volume read-only at dir.
func readOnlyMount(volume, dir string) *corev1ac.VolumeMountApplyConfiguration {
	return corev1ac.VolumeMount().WithName(volume).WithMountPath(dir).WithReadOnly(true)
}

// resourceRequirements converts the spec's resources into their apply configuration.
func resourceRequirements(r corev1.ResourceRequirements) *corev1ac.ResourceRequirementsApplyConfiguration {
	ac := corev1ac.ResourceRequirements()
	if len(r.Requests) > 0 {
		ac.WithRequests(r.Requests)
	}
	if len(r.Limits) > 0 {
		ac.WithLimits(r.Limits)
	}
	return ac
}

// envVars converts the spec's extra environment into apply configurations.
func envVars(env []corev1.EnvVar) []*corev1ac.EnvVarApplyConfiguration {
	out := make([]*corev1ac.EnvVarApplyConfiguration, 0, len(env))
	for _, e := range env {
		out = append(out, applyConfiguration[corev1ac.EnvVarApplyConfiguration](e))
	}
	return out
}

// applyConfiguration converts an API object into its apply configuration. Both share one
// JSON form, so the conversion goes through it and keeps every field.
func applyConfiguration[AC any](obj any) *AC {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", obj, err)) // API types always encode
	}
	ac := new(AC)
	if err := json.Unmarshal(b, ac); err != nil {
		panic(fmt.Sprintf("decoding %T into %T: %v", obj, ac, err))
	}
	return ac
}

func resourceQuantity(s string) resource.Quantity { return resource.MustParse(s) }
