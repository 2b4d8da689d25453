package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRemoveKillsFrozenProcess freezes a process in a cgroup root of its
// own, as a paused container is, then thaws and removes the root: the
// process dies and no directory of the root is left.
func TestRemoveKillsFrozenProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	freezer := "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(freezer, "freezer.state")); err != nil {
		if _, err := os.Stat(freezer); err != nil {
			t.Skipf("no cgroup v1 freezer hierarchy: %v", err)
		}
	}
	root := fmt.Sprintf("lpm-test-thaw-%d", os.Getpid())
	if err := Create(root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(root) })

	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	dir := filepath.Join(freezer, root)
	pid := []byte(strconv.Itoa(sleep.Process.Pid))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}

	Thaw(root)
	state, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(state)); got != "THAWED" {
		t.Errorf("freezer.state after Thaw = %q, want THAWED", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Remove(root); err != nil {
		t.Fatalf("Remove() error = %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("the frozen process exited cleanly, want it killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the frozen process still runs 10s after Remove")
	}
	if left := Exists(root); len(left) > 0 {
		t.Errorf("cgroup directories left: %v", left)
	}
}
