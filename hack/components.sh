#!/usr/bin/env bash
# Builds the third-party components that the lab and the tests run, from the
# Go module proxy and Debian packages only, and caches each one under
# $LPM_CACHE/<component>-<version>. A cached component is reused as is.
#
# Usage: hack/components.sh COMPONENT...   build (or reuse) the components
#        hack/components.sh path COMPONENT print the directory of a component
#
# Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy, kubectl, kubernetes (all six), containerd, cni-plugins,
# node-root, controller-gen, golangci-lint, helm, kustomize, test-assets
# (etcd and kube-apiserver, for the integration tests).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${LPM_CACHE:-$HOME/.cache/lpm}
export GOFLAGS=-mod=mod
export CGO_ENABLED=${CGO_ENABLED:-0}

log() { printf '%s components: %s\n' "$(date +%T)" "$*" >&2; }

# Prints the cache directory of COMPONENT.
component_dir() {
	case $1 in
	etcd) echo "$cache/etcd-$ETCD_VERSION" ;;
	kube-*|kubelet|kubectl) echo "$cache/$1-$KUBERNETES_VERSION" ;;
	containerd) echo "$cache/containerd-$CONTAINERD_VERSION" ;;
	cni-plugins) echo "$cache/cni-plugins-$CNI_PLUGINS_VERSION" ;;
	node-root) echo "$cache/node-root-$NODE_ROOT_SUITE-$(node_root_key)" ;;
	controller-gen) echo "$cache/controller-gen-$CONTROLLER_TOOLS_VERSION" ;;
	golangci-lint) echo "$cache/golangci-lint-$GOLANGCI_LINT_VERSION" ;;
	helm) echo "$cache/helm-$HELM_VERSION" ;;
	kustomize) echo "$cache/kustomize-$KUSTOMIZE_VERSION" ;;
	*) echo "unknown component $1" >&2; return 1 ;;
	esac
}

# Prints a short hash of the package list, so a changed list gets a new root.
node_root_key() {
	printf '%s|%s|%s' "$NODE_ROOT_PACKAGES" "$NODE_ROOT_NEWER_SUITE" "$NODE_ROOT_NEWER_PACKAGES" |
		sha256sum | cut -c1-8
}

# Runs BODY in a scratch module under $cache/src and installs what it
# builds into the component directory, which appears only on success.
build_go() {
	local name=$1 dir src
	shift
	dir=$(component_dir "$name")
	if [ -f "$dir/.done" ]; then
		return 0
	fi
	src="$cache/src/$(basename "$dir")"
	rm -rf "$src" "$dir.tmp"
	mkdir -p "$src" "$dir.tmp/bin"
	log "building $name into $dir"
	local start=$SECONDS
	(cd "$src" && "$@" "$dir.tmp/bin")
	touch "$dir.tmp/.done"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
	log "built $name in $((SECONDS - start))s"
}

# Writes a go.mod that requires k8s.io/kubernetes and replaces each staging
# module (k8s.io/kubernetes points them at ./staging) with the published one.
# No `go mod tidy` here: in a module without Go files it drops the
# requirement, and go build would then resolve the latest k8s.io/kubernetes.
kube_module() {
	go mod init lpm.local/build/kubernetes >/dev/null 2>&1
	go mod edit -go=1.26 -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
	local gomod
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
		sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	local staging
	staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
	if [ -z "$staging" ]; then
		echo "no staging replacements found in $gomod" >&2
		return 1
	fi
	local m
	for m in $staging; do
		go mod edit -replace="$m=$m@$KUBERNETES_STAGING_VERSION"
	done
}

# Fails unless `go version -m` shows that each binary in directory $1 was
# built with module $2 at exactly version $3.
check_module_version() {
	local out=$1 module=$2 version=$3 bin
	for bin in "$out"/*; do
		if ! go version -m "$bin" | awk -v m="$module" -v v="$version" \
			'($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 } END { exit !found }'; then
			echo "$bin was not built with $module@$version:" >&2
			go version -m "$bin" | grep -F "$module" >&2 || true
			return 1
		fi
	done
}

kube_ldflags() {
	local pkg=k8s.io/component-base/version minor=${KUBERNETES_VERSION#v1.}
	minor=${minor%%.*}
	echo "-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
		"-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

# All Kubernetes binaries build from one shared module directory.
build_kube_one() {
	local name=$1 out=$2 mod="$cache/src/kubernetes-$KUBERNETES_VERSION"
	if [ ! -f "$mod/.ready" ]; then
		rm -rf "$mod"
		mkdir -p "$mod"
		(cd "$mod" && kube_module && touch .ready)
	fi
	cd "$mod"
	go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/$name" "k8s.io/kubernetes/cmd/$name"
	check_module_version "$out" k8s.io/kubernetes "$KUBERNETES_VERSION"
}

build_etcd() {
	local out=$1
	go mod init lpm.local/build/etcd >/dev/null 2>&1
	go mod edit -go=1.26 -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
	check_module_version "$out" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
}

build_containerd() {
	local out=$1 pkg=github.com/containerd/containerd/v2
	go mod init lpm.local/build/containerd >/dev/null 2>&1
	go mod edit -go=1.26 -require="$pkg@$CONTAINERD_VERSION"
	go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
		-ldflags "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION" \
		-o "$out/" "$pkg/cmd/containerd" "$pkg/cmd/containerd-shim-runc-v2" "$pkg/cmd/ctr"
	check_module_version "$out" "$pkg" "$CONTAINERD_VERSION"
}

build_cni() {
	local out=$1 pkg=github.com/containernetworking/plugins
	go mod init lpm.local/build/cni >/dev/null 2>&1
	go mod edit -go=1.26 -require="$pkg@$CNI_PLUGINS_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$out/" \
		"$pkg/plugins/main/bridge" "$pkg/plugins/main/loopback" \
		"$pkg/plugins/ipam/host-local" "$pkg/plugins/meta/portmap"
	check_module_version "$out" "$pkg" "$CNI_PLUGINS_VERSION"
}

build_tool() {
	local pkg=$1 version=$2 out=$3
	go mod init lpm.local/build/tool >/dev/null 2>&1
	go mod edit -go=1.26 -require="${pkg%/cmd/*}@$version"
	go build -trimpath -ldflags "-s -w" -o "$out/" "$pkg"
	check_module_version "$out" "${pkg%/cmd/*}" "$version"
}

build_golangci_lint() {
	local out=$1 pkg=github.com/golangci/golangci-lint/v2
	go mod init lpm.local/build/golangci-lint >/dev/null 2>&1
	go mod edit -go=1.26 -require="$pkg@$GOLANGCI_LINT_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$out/" "$pkg/cmd/golangci-lint"
	check_module_version "$out" "$pkg" "$GOLANGCI_LINT_VERSION"
}

build_helm() {
	local out=$1 pkg=helm.sh/helm/v4
	go mod init lpm.local/build/helm >/dev/null 2>&1
	go mod edit -go=1.26 -require="$pkg@$HELM_VERSION"
	# helm version reports only the module's minor version unless this is set.
	go build -trimpath -ldflags "-s -w -X $pkg/internal/version.version=$HELM_VERSION" -o "$out/" "$pkg/cmd/helm"
	check_module_version "$out" "$pkg" "$HELM_VERSION"
}

build_kustomize() {
	local out=$1 pkg=sigs.k8s.io/kustomize/kustomize/v5
	go mod init lpm.local/build/kustomize >/dev/null 2>&1
	go mod edit -go=1.26 -require="$pkg@$KUSTOMIZE_VERSION"
	go build -trimpath -ldflags "-s -w" -o "$out/" "$pkg"
	check_module_version "$out" "$pkg" "$KUSTOMIZE_VERSION"
}

# Builds a Debian root with CRIU, runc and crun for the lab nodes. The
# packages come from Debian's archive through debootstrap.
build_node_root() {
	local dir
	dir=$(component_dir node-root)
	if [ -f "$dir/.done" ]; then
		return 0
	fi
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap from Debian packages"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	log "creating node root ($NODE_ROOT_SUITE) in $dir"
	local start=$SECONDS
	debootstrap --variant=minbase --include="$NODE_ROOT_PACKAGES" \
		"$NODE_ROOT_SUITE" "$dir.tmp/rootfs" >"$dir.tmp/debootstrap.log" 2>&1 || {
		tail -20 "$dir.tmp/debootstrap.log" >&2
		return 1
	}
	if [ -n "${NODE_ROOT_NEWER_PACKAGES:-}" ]; then
		install_newer_packages "$dir.tmp/rootfs" || return 1
	fi
	# Nothing inside a lab node may resolve names through the host's resolver.
	echo "nameserver 127.0.0.1" >"$dir.tmp/rootfs/etc/resolv.conf"
	chroot "$dir.tmp/rootfs" dpkg-query -W -f '${Package} ${Version}\n' \
		criu runc crun >"$dir.tmp/packages.txt"
	touch "$dir.tmp/.done"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
	log "created node root in $((SECONDS - start))s"
}

# Installs NODE_ROOT_NEWER_PACKAGES from NODE_ROOT_NEWER_SUITE into the root
# at $1, with apt inside the root. The chroot runs in a private mount
# namespace, so its /proc mount ends with it.
install_newer_packages() {
	local root=$1
	echo "deb http://deb.debian.org/debian $NODE_ROOT_NEWER_SUITE main" \
		>"$root/etc/apt/sources.list.d/$NODE_ROOT_NEWER_SUITE.list"
	printf 'Package: *\nPin: release n=%s\nPin-Priority: 100\n' "$NODE_ROOT_NEWER_SUITE" \
		>"$root/etc/apt/preferences.d/$NODE_ROOT_NEWER_SUITE"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	log "installing $NODE_ROOT_NEWER_PACKAGES from $NODE_ROOT_NEWER_SUITE into the node root"
	# shellcheck disable=SC2086
	unshare -m sh -ec '
		mount -t proc proc "$1/proc"
		chroot "$1" apt-get -o Acquire::Check-Valid-Until=false update -qq
		chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-t "$2" $3
		chroot "$1" apt-get clean
	' install "$root" "$NODE_ROOT_NEWER_SUITE" "$NODE_ROOT_NEWER_PACKAGES" >>"$root/../debootstrap.log" 2>&1 || {
		tail -20 "$root/../debootstrap.log" >&2
		return 1
	}
	rm -f "$root/etc/apt/sources.list.d/$NODE_ROOT_NEWER_SUITE.list" "$root/etc/apt/preferences.d/$NODE_ROOT_NEWER_SUITE"
	rm -rf "$root/var/lib/apt/lists/"*
}

build() {
	case $1 in
	etcd) build_go etcd build_etcd ;;
	kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
		build_go "$1" build_kube_one "$1" ;;
	kubernetes)
		local c
		for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
			build "$c"
		done ;;
	test-assets) build etcd; build kube-apiserver ;;
	containerd) build_go containerd build_containerd ;;
	cni-plugins) build_go cni-plugins build_cni ;;
	node-root) build_node_root ;;
	controller-gen)
		build_go controller-gen build_tool sigs.k8s.io/controller-tools/cmd/controller-gen \
			"$CONTROLLER_TOOLS_VERSION" ;;
	golangci-lint) build_go golangci-lint build_golangci_lint ;;
	helm) build_go helm build_helm ;;
	kustomize) build_go kustomize build_kustomize ;;
	*) echo "unknown component $1" >&2; return 1 ;;
	esac
}

if [ "${1:-}" = path ]; then
	dir=$(component_dir "$2")
	if [ "$2" = node-root ]; then
		echo "$dir/rootfs"
	else
		echo "$dir/bin"
	fi
	exit 0
fi
if [ $# -eq 0 ]; then
	sed -n '2,13p' "$0" >&2
	exit 2
fi
for c in "$@"; do
	build "$c"
done
