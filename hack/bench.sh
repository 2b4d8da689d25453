#!/usr/bin/env bash
# Runs lpm-bench in a lab of its own: starts the lab, installs lpm, measures
# and takes the lab down again, also when the run fails or receives SIGINT
# or SIGTERM. A lock on the lab's name makes a second run with the same name
# fail at once instead of replacing the running lab under the first.
#
# Usage: hack/bench.sh LAB_NAME [lpm-bench flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: hack/bench.sh LAB_NAME [lpm-bench flags...]}
shift
lab=bin/lpm-lab

mkdir -p /var/lib/lpm-lab
exec 9>"/var/lib/lpm-lab/$name.bench.lock"
if ! flock -n 9; then
  echo "hack/bench.sh: another benchmark runs in lab \"$name\"; wait for it or choose another BENCH_LAB_NAME" >&2
  exit 1
fi

hack/components.sh test-assets
assets=$(mktemp -d)
ln -s "$(hack/components.sh path etcd)/etcd" "$assets/etcd"
ln -s "$(hack/components.sh path kube-apiserver)/kube-apiserver" "$assets/kube-apiserver"

bench_pid=
cleanup() {
  status=$?
  trap - EXIT INT TERM
  if [[ -n $bench_pid ]]; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  "$lab" --name "$name" down || status=1
  rm -rf "$assets"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$lab" --name "$name" up
"$lab" --name "$name" install
go build -o "$assets/lpm-bench" ./test/bench/cmd/lpm-bench
KUBEBUILDER_ASSETS=$assets "$assets/lpm-bench" -lab "$name" "$@" run &
bench_pid=$!
wait "$bench_pid"
