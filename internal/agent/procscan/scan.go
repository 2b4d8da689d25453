package procscan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Container is one container to scan, named by the PID of its init
// process in the node's PID namespace.
type Container struct {
	Name string
	PID  int
	// DevShmVolume is true when the container mounts a pod volume at
	// /dev/shm, so its files travel with the volume instead of staying in
	// the pod sandbox's own tmpfs.
	DevShmVolume bool
}

// Scanner scans the processes of containers.
type Scanner struct {
	// ProcRoot is the node's /proc; /proc when empty.
	ProcRoot string
	// CgroupRoot is the node's cgroup mount; /sys/fs/cgroup when empty.
	CgroupRoot string
	// Policy describes the objects the node's CRIU handles.
	Policy Policy
	// Kernel reports what /proc does not show, LiveKernel when nil.
	Kernel Kernel
}

// Scan reads every process of each container's tree and applies every
// rule. A process that exits during the scan is skipped; any other read
// failure is returned.
func (sc Scanner) Scan(containers []Container) (*Result, error) {
	if sc.ProcRoot == "" {
		sc.ProcRoot = "/proc"
	}
	if sc.CgroupRoot == "" {
		sc.CgroupRoot = "/sys/fs/cgroup"
	}
	if sc.Kernel == nil {
		sc.Kernel = LiveKernel{}
	}
	r := &reader{procRoot: sc.ProcRoot, kernel: sc.Kernel}
	hostIPC, _ := os.Readlink(filepath.Join(sc.ProcRoot, "1", "ns", "ipc"))
	result := &Result{}
	for _, c := range containers {
		findings, err := sc.scanContainer(r, c, hostIPC, result)
		if err != nil {
			return nil, fmt.Errorf("failed to scan the processes of container %s: %w", c.Name, err)
		}
		result.Findings = append(result.Findings, findings...)
	}
	return result, nil
}

func (sc Scanner) scanContainer(r *reader, c Container, hostIPC string, result *Result) ([]Finding, error) {
	cgroup, err := FrozenCgroup(sc.ProcRoot, sc.CgroupRoot, c.PID)
	if err != nil {
		return nil, err
	}
	if cgroup != "" {
		return []Finding{{Reason: lpmv1.ReasonContainerFrozen, Container: c.Name, PID: c.PID,
			Command: command(sc.ProcRoot, c.PID), FD: -1, Object: "cgroup " + cgroup,
			Problem: "its cgroup is already frozen by someone else, and CRIU can hang on a frozen cgroup",
			Fix:     "thaw the container (find who froze it) and start the migration again"}}, nil
	}

	pids, err := r.tree(c.PID)
	if err != nil {
		return nil, err
	}
	tree := map[int]bool{}
	for _, pid := range pids {
		tree[pid] = true
	}
	s := scope{container: c.Name, policy: sc.Policy, hostIPC: hostIPC, tree: tree, mounts: r.mountsOf,
		sockets: r.socketsOf, devShmVolume: c.DevShmVolume}
	var procs []*process
	var findings []Finding
	for _, pid := range pids {
		p, err := r.read(pid)
		if errors.Is(err, errGone) && pid != c.PID {
			continue
		}
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		result.Processes++
		result.FileDescriptors += len(p.fds)
		for _, rule := range processRules {
			findings = append(findings, rule(s, p)...)
		}
	}
	return append(findings, rulePipes(c.Name, procs)...), nil
}

func command(procRoot string, pid int) string {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

// FrozenCgroup returns the cgroup of process pid that is frozen or
// freezing, empty when none is: the v1 freezer's freezer.state, or the
// unified hierarchy's cgroup.events ("frozen 1") and cgroup.freeze. A cgroup
// path outside the reader's cgroup namespace ("/..") is not checked.
func FrozenCgroup(procRoot, cgroupRoot string, pid int) (string, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", fmt.Errorf("failed to read the cgroups of process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || strings.HasPrefix(parts[2], "/..") {
			continue
		}
		controllers, path := parts[1], parts[2]
		switch {
		case controllers == "":
			dir := filepath.Join(unifiedRoot(cgroupRoot), path)
			if fileHasLine(filepath.Join(dir, "cgroup.events"), "frozen 1") ||
				fileHasLine(filepath.Join(dir, "cgroup.freeze"), "1") {
				return path, nil
			}
		case hasController(controllers, "freezer"):
			state, err := os.ReadFile(filepath.Join(cgroupRoot, controllers, path, "freezer.state"))
			if err != nil {
				continue
			}
			if s := strings.TrimSpace(string(state)); s == "FROZEN" || s == "FREEZING" {
				return path, nil
			}
		}
	}
	return "", nil
}

// unifiedRoot returns the mount of the unified hierarchy: the cgroup root
// itself on a pure v2 node, its unified directory in hybrid mode.
func unifiedRoot(cgroupRoot string) string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return cgroupRoot
	}
	return filepath.Join(cgroupRoot, "unified")
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

func fileHasLine(path, want string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == want {
			return true
		}
	}
	return false
}

// Tree returns pid and its descendants under procRoot, the process tree
// CRIU dumps or restores for a container whose init process is pid.
func Tree(procRoot string, pid int) ([]int, error) {
	r := &reader{procRoot: procRoot}
	return r.tree(pid)
}
