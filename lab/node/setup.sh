#!/bin/sh
# Builds a lab node's root inside the fresh mount, UTS, IPC, network and
# (optionally) PID namespaces this shell starts in, pivots into it and stays
# as the namespaces' anchor process. Run by package node; reads:
#   NODE_NAME   host name of the node
#   LOWER       read-only node root (the Debian root built by hack/components.sh)
#   UPPER WORK  per-node overlay directories that receive the node's changes
#   ROOT        mount point of the node's root (visible inside the node only)
#   BINDS       lines of "SOURCE TARGET ro|rw" bound into the node's root
#   HOSTS       content of the node's /etc/hosts
# File descriptor 3 receives "ready" once the root is in place.
set -eu

# Nothing mounted here may propagate back to the host.
mount --make-rprivate /
hostname "$NODE_NAME"

mkdir -p "$ROOT" "$UPPER" "$WORK"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$ROOT"

# A fresh proc shows the node's own processes when it has a PID namespace,
# and a fresh sysfs shows the node's own network interfaces.
mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs "$ROOT/sys"
mount --rbind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"

# A private /dev with the usual device nodes and a devpts of its own, so a
# node's terminals and its containers' consoles never mix with the host's.
mount -t tmpfs -o mode=755,size=65536k,nosuid tmpfs "$ROOT/dev"
mknod -m 666 "$ROOT/dev/null" c 1 3
mknod -m 666 "$ROOT/dev/zero" c 1 5
mknod -m 666 "$ROOT/dev/full" c 1 7
mknod -m 666 "$ROOT/dev/random" c 1 8
mknod -m 666 "$ROOT/dev/urandom" c 1 9
mknod -m 666 "$ROOT/dev/tty" c 5 0
mknod -m 640 "$ROOT/dev/kmsg" c 1 11
mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm" "$ROOT/dev/mqueue" "$ROOT/dev/net"
mknod -m 666 "$ROOT/dev/net/tun" c 10 200
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$ROOT/dev/pts"
ln -s pts/ptmx "$ROOT/dev/ptmx"
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue "$ROOT/dev/mqueue"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$ROOT/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/tmp"

echo "$NODE_NAME" >"$ROOT/etc/hostname"
printf '%s\n' "$HOSTS" >"$ROOT/etc/hosts"

printf '%s\n' "$BINDS" | while read -r src dst mode; do
	[ -n "$src" ] || continue
	if [ -d "$src" ]; then
		mkdir -p "$ROOT$dst"
	else
		mkdir -p "$(dirname "$ROOT$dst")"
		[ -e "$ROOT$dst" ] || : >"$ROOT$dst"
	fi
	mount --bind "$src" "$ROOT$dst"
	if [ "$mode" = ro ]; then
		mount -o remount,bind,ro "$ROOT$dst"
	fi
done

mkdir -p "$ROOT/.oldroot"
cd "$ROOT"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

# The kubelet's directory is a shared mount, as on a systemd node, so a pod
# that mounts part of it with HostToContainer propagation sees the volumes
# the kubelet mounts later: the lpm agent reads memory-backed emptyDir
# volumes this way. The peer group stays inside the node, whose mounts
# were made private to the host above.
mount --make-rshared /var/lib/kubelet

echo ready >&3
exec 3>&-
# Stay as the anchor. As PID 1 of a PID namespace, bash also reaps the
# orphans that the node's processes leave behind (containerd's shims).
exec /bin/bash -c 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'
