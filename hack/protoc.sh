#!/usr/bin/env bash
# protoc.sh OUTDIR: generates the Go and Connect code of every .proto under api/ into OUTDIR
# (the repository root for `make generate`; a temporary folder for the drift test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
: "${PROTOC_GEN_GO:?path to protoc-gen-go}"
: "${PROTOC_GEN_CONNECT_GO:?path to protoc-gen-connect-go}"
mkdir -p "$out"
cd "$root"
module=github.com/fleetingest/fleetingest
protos=$(find api -name '*.proto' -not -path 'api/third_party/*' | sort)
includes=(-I . -I /usr/include)
[[ -d api/third_party ]] && includes+=(-I api/third_party)
protoc "${includes[@]}" \
  --plugin=protoc-gen-go="$PROTOC_GEN_GO" --go_out="$out" --go_opt=module=$module \
  --plugin=protoc-gen-connect-go="$PROTOC_GEN_CONNECT_GO" --connect-go_out="$out" --connect-go_opt=module=$module \
  $protos
