#!/usr/bin/env bash
# Removes the dev FleetIngestion (its streams go too: deletionPolicy Delete), then the
# operator, RBAC and CRD (config/default, or OPERATOR_CONFIG as given to kind-deploy.sh).
# NATS, Postgres (hack/kind/) and the auth Secrets stay; `kind delete cluster` removes all.
# Usage: hack/kind-undeploy.sh [cluster-name]
set -euo pipefail

cluster=${1:-${KIND_CLUSTER:-fleetingest}}
kubectl=${KUBECTL:-kubectl}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ctx="kind-$cluster"

"$kubectl" --context "$ctx" delete -f "$root/config/samples/fleetingest_v1alpha1_fleetingestion_dev.yaml" --ignore-not-found --wait=true --timeout=120s
"$kubectl" --context "$ctx" delete -k "$root/${OPERATOR_CONFIG:-config/default}" --ignore-not-found
