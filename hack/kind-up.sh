#!/usr/bin/env bash
# Creates the kind cluster for the fleetingest dev fleet, then applies hack/kind/: a
# one-node NATS with JetStream and two Postgres shards with their DSN Secrets, in namespace
# fleetingest. Only container images are pulled (nats, postgres, kind's node image).
# Usage: hack/kind-up.sh [cluster-name]   (KIND, KUBECTL override the tools' paths)
set -euo pipefail

cluster=${1:-${KIND_CLUSTER:-fleetingest}}
kind=${KIND:-kind}
kubectl=${KUBECTL:-kubectl}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { echo "kind-up: $*" >&2; }

command -v "$kind" >/dev/null || { log "kind not found: install it (https://kind.sigs.k8s.io) or set KIND"; exit 1; }
command -v "$kubectl" >/dev/null || { log "kubectl not found: install it or set KUBECTL"; exit 1; }

if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "cluster $cluster exists"
else
  log "creating cluster $cluster"
  "$kind" create cluster --name "$cluster" --config "$root/hack/kind-config.yaml" --wait 120s
fi
ctx="kind-$cluster"

log "applying NATS and the Postgres shards (hack/kind/)"
"$kubectl" --context "$ctx" apply -f "$root/hack/kind/namespace.yaml"
"$kubectl" --context "$ctx" apply -f "$root/hack/kind/"

log "waiting for NATS and the shards to be ready"
"$kubectl" --context "$ctx" -n fleetingest rollout status statefulset/nats --timeout=300s
"$kubectl" --context "$ctx" -n fleetingest rollout status statefulset/pg-0 --timeout=300s
"$kubectl" --context "$ctx" -n fleetingest rollout status statefulset/pg-1 --timeout=300s
log "ready: next, make deploy"
