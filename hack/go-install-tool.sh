#!/usr/bin/env bash
# go-install-tool.sh TARGET PACKAGE VERSION: installs PACKAGE@VERSION as the file TARGET.
set -euo pipefail
target=$1 pkg=$2 version=$3
dir=$(dirname "$target")
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "installing $pkg@$version" >&2
GOBIN="$tmp" GOFLAGS=-mod=mod go install "$pkg@$version"
mv "$tmp/$(basename "$pkg")" "$target"
