// Package instance derives every name, path and address of one lab from the
// lab's name, so several labs (or test nodes) can run on one machine without
// sharing a bridge, a network namespace, a cgroup or an address.
//
// A lab named "lpm" in slot 41 uses the bridge "lpmbr-lpm", the node network
// 10.241.0.0/24 (the bridge holds .1, node i holds .10+i), the pod CIDRs
// 10.241.16.0/24, 10.241.17.0/24, ... (one per node, all inside
// 10.241.16.0/20) and the service CIDR 10.241.1.0/24. The slot is a hash of
// the name unless it is set explicitly.
package instance

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
)

const (
	// maxNameLength keeps interface names within the kernel's 15 bytes:
	// "lpmbr-" plus the name.
	maxNameLength = 8
	// Slots is the number of labs that can run side by side. Slot s uses
	// the private range 10.(200+s).0.0/16.
	Slots = 56
	// firstOctet and secondOctetBase place every lab between 10.200.0.0
	// and 10.255.255.255, away from the ranges that Docker, libvirt and
	// Kubernetes distributions use by default.
	firstOctet      = 10
	secondOctetBase = 200
	// MaxNodes is the number of nodes a lab's addressing has room for.
	MaxNodes = 8
	// apiServerPort is the kube-apiserver's port on the bridge address.
	apiServerPort = 6443
	// loopbackPortBase is the first loopback port of slot 0. Each slot
	// owns ten ports from loopbackPortBase+10*slot for etcd and the
	// health ports of the controller manager and the scheduler.
	loopbackPortBase = 32000
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// Instance is one lab: its name, its slot and the directories it uses.
type Instance struct {
	// Name identifies the lab. It is part of every interface, cgroup and
	// directory name the lab creates.
	Name string
	// Slot selects the lab's address range and loopback ports.
	Slot int
	// StateDir holds everything the lab writes: certificates,
	// configurations, logs, PID files and the nodes' state.
	StateDir string
}

// New returns the instance named name, with its slot derived from the name
// and its state under stateBase (DefaultStateBase when empty).
func New(name, stateBase string) (Instance, error) {
	if !namePattern.MatchString(name) {
		return Instance{}, fmt.Errorf("invalid lab name %q: want 1 to %d lowercase letters or digits, "+
			"starting with a letter", name, maxNameLength)
	}
	if stateBase == "" {
		stateBase = DefaultStateBase()
	}
	return Instance{Name: name, Slot: SlotFor(name), StateDir: filepath.Join(stateBase, name)}, nil
}

// DefaultStateBase returns $LPM_LAB_STATE, or /var/lib/lpm-lab.
func DefaultStateBase() string {
	if dir := os.Getenv("LPM_LAB_STATE"); dir != "" {
		return dir
	}
	return "/var/lib/lpm-lab"
}

// SlotFor hashes a lab name to a slot.
func SlotFor(name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % Slots)
}

// WithSlot returns a copy of the instance that uses slot s.
func (in Instance) WithSlot(s int) (Instance, error) {
	if s < 0 || s >= Slots {
		return Instance{}, fmt.Errorf("invalid slot %d: want 0 to %d", s, Slots-1)
	}
	in.Slot = s
	return in, nil
}

func (in Instance) prefix() netip.Prefix {
	addr := netip.AddrFrom4([4]byte{firstOctet, byte(secondOctetBase + in.Slot), 0, 0})
	return netip.PrefixFrom(addr, 16)
}

func (in Instance) addr(third, fourth byte) netip.Addr {
	b := in.prefix().Addr().As4()
	return netip.AddrFrom4([4]byte{b[0], b[1], third, fourth})
}

// Range is the /16 that holds every address of the lab.
func (in Instance) Range() netip.Prefix { return in.prefix() }

// BridgeName is the host bridge the nodes' interfaces attach to.
func (in Instance) BridgeName() string { return "lpmbr-" + in.Name }

// NodeNetwork is the subnet of the bridge and the nodes' interfaces.
func (in Instance) NodeNetwork() netip.Prefix { return netip.PrefixFrom(in.addr(0, 0), 24) }

// BridgeIP is the host's address on the bridge, where the control plane
// listens.
func (in Instance) BridgeIP() netip.Addr { return in.addr(0, 1) }

// APIServerURL is the kube-apiserver's address as the nodes and the host
// reach it.
func (in Instance) APIServerURL() string {
	return fmt.Sprintf("https://%s", netip.AddrPortFrom(in.BridgeIP(), apiServerPort))
}

// APIServerPort is the kube-apiserver's port on BridgeIP.
func (in Instance) APIServerPort() int { return apiServerPort }

// ServiceCIDR is the range of Service cluster IPs.
func (in Instance) ServiceCIDR() netip.Prefix { return netip.PrefixFrom(in.addr(1, 0), 24) }

// KubernetesServiceIP is the cluster IP of the "kubernetes" Service, the
// first address of ServiceCIDR.
func (in Instance) KubernetesServiceIP() netip.Addr { return in.addr(1, 1) }

// ClusterCIDR holds the pod CIDRs of all nodes.
func (in Instance) ClusterCIDR() netip.Prefix { return netip.PrefixFrom(in.addr(16, 0), 20) }

// NodeName is the Kubernetes name of node i: node-a, node-b, ...
func (in Instance) NodeName(i int) string { return "node-" + string(rune('a'+i)) }

// NodeIP is node i's address on the node network.
func (in Instance) NodeIP(i int) netip.Addr { return in.addr(0, byte(10+i)) }

// PodCIDR is node i's pod CIDR.
func (in Instance) PodCIDR(i int) netip.Prefix { return netip.PrefixFrom(in.addr(byte(16+i), 0), 24) }

// HostVeth is the host side of node i's interface pair. Inside the node the
// other side is eth0.
func (in Instance) HostVeth(i int) string { return fmt.Sprintf("lpmv-%s-%d", in.Name, i) }

// CgroupRoot is the cgroup, relative to each hierarchy's root, that node i's
// kubelet uses as its cgroupRoot.
func (in Instance) CgroupRoot(i int) string { return fmt.Sprintf("lpm-%s-%s", in.Name, in.NodeName(i)) }

// EtcdClientPort is etcd's loopback client port.
func (in Instance) EtcdClientPort() int { return loopbackPortBase + 10*in.Slot }

// EtcdPeerPort is etcd's loopback peer port.
func (in Instance) EtcdPeerPort() int { return loopbackPortBase + 10*in.Slot + 1 }

// EtcdMetricsPort is etcd's loopback metrics port.
func (in Instance) EtcdMetricsPort() int { return loopbackPortBase + 10*in.Slot + 2 }

// ControllerManagerPort is kube-controller-manager's loopback HTTPS port.
func (in Instance) ControllerManagerPort() int { return loopbackPortBase + 10*in.Slot + 3 }

// SchedulerPort is kube-scheduler's loopback HTTPS port.
func (in Instance) SchedulerPort() int { return loopbackPortBase + 10*in.Slot + 4 }

// NodeDir is node i's state directory.
func (in Instance) NodeDir(i int) string { return filepath.Join(in.StateDir, "nodes", in.NodeName(i)) }

// PKIDir holds the lab's certificates and keys.
func (in Instance) PKIDir() string { return filepath.Join(in.StateDir, "pki") }

// ControlPlaneDir holds the control plane's data, logs and PID files.
func (in Instance) ControlPlaneDir() string { return filepath.Join(in.StateDir, "control-plane") }

// ImagesDir holds the image archives imported into the nodes.
func (in Instance) ImagesDir() string { return filepath.Join(in.StateDir, "images") }

// AdminKubeconfig is the path of the cluster-admin kubeconfig.
func (in Instance) AdminKubeconfig() string { return filepath.Join(in.PKIDir(), "admin.kubeconfig") }
