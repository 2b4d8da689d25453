// Package cgroups creates and removes a lab node's cgroup root in every
// cgroup hierarchy of the host: each cgroup v1 controller, the named
// systemd hierarchy and the unified (v2) hierarchy of a hybrid host.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mount is where the host mounts its cgroup hierarchies.
const Mount = "/sys/fs/cgroup"

// Hierarchies returns the directories of the host's cgroup hierarchies.
func Hierarchies() ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("failed to read mountinfo: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			continue
		}
		fsType := fields[sep+1]
		if (fsType == "cgroup" || fsType == "cgroup2") && strings.HasPrefix(fields[4], Mount) {
			out = append(out, fields[4])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cgroup hierarchy mounted under %s", Mount)
	}
	return out, nil
}

// Create creates root in every hierarchy. In the cpuset hierarchy it copies
// the parent's CPUs and memory nodes, which a new v1 cpuset lacks.
func Create(root string) error {
	hs, err := Hierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("failed to create cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				continue
			}
			cur, _ := os.ReadFile(filepath.Join(dir, f))
			if strings.TrimSpace(string(cur)) != "" {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("failed to set %s of %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// Exists returns the directories of root that exist in any hierarchy.
func Exists(root string) []string {
	hs, err := Hierarchies()
	if err != nil {
		return nil
	}
	var out []string
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h, root)); err == nil {
			out = append(out, filepath.Join(h, root))
		}
	}
	return out
}

// Remove kills every process left in root (in any hierarchy), then removes
// root and its descendants, deepest first. A missing root is not an error.
func Remove(root string) error {
	if root == "" || strings.Contains(root, "..") {
		return fmt.Errorf("invalid cgroup root %q", root)
	}
	dirs := Exists(root)
	if len(dirs) == 0 {
		return nil
	}
	killProcesses(dirs)
	var errs []error
	for _, dir := range dirs {
		errs = append(errs, removeTree(dir))
	}
	return errors.Join(errs...)
}

func killProcesses(dirs []string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := map[int]bool{}
		for _, dir := range dirs {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, f := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids[pid] = true
					}
				}
				return nil
			})
		}
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		// A frozen cgroup (a paused container) holds its processes until
		// it is thawed, even after SIGKILL.
		for _, dir := range dirs {
			thaw(dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Thaw thaws every frozen cgroup in root, in any hierarchy. A process in
// a frozen cgroup does not die of SIGKILL until it is thawed, and a PID
// namespace's init does not exit while such a process remains.
func Thaw(root string) {
	for _, dir := range Exists(root) {
		thaw(dir)
	}
}

func thaw(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if _, err := os.Stat(filepath.Join(p, "freezer.state")); err == nil {
			_ = os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0o644)
		}
		if _, err := os.Stat(filepath.Join(p, "cgroup.freeze")); err == nil {
			_ = os.WriteFile(filepath.Join(p, "cgroup.freeze"), []byte("0"), 0o644)
		}
		return nil
	})
}

func removeTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	// Deepest first: a cgroup can be removed only when it has no children.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		lastErr = nil
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				lastErr = fmt.Errorf("failed to remove cgroup %s: %w", d, err)
			}
		}
		if lastErr == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}
