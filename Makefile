# lpm: live pod migration for Kubernetes.
#
# Third-party tools and components are built from the Go module proxy (or
# taken from Debian packages) by hack/components.sh and cached under
# $(LPM_CACHE).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LPM_CACHE ?= $(HOME)/.cache/lpm
export LPM_CACHE

BIN := $(CURDIR)/bin
COMPONENTS := hack/components.sh
CONTROLLER_GEN = $(shell $(COMPONENTS) path controller-gen)/controller-gen
GOLANGCI_LINT = $(shell $(COMPONENTS) path golangci-lint)/golangci-lint
KUSTOMIZE = $(shell $(COMPONENTS) path kustomize)/kustomize
HELM = $(shell $(COMPONENTS) path helm)/helm

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } \
		/^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code, CRDs, RBAC, the chart's copies of them, docs/api.md and the flow picture.
	$(COMPONENTS) controller-gen
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=lpm-controller paths=./internal/controller/... \
		output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=lpm-agent paths=./internal/agent/... \
		output:rbac:artifacts:config=config/rbac/agent
	$(COMPONENTS) kustomize
	hack/generate-chart-files.sh $(KUSTOMIZE)
	go run ./hack/apidocs -crds config/crd/bases -out docs/api.md
	go run ./hack/seqdiagram docs/architecture/flow.txt docs/architecture/flow.svg

.PHONY: fmt
fmt: ## Format the Go sources.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint.
	$(COMPONENTS) golangci-lint
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate ## Fail when generated files are stale or the chart and config/default differ.
	@if [ -n "$$(git status --porcelain -- api config charts docs/api.md docs/architecture)" ]; then \
		git status --porcelain -- api config charts docs/api.md docs/architecture; \
		echo "generated files are stale: run 'make generate' and commit the result" >&2; \
		exit 1; \
	fi
	$(COMPONENTS) kustomize helm
	go run ./hack/verify-manifests -kustomize $(KUSTOMIZE) -helm $(HELM)
	$(HELM) lint --strict charts/lpm

##@ Build

IMAGE_REPOSITORY ?= localhost/lpm
VERSION ?= dev

.PHONY: build
build: ## Build lpm-controller, lpm-agent and kubectl-migrate into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: image
image: ## Build the controller and agent images into bin/images/*.tar (IMAGE_REPOSITORY, VERSION).
	go run ./hack/build-images -repository $(IMAGE_REPOSITORY) -version $(VERSION) -out $(BIN)/images

##@ Test

.PHONY: test
test: ## Run unit and integration tests (real etcd, kube-apiserver, containerd, CRIU).
	hack/test.sh

.PHONY: test-all
test-all: verify lint test e2e ## Run everything CI runs: verify, lint, tests and the lab e2e suite.

##@ Lab (a real two-node cluster on this machine; needs root)

LAB_NAME ?= lpm
E2E_LAB_NAME ?= e2e
LPM_LAB = $(BIN)/lpm-lab
LAB_COMPONENTS := etcd kubernetes containerd cni-plugins node-root

.PHONY: lab-components
lab-components: ## Build or reuse every component the lab runs.
	$(COMPONENTS) $(LAB_COMPONENTS)

.PHONY: lpm-lab
lpm-lab:
	CGO_ENABLED=0 go build -trimpath -o $(LPM_LAB) ./cmd/lpm-lab

.PHONY: images
images: lpm-lab ## Build the lab's images (pause, counter, lpm) and import them into the running lab.
	$(LPM_LAB) --name $(LAB_NAME) images

.PHONY: lab-up
lab-up: lab-components lpm-lab ## Start the lab (cleaning up any earlier one); kubectl: bin/lpm-lab kubectl ...
	$(LPM_LAB) --name $(LAB_NAME) up

.PHONY: lab-down
lab-down: lpm-lab ## Stop the lab and remove every process, mount, interface, route and cgroup of it.
	$(LPM_LAB) --name $(LAB_NAME) down

.PHONY: demo
demo: lab-up ## Migrate a counting pod from node-a to node-b in the lab and show the downtime.
	$(LPM_LAB) --name $(LAB_NAME) install
	$(LPM_LAB) --name $(LAB_NAME) demo

.PHONY: e2e
e2e: lab-components lpm-lab ## Run the end-to-end suite against a lab of its own (started and removed here).
	status=0; \
	$(LPM_LAB) --name $(E2E_LAB_NAME) up && \
		$(LPM_LAB) --name $(E2E_LAB_NAME) install && \
		LPM_LAB_NAME=$(E2E_LAB_NAME) go test -tags e2e -count=1 -timeout 60m -v ./test/e2e/... || status=$$?; \
	$(LPM_LAB) --name $(E2E_LAB_NAME) down || status=1; \
	exit $$status

##@ Benchmarks

BENCH_LAB_NAME ?= bench
BENCH_FLAGS ?=

.PHONY: bench
bench: lab-components lpm-lab ## Measure downtime, image preparation, transfer and controller scale in a lab of its own; writes docs/benchmarks.md (BENCH_FLAGS for lpm-bench).
	@command -v buildah >/dev/null || { echo "installing buildah from Debian packages"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null; }; }
	LPM_BENCH_COMMAND="make bench BENCH_LAB_NAME=$(BENCH_LAB_NAME) BENCH_FLAGS='$(BENCH_FLAGS)'" \
		hack/bench.sh $(BENCH_LAB_NAME) $(BENCH_FLAGS)
