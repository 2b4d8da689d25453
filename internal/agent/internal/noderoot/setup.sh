# Builds the node's root in a fresh mount namespace (unshare --mount) and
# execs containerd in it. Inputs: NODE_DIR (state on the host), ROOTFS (the
# Debian root, used read-only as an overlay's lower layer), BIN (containerd
# binaries), CNI (CNI plugin binaries), BRIDGE and SUBNET (the pods'
# network), ROOT_SIZE (optional tmpfs size for containerd's root).
set -eu
# Marks every process of the node, shims included, so the test finds them.
export LPMAG_NODE_DIR="$NODE_DIR"
r=$NODE_DIR/root

mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$NODE_DIR/upper,workdir=$NODE_DIR/work" "$r"
if [ -n "$ROOT_SIZE" ]; then
	mount -t tmpfs -o "size=$ROOT_SIZE,mode=0700" tmpfs "$NODE_DIR/containerd"
fi

mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /sys/fs/cgroup "$r/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$r/dev"
for dev in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0"; do
	set -- $dev
	mknod -m 0666 "$r/dev/$1" "$2" "$3" "$4"
done
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"

mkdir -p "$r/var/lib/containerd" "$r/run/containerd" "$r/etc/containerd" "$r/opt/lpm/bin" "$r/var/log/lpm" \
	"$r/opt/cni/bin" "$r/etc/cni/net.d"
mount --bind "$NODE_DIR/containerd" "$r/var/lib/containerd"
mount --bind "$NODE_DIR/sock" "$r/run/containerd"
mount --bind "$NODE_DIR/etc" "$r/etc/containerd"
mount --bind "$NODE_DIR/logs" "$r/var/log/lpm"
mount --bind -o ro "$BIN" "$r/opt/lpm/bin"
mount --bind -o ro "$CNI" "$r/opt/cni/bin"
# Pods attach to a bridge of their own with no address on the host side, so
# their traffic reaches nothing but each other.
cat >"$r/etc/cni/net.d/10-lpmag.conflist" <<CONF
{"cniVersion": "1.0.0", "name": "lpmag", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]]}}
]}
CONF

# With CRIU_LOG set, CRIU writes its log where the test can read it; runc
# passes /etc/criu/runc.conf to CRIU.
if [ -n "${CRIU_LOG:-}" ]; then
	mkdir -p "$r/etc/criu"
	echo "log-file /var/log/lpm/criu.log" >"$r/etc/criu/runc.conf"
fi

cd "$r"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

export PATH=/opt/lpm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
exec containerd --config /etc/containerd/config.toml
