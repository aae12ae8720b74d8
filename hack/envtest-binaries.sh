#!/usr/bin/env bash
# Builds the Kubernetes test binaries (kube-apiserver, etcd) from the Go module proxy and
# caches them outside the clone, keyed by version, so a warm run never rebuilds them.
# Prints the folder that holds them (use it as KUBEBUILDER_ASSETS).
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${FLEETINGEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetingest}"
OUT="$CACHE/envtest/k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}"

log() { echo "envtest-binaries: $*" >&2; }

mkdir -p "$OUT"
staging_version="v0.${KUBE_VERSION#v1.}"

build_apiserver() {
  [[ -x "$OUT/kube-apiserver" ]] && return
  local work; work=$(mktemp -d)
  log "building kube-apiserver $KUBE_VERSION (several minutes on 2 cores)"
  (
    cd "$work"
    cat > go.mod <<MOD
module fleetingest.local/kube-apiserver

go 1.26
MOD
    cat > main.go <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
    # k8s.io/kubernetes replaces its staging modules with local paths; point each at its
    # published version instead. The list comes from that version's own go.mod.
    local modfile
    modfile=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    go mod edit -require="k8s.io/kubernetes@${KUBE_VERSION}"
    grep -E '=> \./staging/src/' "$modfile" | awk '{print $1}' | sort -u | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging_version}"
    done
    go mod tidy >/dev/null
    local ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
      ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=2026-01-01T00:00:00Z"
    done
    go build -trimpath -ldflags "$ldflags" -o "$OUT/kube-apiserver.tmp" .
    mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  )
  rm -rf "$work"
}

build_etcd() {
  [[ -x "$OUT/etcd" ]] && return
  local work; work=$(mktemp -d)
  log "building etcd $ETCD_VERSION"
  (
    cd "$work"
    cat > go.mod <<MOD
module fleetingest.local/etcd

go 1.26
MOD
    cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
    go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go mod tidy >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .
    mv "$OUT/etcd.tmp" "$OUT/etcd"
  )
  rm -rf "$work"
}

build_etcd
build_apiserver
if [[ ! -x "$OUT/kubectl" ]]; then
  if command -v kubectl >/dev/null 2>&1; then
    ln -sf "$(command -v kubectl)" "$OUT/kubectl"
  fi
fi
echo "$OUT"
