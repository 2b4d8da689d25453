#!/usr/bin/env bash
# Runs the unit and integration tests. Integration tests run against a real
# etcd and kube-apiserver built by hack/components.sh; the path reaches them
# through KUBEBUILDER_ASSETS, which controller-runtime's envtest reads.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/components.sh test-assets
# The manifest tests render config/ with kustomize and the chart with helm;
# the observability tests run kubectl wait.
hack/components.sh kustomize helm kubectl
# The node agent's integration tests run a real containerd with runc and
# CRIU from the Debian node root, with CNI plugins for the pods' network.
hack/components.sh node-root containerd cni-plugins
assets=$(mktemp -d)
trap 'rm -rf "$assets"' EXIT
ln -s "$(hack/components.sh path etcd)/etcd" "$assets/etcd"
ln -s "$(hack/components.sh path kube-apiserver)/kube-apiserver" "$assets/kube-apiserver"
export KUBEBUILDER_ASSETS=$assets

go test -race -count=1 "${@:-./...}"
