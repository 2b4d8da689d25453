package noderoot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cgroupRoot is the mount point of the host's cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// killCgroups kills every process in the node's cgroups, in every
// hierarchy, and removes the cgroups, deepest first.
func killCgroups(t testing.TB, parent string) {
	t.Helper()
	if parent == "" || parent == "/" {
		return
	}
	for attempt := 0; attempt < 50; attempt++ {
		dirs := cgroupDirs(parent)
		if len(dirs) == 0 {
			return
		}
		for _, dir := range dirs {
			for _, pid := range readPids(filepath.Join(dir, "cgroup.procs")) {
				// Processes of a frozen cgroup die once it is thawed.
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			thaw(dir)
		}
		// Remove the deepest directories first.
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if dirs := cgroupDirs(parent); len(dirs) > 0 {
		t.Errorf("failed to remove cgroups of the node: %v", dirs)
	}
}

func thaw(dir string) {
	_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0o644)
}

// cgroupDirs lists the node's cgroup directories in every hierarchy,
// parents before children.
func cgroupDirs(parent string) []string {
	var dirs []string
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupRoot, "*"))
	hierarchies = append(hierarchies, cgroupRoot)
	for _, h := range hierarchies {
		root := filepath.Join(h, parent)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	return dirs
}

func readPids(path string) []int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pids []int
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killShims kills the processes that carry the node's LPMAG_NODE_DIR
// environment variable: containerd's shims, which left containerd's process
// tree when they daemonised and would keep the node's mount namespace alive.
func killShims(t testing.TB, nodeDir string) {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		found := false
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			if err != nil || !strings.Contains(string(environ), "LPMAG_NODE_DIR="+nodeDir+"\x00") {
				continue
			}
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("processes of node %s survived SIGKILL", nodeDir)
}

// ownerFile names the test process that owns a node's state directory.
const ownerFile = "owner"

// sweepAbandoned removes the processes, cgroups, bridge and state directory
// of nodes whose test process died without cleaning up, as a test binary
// killed by its timeout does. Nodes whose owner still runs belong to another
// test binary and stay.
func sweepAbandoned(t testing.TB) {
	t.Helper()
	dirs, _ := filepath.Glob("/tmp/lpmag-*")
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fields[0])
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil {
			continue
		}
		t.Logf("removing node %s of test process %d, which is gone", dir, pid)
		killShims(t, dir)
		killCgroups(t, "/"+filepath.Base(dir))
		_ = exec.Command("ip", "link", "del", fields[1]).Run()
		_ = os.RemoveAll(dir)
	}
}
