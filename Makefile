# fleetingest — see README.md. `make dev` runs the system, `make test` runs every test.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

GO ?= go
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/fleetingest
TOOLS := $(CACHE)/tools

# Pinned tool versions.
CONTROLLER_GEN_VERSION ?= v0.23.0
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION ?= v1.21.1
HELM_VERSION ?= v3.22.0
GOLANGCI_LINT_VERSION ?= v2.15.0

CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
PROTOC_GEN_GO := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
PROTOC_GEN_CONNECT_GO := $(TOOLS)/protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_GO_VERSION)
HELM := $(TOOLS)/helm-$(HELM_VERSION)
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)

IMG ?= fleetingest:dev
KIND_CLUSTER ?= fleetingest

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Run

.PHONY: dev
dev: build ## Build bin/fleetingest and run the whole system on this machine (NATS, Postgres shards, gateway, ingesters, analytics) on http://127.0.0.1:8080.
	bin/fleetingest dev $(DEV_ARGS)

.PHONY: build
build: ## Build bin/fleetingest.
	$(GO) build -o bin/fleetingest ./cmd/fleetingest

##@ Test

.PHONY: test
test: tools protoc lint ## Lint, then run every test under the race detector (unit, integration against real Postgres/NATS/kube-apiserver).
	KUBEBUILDER_ASSETS="$$(hack/envtest-binaries.sh)" \
	FLEETINGEST_TOOLS="$(TOOLS)" HELM="$(HELM)" CONTROLLER_GEN="$(CONTROLLER_GEN)" \
	PROTOC_GEN_GO="$(PROTOC_GEN_GO)" PROTOC_GEN_CONNECT_GO="$(PROTOC_GEN_CONNECT_GO)" \
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz

# Each fuzz target runs for FUZZTIME beyond its seed corpus (which every `go test` runs).
FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## Fuzz the device payload decoder and the analytics query parameters for FUZZTIME each.
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeReading$$' -fuzztime $(FUZZTIME) ./api/telemetry/
	$(GO) test -run '^$$' -fuzz '^FuzzQueryParameters$$' -fuzztime $(FUZZTIME) ./analytics/

# Each benchmark's figures are merged into bench/results.json (bench/report), then charted.
.PHONY: bench
bench: wrk ## Run the benchmarks (end-to-end ingest through the dev stack, analytics queries); record them in bench/results.json and chart them in docs/bench/.
	BENCH_RESULTS=$(CURDIR)/bench $(GO) test -run '^$$' -bench . -benchtime $(or $(BENCHTIME),1x) -timeout 60m ./bench/...
	$(GO) run ./bench/report/cmd/charts -in bench/results.json -out docs/bench

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (.golangci.yml): go vet's analyzers (govet), staticcheck, errcheck, gofmt/goimports and more.
	$(GOLANGCI_LINT) run ./...

##@ Generate

.PHONY: generate
generate: $(CONTROLLER_GEN) protoc $(PROTOC_GEN_GO) $(PROTOC_GEN_CONNECT_GO) ## Generate deepcopy and protobuf/Connect code, and the chart's Grafana dashboard.
	PROTOC_GEN_GO="$(PROTOC_GEN_GO)" PROTOC_GEN_CONNECT_GO="$(PROTOC_GEN_CONNECT_GO)" hack/protoc.sh .
	$(GO) run ./hack/dashboard -o charts/fleetingest/dashboards/fleetingest.json
	@if [ -d api/v1alpha1 ] && ls api/v1alpha1/*.go >/dev/null 2>&1; then \
	  $(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/v1alpha1/...; fi

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests (config/, charts/).
	@if [ -x hack/manifests.sh ]; then CONTROLLER_GEN="$(CONTROLLER_GEN)" hack/manifests.sh; fi

##@ Deploy (kind; see docs/kind.md)

CONTAINER_TOOL ?= docker
KIND ?= kind
KUBECTL ?= kubectl
# Operator flags of `make run-operator`; out of cluster there is no pod namespace for the
# leader-election Lease, so leader election is off.
OPERATOR_ARGS ?= --leader-elect=false --default-image=$(IMG) --metrics-addr=127.0.0.1:8082 --health-addr=127.0.0.1:8083

.PHONY: docker-build
docker-build: ## Build the fleetingest image $(IMG) (one static binary on distroless).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: kind-up
kind-up: ## Create the kind cluster $(KIND_CLUSTER) with NATS and two Postgres shards (hack/kind/).
	KIND=$(KIND) KUBECTL=$(KUBECTL) hack/kind-up.sh $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## Load $(IMG) into kind, apply the CRD, RBAC, operator and the dev FleetIngestion.
	KIND=$(KIND) KUBECTL=$(KUBECTL) hack/kind-deploy.sh $(IMG) $(KIND_CLUSTER)

.PHONY: undeploy
undeploy: ## Delete the dev FleetIngestion, then the operator, RBAC and CRD.
	KUBECTL=$(KUBECTL) hack/kind-undeploy.sh $(KIND_CLUSTER)

.PHONY: kind-down
kind-down: ## Delete the kind cluster $(KIND_CLUSTER).
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: run-operator
run-operator: ## Run the operator on this machine against the current kubeconfig (CRD applied first).
	$(KUBECTL) apply --server-side -f config/crd/bases
	$(GO) run ./cmd/fleetingest operator $(OPERATOR_ARGS)

##@ Tools (pinned, cached under $(TOOLS))

.PHONY: tools
tools: $(CONTROLLER_GEN) $(PROTOC_GEN_GO) $(PROTOC_GEN_CONNECT_GO) $(HELM)

.PHONY: wrk
wrk:
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

.PHONY: protoc
protoc:
	@command -v protoc >/dev/null 2>&1 && [ -f /usr/include/google/protobuf/timestamp.proto ] || \
	  { echo "installing protoc (Debian protobuf-compiler, libprotobuf-dev)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null; }

$(CONTROLLER_GEN):
	hack/go-install-tool.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_GEN_VERSION)
$(PROTOC_GEN_GO):
	hack/go-install-tool.sh $@ google.golang.org/protobuf/cmd/protoc-gen-go $(PROTOC_GEN_GO_VERSION)
$(PROTOC_GEN_CONNECT_GO):
	hack/go-install-tool.sh $@ connectrpc.com/connect/cmd/protoc-gen-connect-go $(PROTOC_GEN_CONNECT_GO_VERSION)
$(HELM):
	hack/go-install-tool.sh $@ helm.sh/helm/v3/cmd/helm $(HELM_VERSION)
$(GOLANGCI_LINT):
	hack/go-install-tool.sh $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)
