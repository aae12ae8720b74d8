# syntax=docker/dockerfile:1
# The one fleetingest image: the operator, gateway, ingester, migrate and analytics are
# subcommands of the same static binary. Build: `make docker-build IMG=fleetingest:dev`.
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a code change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY api/ api/
COPY analytics/ analytics/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY ingester/ ingester/
COPY internal/ internal/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" \
      -o /out/fleetingest ./cmd/fleetingest

# distroless static: no shell, no package manager; runs as the nonroot user (65532) that
# the operator's pod security settings expect.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fleetingest /usr/local/bin/fleetingest
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleetingest"]
