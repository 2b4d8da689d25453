package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/lpm-dev/lpm/lab/cgroups"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/network"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/proc"
)

// Remains lists everything of the lab that is on the machine: processes,
// mounts, network namespaces, interfaces, host routes, host packet-filter
// rules and cgroups. After Down it is empty.
func (l *Lab) Remains() ([]string, error) {
	in := l.inst
	var out []string

	for _, name := range controlPlane {
		if p, err := proc.ReadFile(l.pidFile(name)); err == nil && p.Alive() {
			out = append(out, fmt.Sprintf("process %s (PID %d)", name, p.PID))
		}
	}
	for i := 0; i < instance.MaxNodes; i++ {
		if p, err := proc.ReadFile(filepath.Join(in.NodeDir(i), "anchor.pid")); err == nil && p.Alive() {
			out = append(out, fmt.Sprintf("process anchor of node %s (PID %d)", in.NodeName(i), p.PID))
		}
		for _, dir := range cgroups.Exists(in.CgroupRoot(i)) {
			out = append(out, "cgroup "+dir)
		}
	}
	strays, err := strayProcesses(in.StateDir)
	if err != nil {
		return out, err
	}
	out = append(out, strays...)

	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return out, err
	}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, in.StateDir+"/") || strings.Contains(line, " "+in.StateDir+" ") {
			out = append(out, "mount "+line)
		}
	}

	netRemains, err := network.Remains(in)
	if err != nil {
		return out, err
	}
	out = append(out, netRemains...)

	rules, err := hostFilterRules(in)
	if err != nil {
		return out, err
	}
	return append(out, rules...), nil
}

// strayProcesses returns processes that run a cached component or live in
// a network namespace of the lab, found without PID files.
func strayProcesses(stateDir string) ([]string, error) {
	pids, err := proc.All()
	if err != nil {
		return nil, err
	}
	cacheDir := node.DefaultCacheDir() + "/"
	var out []string
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(data), stateDir+"/") {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !strings.HasPrefix(exe, cacheDir) {
			continue
		}
		out = append(out, fmt.Sprintf("process %s (PID %d)", filepath.Base(exe), pid))
	}
	return out, nil
}

// hostFilterRules returns the host's nftables and iptables rules that name
// the lab's bridge or address range. The lab adds none; a rule found here
// was left by something else that used the lab's names. When the host has
// no nft or iptables-save, the node root's are used: they read the
// caller's network namespace, which is the host's.
func hostFilterRules(in instance.Instance) ([]string, error) {
	rangePrefix := strings.TrimSuffix(in.Range().Addr().String(), "0.0")
	var out []string
	for _, tool := range [][]string{{"nft", "list", "ruleset"}, {"iptables-save"}, {"iptables-legacy-save"}} {
		cmd, ok := hostTool(tool)
		if !ok {
			continue
		}
		data, err := cmd.Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, in.BridgeName()) || strings.Contains(line, rangePrefix) {
				out = append(out, fmt.Sprintf("%s rule %s", tool[0], strings.TrimSpace(line)))
			}
		}
	}
	return out, nil
}

func hostTool(args []string) (*exec.Cmd, bool) {
	if p, err := exec.LookPath(args[0]); err == nil {
		return exec.Command(p, args[1:]...), true
	}
	root, err := node.ComponentPath("node-root")
	if err != nil {
		return nil, false
	}
	for _, dir := range []string{"usr/sbin", "sbin"} {
		if _, err := os.Stat(filepath.Join(root, dir, args[0])); err == nil {
			return exec.Command("chroot", append([]string{root, "/" + dir + "/" + args[0]}, args[1:]...)...), true
		}
	}
	return nil, false
}
