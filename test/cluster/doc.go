// Package cluster plays, for tests against envtest (a kube-apiserver and etcd with no
// controllers and no nodes), the parts of a cluster that run workloads: a Node runs every
// Deployment of its namespaces as local processes, as kubelet would run their pods, writes
// their status as the Deployment controller would, and deletes objects whose owners are
// gone, as the garbage collector would. No container runtime is involved: an image is
// mapped to a local executable (the fleetingest binary, built once by the test).
//
// What a pod gets, and how it differs from a real one:
//
//   - Filesystem. Each container has its own root folder, <dir>/<namespace>/<pod>/rootfs/
//     <container>, holding nothing but its volume mounts (symbolic links to the pod's
//     volumes), and every absolute path in its arguments and environment is taken under
//     that root: --dsn-file=/etc/fleetingest/dsn/dsn becomes
//     --dsn-file=<root>/etc/fleetingest/dsn/dsn. A path that no mount provides therefore does
//     not exist, as in a container whose image holds nothing there. TMPDIR points at the
//     root's /tmp (present only when a volume is mounted there) and HOME at the image's
//     home folder, which does not exist: a read-only root filesystem, as far as files go.
//   - Volumes. Secret and ConfigMap volumes are written the way kubelet's atomic writer
//     does (a timestamped folder, a "..data" link to it, each file a link through it), with
//     the items, modes and fsGroup of the template, and rewritten atomically when the object
//     changes (checked every second; kubelet takes up to a minute or two). A missing Secret or
//     key keeps the pod waiting, as ContainerCreating. emptyDir is an empty folder (0777).
//     Other volume kinds are refused.
//   - Users. When the test runs as root, each process runs as the pod's runAsUser and
//     runAsGroup with fsGroup as a supplementary group, and volume files are owned by
//     fsGroup, so a mode or fsGroup that would keep the real process from reading its files
//     fails here too; runAsNonRoot with user 0 is refused. Run as another user, every process
//     runs as that user and the ownership checks are lost.
//   - Network. Pods share the machine's network, so every declared container port gets a
//     free local port, recorded per pod (Pod.Port), and each argument whose value is an
//     address of a declared port (":8080", "0.0.0.0:9090") is rewritten to 127.0.0.1 and
//     that port. An address of an undeclared port is left alone, so a template whose flags
//     and ports disagree fails to start or to pass its probes.
//   - Environment. Only the container's own environment, with valueFrom (secretKeyRef,
//     configMapKeyRef, fieldRef, resourceFieldRef), envFrom and $(VAR) expansion in values,
//     command and arguments as kubelet does it, plus PATH, HOME and TMPDIR of the image. A
//     pod that mounts its ServiceAccount token (automountServiceAccountToken not false)
//     gets KUBECONFIG pointing at a kubeconfig with the account's credentials instead of
//     the token mount, which client-go reads from a fixed path out of reach.
//   - Admission and scheduling. A pod is not started while its ServiceAccount (other than
//     "default") or PriorityClass does not exist, or its image is not one the node has; node
//     selectors, affinity, tolerations and spread constraints are not evaluated (there is one
//     node).
//   - Lifecycle. Init containers run to completion in order, then the main containers; a
//     failed or exited container is restarted with backoff. Probes (httpGet and tcpSocket)
//     are polled every ProbeInterval: readiness turns a pod ready at its first success and
//     unready after failureThreshold × periodSeconds of failures, a startup or liveness
//     probe that fails that long restarts the container.
//   - Deployments. A changed pod template (by its hash) starts all new pods at once and
//     stops the old ones when the new ones are ready; scaling starts or stops pods. The
//     status (observedGeneration, replicas, updated, ready and available replicas, the
//     Available and Progressing conditions) is written as the Deployment controller would.
//     No ReplicaSet or Pod objects are created.
package cluster
