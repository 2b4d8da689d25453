// Package restorecheck proves a restore on the target node before the
// source is removed. Every restored process must live in the new pod's
// cgroup, and no netfilter chain that CRIU adds to lock the network may
// remain in the pod's network namespace. It also finds CRIU's error lines
// in its logs.
package restorecheck

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Cgroups maps each cgroup hierarchy of /proc/<pid>/cgroup, by its
// controller list ("" for the unified hierarchy, "cpu,cpuacct" or
// "name=systemd" in v1), to the process's cgroup path.
type Cgroups map[string]string

// ParseCgroups reads the content of /proc/<pid>/cgroup.
func ParseCgroups(data string) Cgroups {
	out := Cgroups{}
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		out[parts[1]] = parts[2]
	}
	return out
}

// ReadCgroups reads the cgroups of a process under procRoot.
func ReadCgroups(procRoot string, pid int) (Cgroups, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return nil, fmt.Errorf("failed to read the cgroups of process %d: %w", pid, err)
	}
	return ParseCgroups(string(data)), nil
}

// PodCgroups returns the pod's cgroups from those of its sandbox process:
// the kubelet puts the sandbox and each container in a cgroup of their own
// directly under the pod's. A hierarchy where the sandbox sits at the root
// is not managed per pod and is left out.
func PodCgroups(sandbox Cgroups) Cgroups {
	out := Cgroups{}
	for hierarchy, p := range sandbox {
		if p == "/" || p == "" || strings.HasPrefix(p, "/..") {
			continue
		}
		out[hierarchy] = path.Dir(p)
	}
	return out
}

// Misplaced is a restored process outside the new pod's cgroup.
type Misplaced struct {
	PID       int
	Hierarchy string
	// Got is the process's cgroup; Want the pod's.
	Got  string
	Want string
}

func (m Misplaced) String() string {
	hierarchy := m.Hierarchy
	if hierarchy == "" {
		hierarchy = "unified"
	}
	return fmt.Sprintf("process %d is in %s cgroup %s, outside the pod's %s", m.PID, hierarchy, m.Got, m.Want)
}

// CheckCgroups returns each hierarchy in which a process is not in a
// container cgroup directly under the pod's cgroup. The kubelet would not
// account for such a process, and removing the cgroup it sits in (the
// source pod's, on the same node) would kill it.
func CheckCgroups(pid int, proc, pod Cgroups) []Misplaced {
	var out []Misplaced
	for hierarchy, want := range pod {
		got, ok := proc[hierarchy]
		if !ok || strings.HasPrefix(got, "/..") {
			continue
		}
		if path.Dir(got) != want {
			out = append(out, Misplaced{PID: pid, Hierarchy: hierarchy, Got: got, Want: want})
		}
	}
	return out
}
