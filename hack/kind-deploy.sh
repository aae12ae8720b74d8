#!/usr/bin/env bash
# Loads the fleetingest image into the kind cluster, applies the CRD, RBAC and operator
# (config/default, or OPERATOR_CONFIG) with that image, makes the dev fleet's auth Secrets,
# and applies the two-shard dev FleetIngestion, then waits for it.
#
# The auth Secrets hold public keys only. Their signing keys are generated once, with the
# image's `fleetingest token keygen`, into hack/kind/.keys/{device,user}/ (ignored by git;
# KIND_KEYS moves it) and stay on this machine: mint tokens with them (docs/kind.md).
# Usage: hack/kind-deploy.sh IMAGE [cluster-name]
#   (KIND, KUBECTL, CONTAINER_TOOL override the tools' paths; OPERATOR_CONFIG=config/namespaced
#   runs the operator with a Role in namespace fleetingest instead of a ClusterRole)
set -euo pipefail

img=${1:?usage: hack/kind-deploy.sh IMAGE [cluster-name]}
cluster=${2:-${KIND_CLUSTER:-fleetingest}}
kind=${KIND:-kind}
kubectl=${KUBECTL:-kubectl}
ctool=${CONTAINER_TOOL:-docker}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=${OPERATOR_CONFIG:-config/default}
keys=${KIND_KEYS:-$root/hack/kind/.keys}
ctx="kind-$cluster"

log() { echo "deploy: $*" >&2; }

# auth_secret KIND SECRET: makes the Secret SECRET in namespace fleetingest from the public
# halves (<kid>.pub) of the KIND (device or user) signing keys, generating a key first if
# there is none. Re-running it puts back the same keys.
auth_secret() {
  local dir="$keys/$1" secret=$2 from=() f
  if ! compgen -G "$dir/*.key" >/dev/null; then
    mkdir -p "$dir"
    log "generating a $1 signing key in $dir"
    "$ctool" run --rm --user "$(id -u):$(id -g)" -v "$(cd "$dir" && pwd):/keys" "$img" token keygen --out /keys >/dev/null
  fi
  for f in "$dir"/*.pub; do from+=(--from-file="$f"); done
  "$kubectl" --context "$ctx" -n fleetingest create secret generic "$secret" "${from[@]}" --dry-run=client -o yaml \
    | "$kubectl" --context "$ctx" apply -f -
}

log "loading $img into kind cluster $cluster"
"$kind" load docker-image "$img" --name "$cluster"

log "applying the CRD, RBAC and operator ($config) with image $img"
# Render the kustomization with the image (and the operator's --default-image) replaced, so
# the committed one stays untouched.
"$kubectl" kustomize "$root/$config" \
  | sed -e "s|image: fleetingest:dev|image: $img|" -e "s|--default-image=fleetingest:dev|--default-image=$img|" \
  | "$kubectl" --context "$ctx" apply --server-side --force-conflicts -f -
"$kubectl" --context "$ctx" wait --for=condition=Established crd/fleetingestions.fleetingest.io --timeout=60s
"$kubectl" --context "$ctx" -n fleetingest-system rollout status deployment/fleetingest-operator --timeout=180s

log "making the dev fleet's auth Secrets (public keys only)"
auth_secret device dev-device-keys
auth_secret user dev-user-keys

log "applying the dev FleetIngestion"
"$kubectl" --context "$ctx" apply -f "$root/config/samples/fleetingest_v1alpha1_fleetingestion_dev.yaml"
log "waiting for it to be Ready"
"$kubectl" --context "$ctx" -n fleetingest wait fleetingestion/dev --for=condition=Ready --timeout=300s
"$kubectl" --context "$ctx" -n fleetingest get fleetingestion dev -o wide
log "mint tokens with the keys in $keys (docs/kind.md, step 4)"
