// Package network wires lab nodes together. The host bridge has the control
// plane's address, and each node has one veth pair (eth0 inside the node).
// Routes connect the nodes' pod CIDRs, and host routes keep every address
// of the lab's range on this machine.
//
// The host gets the bridge, one route per node's pod CIDR through that
// node, and an unreachable route for the rest of the lab's /16, so a packet
// for a lab address that no node holds fails here instead of following the
// default route off the machine. The host's forwarding setting and its
// packet filter are left alone: node-to-node traffic is bridged, and the
// host only ever originates or receives traffic on the bridge.
package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/lpm-dev/lpm/lab/instance"
)

func ip(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip %s failed: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

type route struct {
	Dst  string `json:"dst"`
	Dev  string `json:"dev"`
	Type string `json:"type"`
}

func hostRoutes() ([]route, error) {
	out, err := exec.Command("ip", "-j", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("failed to list routes: %w", err)
	}
	var routes []route
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("failed to parse routes: %w", err)
	}
	return routes, nil
}

// labRoutes returns the host routes that lie inside the lab's range, except
// the unreachable route for the whole range, which stays while the lab is
// down.
func labRoutes(in instance.Instance) ([]string, error) {
	routes, err := hostRoutes()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range routes {
		p, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			a, err := netip.ParseAddr(r.Dst)
			if err != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if !p.Overlaps(in.Range()) || p.Bits() == 0 {
			continue
		}
		desc := r.Type + " " + r.Dst
		if r.Dev != "" {
			desc += " dev " + r.Dev
		}
		desc = strings.TrimSpace(desc)
		if desc != guardRoute(in) {
			out = append(out, desc)
		}
	}
	return out, nil
}

// EnsureBridge creates the lab's bridge with the control plane's address,
// unless it exists. It fails when another interface or route already uses
// the lab's address range.
func EnsureBridge(in instance.Instance) error {
	ctx := context.Background()
	br := in.BridgeName()
	if !linkExists(br) {
		routes, err := labRoutes(in)
		if err != nil {
			return err
		}
		if len(routes) > 0 {
			return fmt.Errorf("address range %s of lab %q is already in use on this machine (%s): "+
				"run lpm-lab down, or choose another lab name or slot", in.Range(), in.Name, strings.Join(routes, "; "))
		}
		if _, err := ip(ctx, "link", "add", "name", br, "type", "bridge"); err != nil {
			return err
		}
	}
	prefix := netip.PrefixFrom(in.BridgeIP(), in.NodeNetwork().Bits())
	if _, err := ip(ctx, "addr", "replace", prefix.String(), "dev", br); err != nil {
		return err
	}
	if _, err := ip(ctx, "link", "set", br, "up"); err != nil {
		return err
	}
	return addGuardRoute(ctx, in)
}

// RemoveBridge deletes the bridge and keeps the lab's unreachable route,
// so a client of a lab that is down fails with "no route to host" instead
// of sending the lab's addresses through the default route.
func RemoveBridge(in instance.Instance) error {
	ctx := context.Background()
	if linkExists(in.BridgeName()) {
		if _, err := ip(ctx, "link", "del", in.BridgeName()); err != nil {
			return err
		}
	}
	return addGuardRoute(ctx, in)
}

// addGuardRoute adds, or keeps, the unreachable route for the lab's whole
// range.
func addGuardRoute(ctx context.Context, in instance.Instance) error {
	_, err := ip(ctx, "route", "replace", "unreachable", in.Range().String())
	return err
}

// guardRoute returns the unreachable route that covers the lab's whole
// range, as the host's route listing shows it.
func guardRoute(in instance.Instance) string {
	return "unreachable " + in.Range().String()
}

// AttachNode connects the network namespace of process pid (node index of
// the lab) to the bridge. Inside the node it configures eth0 with the
// node's address, routes to the service CIDR and the other nodes' pod
// CIDRs, and forwarding. On the host it adds a route to the node's pod CIDR.
func AttachNode(ctx context.Context, in instance.Instance, index, pid int) error {
	veth := in.HostVeth(index)
	if linkExists(veth) {
		if _, err := ip(ctx, "link", "del", veth); err != nil {
			return err
		}
	}
	_, err := ip(ctx, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(pid))
	if err != nil {
		return err
	}
	if _, err := ip(ctx, "link", "set", veth, "master", in.BridgeName(), "up"); err != nil {
		return err
	}

	// Routes to the other nodes' pod CIDRs are added for every possible
	// node. A route to a node that does not exist fails address resolution,
	// so its packets never leave the bridge.
	script := []string{
		"ip link set lo up",
		fmt.Sprintf("ip addr add %s dev eth0", netip.PrefixFrom(in.NodeIP(index), in.NodeNetwork().Bits())),
		"ip link set eth0 up",
		fmt.Sprintf("ip route add %s via %s dev eth0", in.ServiceCIDR(), in.BridgeIP()),
		"echo 1 > /proc/sys/net/ipv4/ip_forward",
	}
	for j := 0; j < instance.MaxNodes; j++ {
		if j != index {
			script = append(script, fmt.Sprintf("ip route add %s via %s dev eth0", in.PodCIDR(j), in.NodeIP(j)))
		}
	}
	cmd := exec.CommandContext(ctx, "nsenter", "-t", fmt.Sprint(pid), "-n", "sh", "-ec", strings.Join(script, "\n"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to configure the network of node %s: %w: %s", in.NodeName(index), err, out)
	}

	_, err = ip(ctx, "route", "replace", in.PodCIDR(index).String(), "via", in.NodeIP(index).String(),
		"dev", in.BridgeName())
	return err
}

// DetachNode removes node index's host interface and host route.
func DetachNode(in instance.Instance, index int) error {
	ctx := context.Background()
	if linkExists(in.HostVeth(index)) {
		if _, err := ip(ctx, "link", "del", in.HostVeth(index)); err != nil {
			return err
		}
	}
	routes, err := labRoutes(in)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if strings.Contains(r, " "+in.PodCIDR(index).String()+" ") {
			if _, err := ip(ctx, "route", "del", in.PodCIDR(index).String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// NodesAttached returns how many nodes of the lab have a host interface.
func NodesAttached(in instance.Instance) int {
	count := 0
	for i := 0; i < instance.MaxNodes; i++ {
		if linkExists(in.HostVeth(i)) {
			count++
		}
	}
	return count
}

// Remains lists the lab's interfaces and host routes that still exist,
// except the unreachable route that RemoveBridge keeps.
func Remains(in instance.Instance) ([]string, error) {
	var out []string
	if linkExists(in.BridgeName()) {
		out = append(out, "bridge "+in.BridgeName())
	}
	for i := 0; i < instance.MaxNodes; i++ {
		if linkExists(in.HostVeth(i)) {
			out = append(out, "interface "+in.HostVeth(i))
		}
	}
	routes, err := labRoutes(in)
	if err != nil {
		return out, err
	}
	for _, r := range routes {
		out = append(out, "route "+r)
	}
	return out, nil
}
