#!/usr/bin/env bash
# Loads the fleetingest image into the kind cluster, applies the CRD, RBAC and operator
# (config/default) with that image, and the two-shard dev FleetIngestion, then waits for it.
# Usage: hack/kind-deploy.sh IMAGE [cluster-name]   (KIND, KUBECTL override the tools' paths)
set -euo pipefail

img=${1:?usage: hack/kind-deploy.sh IMAGE [cluster-name]}
cluster=${2:-${KIND_CLUSTER:-fleetingest}}
kind=${KIND:-kind}
kubectl=${KUBECTL:-kubectl}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ctx="kind-$cluster"

log() { echo "deploy: $*" >&2; }

log "loading $img into kind cluster $cluster"
"$kind" load docker-image "$img" --name "$cluster"

log "applying the CRD, RBAC and operator (config/default) with image $img"
# Render config/default with the image (and the operator's --default-image) replaced, so the
# committed kustomization stays untouched.
"$kubectl" kustomize "$root/config/default" \
  | sed -e "s|image: fleetingest:dev|image: $img|" -e "s|--default-image=fleetingest:dev|--default-image=$img|" \
  | "$kubectl" --context "$ctx" apply --server-side --force-conflicts -f -
"$kubectl" --context "$ctx" wait --for=condition=Established crd/fleetingestions.fleetingest.io --timeout=60s
"$kubectl" --context "$ctx" -n fleetingest-system rollout status deployment/fleetingest-operator --timeout=180s

log "applying the dev FleetIngestion"
"$kubectl" --context "$ctx" apply -f "$root/config/samples/fleetingest_v1alpha1_fleetingestion_dev.yaml"
log "waiting for it to be Ready"
"$kubectl" --context "$ctx" -n fleetingest wait fleetingestion/dev --for=condition=Ready --timeout=300s
"$kubectl" --context "$ctx" -n fleetingest get fleetingestion dev -o wide
