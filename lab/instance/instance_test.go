package instance

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewRejectsInvalidNames(t *testing.T) {
	for _, name := range []string{"", "Lab", "1lab", "toolongname", "a-b", "a b"} {
		if _, err := New(name, t.TempDir()); err == nil {
			t.Errorf("New(%q) succeeded, want an error", name)
		}
	}
}

func TestDerivedNamesAndAddresses(t *testing.T) {
	in, err := New("lpm", "/state")
	if err != nil {
		t.Fatal(err)
	}
	in, err = in.WithSlot(41)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"range":       in.Range().String(),
		"bridge":      in.BridgeName(),
		"bridgeIP":    in.BridgeIP().String(),
		"apiserver":   in.APIServerURL(),
		"service":     in.ServiceCIDR().String(),
		"kubernetes":  in.KubernetesServiceIP().String(),
		"cluster":     in.ClusterCIDR().String(),
		"node1":       in.NodeName(1),
		"node1IP":     in.NodeIP(1).String(),
		"node1Pods":   in.PodCIDR(1).String(),
		"node1Veth":   in.HostVeth(1),
		"node1Cgroup": in.CgroupRoot(1),
		"node1Dir":    in.NodeDir(1),
	}
	want := map[string]string{
		"range":       "10.241.0.0/16",
		"bridge":      "lpmbr-lpm",
		"bridgeIP":    "10.241.0.1",
		"apiserver":   "https://10.241.0.1:6443",
		"service":     "10.241.1.0/24",
		"kubernetes":  "10.241.1.1",
		"cluster":     "10.241.16.0/20",
		"node1":       "node-b",
		"node1IP":     "10.241.0.11",
		"node1Pods":   "10.241.17.0/24",
		"node1Veth":   "lpmv-lpm-1",
		"node1Cgroup": "lpm-lpm-node-b",
		"node1Dir":    "/state/lpm/nodes/node-b",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("derived names (-want +got):\n%s", diff)
	}
}

func TestNamesFitTheKernelLimit(t *testing.T) {
	in, err := New("abcdefgh", "/state")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{in.BridgeName(), in.HostVeth(MaxNodes - 1)} {
		if len(name) > 15 {
			t.Errorf("interface name %q has %d bytes, the kernel allows 15", name, len(name))
		}
	}
}

func TestAddressesStayInRange(t *testing.T) {
	for slot := 0; slot < Slots; slot++ {
		in, err := New("lab", "/state")
		if err != nil {
			t.Fatal(err)
		}
		if in, err = in.WithSlot(slot); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{in.NodeNetwork().String(), in.ServiceCIDR().String(), in.ClusterCIDR().String()} {
			if !strings.HasPrefix(p, "10.") {
				t.Errorf("slot %d: %s outside 10.0.0.0/8", slot, p)
			}
		}
		for i := 0; i < MaxNodes; i++ {
			if !in.ClusterCIDR().Contains(in.PodCIDR(i).Addr()) {
				t.Errorf("slot %d: pod CIDR %s outside cluster CIDR %s", slot, in.PodCIDR(i), in.ClusterCIDR())
			}
			if !in.Range().Contains(in.NodeIP(i)) {
				t.Errorf("slot %d: node IP %s outside %s", slot, in.NodeIP(i), in.Range())
			}
		}
	}
	if _, err := (Instance{}).WithSlot(Slots); err == nil {
		t.Errorf("WithSlot(%d) succeeded, want an error", Slots)
	}
}
