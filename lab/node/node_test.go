package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lpm-dev/lpm/lab/cgroups"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/network"
	"github.com/lpm-dev/lpm/lab/node"
)

func testInstance(t *testing.T, name string) instance.Instance {
	t.Helper()
	inst, err := instance.New(name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestNodeNamespacesAndRoot(t *testing.T) {
	inst := testInstance(t, "tnode")
	n := node.StartForTest(t, node.Config{Instance: inst, Index: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := n.Output(ctx, "hostname")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != n.Name() {
		t.Errorf("hostname = %q, want %q", got, n.Name())
	}

	// The node's own PID namespace shows only the anchor and this command.
	out, err = n.Output(ctx, "ps", "-e", "-o", "pid=,comm=")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) > 4 {
		t.Errorf("ps inside the node lists %d processes, want at most 4:\n%s", len(lines), out)
	}

	out, err = n.Output(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), n.IP().String()+"/24") {
		t.Errorf("eth0 = %q, want address %s/24", out, n.IP())
	}

	// Writes inside the node land in its overlay, not in the shared root.
	if _, err := n.Output(ctx, "sh", "-c", "echo x > /etc/lpm-node-test"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(n.Config().RootFS, "etc/lpm-node-test")); err == nil {
		t.Errorf("a write inside the node reached the shared root")
	}

	out, err = n.Output(ctx, "criu", "check")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "Looks good") {
		t.Errorf("criu check = %q, want \"Looks good\"", out)
	}

	if len(cgroups.Exists(n.CgroupRoot())) == 0 {
		t.Errorf("cgroup root %s missing", n.CgroupRoot())
	}
}

func TestNodeContainerdAndStop(t *testing.T) {
	inst := testInstance(t, "tctrd")
	n := node.StartForTest(t, node.Config{Instance: inst, Index: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := n.StartContainerd(ctx, node.ContainerdConfig{Debug: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.ContainerdSocket()); err != nil {
		t.Errorf("containerd socket not visible from the host: %v", err)
	}
	out, err := n.Output(ctx, "ctr", "plugins", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "io.containerd.cri.v1") {
		t.Errorf("CRI plugin not loaded:\n%s", out)
	}
	logData, _ := os.ReadFile(filepath.Join(n.LogDir(), "containerd.log"))
	if !strings.Contains(string(logData), `enableExperimentalRestoreViaCreate\":true`) {
		t.Errorf("containerd log does not show restore via create enabled:\n%s", logData)
	}

	anchor := n.PID()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(anchor)); err == nil {
		t.Errorf("anchor process %d still runs after Stop", anchor)
	}
	if dirs := cgroups.Exists(n.CgroupRoot()); len(dirs) > 0 {
		t.Errorf("cgroups left after Stop: %v", dirs)
	}
	if network.NodesAttached(inst) != 0 {
		t.Errorf("node interface left after Stop")
	}
}
