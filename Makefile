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

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } \
		/^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code, CRDs and RBAC from the Go sources.
	$(COMPONENTS) controller-gen
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=lpm-controller paths=./internal/controller/... \
		output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=lpm-agent paths=./internal/agent/... \
		output:rbac:artifacts:config=config/rbac/agent

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
verify: generate ## Fail when generated files are stale.
	@if [ -n "$$(git status --porcelain -- api config charts docs/api.md)" ]; then \
		git status --porcelain -- api config charts docs/api.md; \
		echo "generated files are stale: run 'make generate' and commit the result" >&2; \
		exit 1; \
	fi

##@ Build

.PHONY: build
build: ## Build lpm-controller, lpm-agent and kubectl-migrate into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/...

##@ Test

.PHONY: test
test: ## Run unit and integration tests (real etcd, kube-apiserver, containerd, CRIU).
	hack/test.sh

.PHONY: test-all
test-all: verify lint test e2e ## Run everything CI runs: verify, lint, tests and the lab e2e suite.
